"""The vector store's contract where a second process is involved (the store's other contract
tests, in one process, are tests/unit/test_search_store.py): data written by a process killed
without closing the store survives, and the HNSW index is built in a child process while the
service keeps answering."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT
from tests.unit.test_search_store import DIMS, TEXT_CENTRES, make_points
from vitrine.search.store import AsyncStore, EmbeddedStore


def test_embedded_store_survives_a_killed_process(tmp_path: Path) -> None:
    """Data written by a process that dies without closing the store is there after a restart
    (the write-ahead log is replayed)."""
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.unit.test_search_store import DIMS, make_points
        from vitrine.search.store import EmbeddedStore
        store = EmbeddedStore({str(tmp_path)!r}, "objects")
        store.ensure_collection(DIMS)
        store.upsert(make_points())
        store.delete(["T00000"])
        os._exit(0)  # no close, no flush
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    store = EmbeddedStore(tmp_path, "objects")
    store.ensure_collection(DIMS)
    assert store.count() == 35
    assert store.get(["T00000"]) == {}
    assert store.get(["T00035"])["T00035"].payload["artist"] == "Constable"
    hits = store.query("text", TEXT_CENTRES[2], limit=3)
    assert {h.payload["artist"] for h in hits} == {"Constable"}
    store.close()


async def test_the_service_builds_the_index_in_a_child_process_and_keeps_answering(tmp_path: Path) -> None:
    from vitrine.search.indexing import IndexBuilder

    store = AsyncStore(EmbeddedStore(tmp_path, "objects"))
    await store.ensure_collection(DIMS)
    await store.upsert(make_points())
    builder = IndexBuilder(store, min_new_objects=10, idle_s=0.0)
    assert await builder.due()
    task = asyncio.create_task(builder.build())
    answered = 0
    while not task.done():  # queries keep being answered while the child builds
        assert len(await store.query("text", TEXT_CENTRES[0], limit=3)) == 3
        answered += 1
        await asyncio.sleep(0.01)
    assert await task and answered > 0
    assert not await builder.due()  # nothing new since the build
    assert json.loads((tmp_path / "objects.index.json").read_text())["objects"] == len(make_points())
    await builder.close()
    await store.close()
