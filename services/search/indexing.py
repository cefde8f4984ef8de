"""HNSW index builds for the embedded store, without stopping the service.

qdrant-edge builds its HNSW index only in `optimize()`, one call that holds the GIL for minutes
at 100k objects: run in the serving process, it would stall every RPC. So the search service
builds it the way a database rebuilds an index concurrently:

1. on the store's thread (no write in between): flush, copy the collection's folder to
   `<collection>.build`, start recording writes (`EmbeddedStore.copy_for_index_build`);
2. a child process (`python -m vitrine.search.indexing <data_dir> <collection>.build`, at lower
   CPU priority) opens the copy and optimizes it; the service keeps serving the original;
3. on the store's thread: swap the indexed copy in and replay the writes made meanwhile
   (`EmbeddedStore.swap_in`, crash-safe).

A build starts when at least `index_min_new_objects` objects were added since the last one and
no write came for `index_idle_s` seconds (an ingest has finished), so a bulk ingest pays for one
build at its end, not one per batch. Below that (a demo collection) queries scan, which is fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence

from prometheus_client import Counter, Gauge

from vitrine.search.store import AsyncStore, EmbeddedStore

log = logging.getLogger("vitrine.search.indexing")

BUILDS = Counter("vitrine_search_index_builds_total", "HNSW index builds of the embedded store, by result.", ["result"])
UNINDEXED = Gauge(
    "vitrine_search_objects_since_index_build", "Objects added to the embedded store since its last HNSW build."
)
BUILD_SECONDS = Gauge("vitrine_search_index_build_seconds", "Duration of the last HNSW build (copy, build, swap).")
for _result in ("built", "failed"):
    BUILDS.labels(_result)  # exported at 0 from the start, so dashboards and alerts see the series


class IndexBuilder:
    """Watches the embedded store and rebuilds its HNSW index in a child process when due."""

    def __init__(self, store: AsyncStore, min_new_objects: int, idle_s: float, check_every_s: float = 10.0) -> None:
        if not store.supports_index_builds:
            raise TypeError("only the embedded store needs index builds (a Qdrant server builds its own)")
        self.store = store
        self.min_new_objects = min_new_objects
        self.idle_s = idle_s
        self.check_every_s = check_every_s
        self.state_file = store.sibling("index.json")
        self.last_write = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def _indexed_objects(self) -> int:
        """Objects the collection held at its last build (0: never built)."""
        try:
            return int(json.loads(self.state_file.read_text())["objects"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def wrote(self) -> None:
        """Called after every write: a build waits until writes pause."""
        self.last_write = time.monotonic()

    async def due(self) -> bool:
        new = await self.store.count() - self._indexed_objects()
        UNINDEXED.set(max(new, 0))
        return new >= self.min_new_objects and time.monotonic() - self.last_write >= self.idle_s

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="index-builder")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.check_every_s)
            try:
                if await self.due():
                    await self.build()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("index build failed; the store keeps serving without the new index")
                BUILDS.labels("failed").inc()
                await asyncio.sleep(max(self.idle_s, 60.0))  # not in a tight loop

    async def build(self) -> bool:
        """One build: copy, optimize in a child process, swap. False when the child failed."""
        started = time.monotonic()
        copy, objects = await self.store.copy_for_index_build()
        log.info("index build started", extra={"objects": objects, "copy": str(copy)})
        child: asyncio.subprocess.Process | None = None
        try:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "vitrine.search.indexing",
                str(copy.parent),
                copy.name,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, errors = await child.communicate()
            code = child.returncode
        except BaseException:  # cancelled (shutdown) or failed: no child, no copy left behind
            if child is not None and child.returncode is None:
                child.kill()
                with contextlib.suppress(ProcessLookupError):
                    await child.wait()
            await self.store.abandon_index_build()
            raise
        if code != 0:
            await self.store.abandon_index_build()
            tail = errors.decode(errors="replace").strip().splitlines()[-3:]
            log.error("index build process failed", extra={"exit_code": code, "stderr": " | ".join(tail)})
            BUILDS.labels("failed").inc()
            return False
        replayed = await self.store.swap_in()
        self.state_file.write_text(json.dumps({"objects": objects, "built_at": time.time()}))
        seconds = time.monotonic() - started
        BUILD_SECONDS.set(seconds)
        BUILDS.labels("built").inc()
        UNINDEXED.set(max(await self.store.count() - objects, 0))
        log.info(
            "index built and swapped in",
            extra={"objects": objects, "writes_replayed": replayed, "seconds": round(seconds, 1)},
        )
        return True

    async def close(self) -> None:
        """Stop watching; a build under way is abandoned (the child killed, its copy removed)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def build_copy(data_dir: str, folder: str) -> None:
    """The child's work: open the copied collection, build its HNSW index, close it."""
    store = EmbeddedStore(data_dir, folder)
    dims = store.stored_dimensions()
    if dims is None:
        raise SystemExit(f"no collection in {store.path}")
    store.ensure_collection(dims)
    store.optimize()
    store.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        raise SystemExit("usage: python -m vitrine.search.indexing <data_dir> <collection folder>")
    with contextlib.suppress(OSError):
        os.nice(10)  # the serving process comes first
    build_copy(*args)


if __name__ == "__main__":
    main()
