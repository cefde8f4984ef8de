"""`AsyncStore`: the store as asyncio code sees it, and `open_store`, which picks the engine.

Every engine call is blocking (qdrant_edge holds the GIL for the whole call), so all of them run
on one dedicated thread, in submission order: the engine is not meant for concurrent writers,
and one thread keeps the calls ordered. Callers never hold the engine itself: what differs
between engines is asked as a capability (`supports_index_builds`, `keeps_own_snapshots`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from vitrine.common.errors import outage
from vitrine.search.store.base import StoreReads, VectorStore
from vitrine.search.store.embedded import EmbeddedStore
from vitrine.search.store.qdrant_server import ServerStore
from vitrine.search.store.types import Conditions, ScoredObject, SparseVector, StoredPoint, StoreError

T = TypeVar("T")


def open_store(data_dir: str | Path, collection: str, qdrant_url: str = "", qdrant_api_key: str = "") -> VectorStore:
    """The Qdrant server at `qdrant_url` when given, else the embedded engine in `data_dir`."""
    if qdrant_url:
        return ServerStore(qdrant_url, collection, api_key=qdrant_api_key)
    return EmbeddedStore(data_dir, collection)


class AsyncStore:
    """A store for asyncio code: every call runs on one dedicated thread, in submission order,
    so the event loop never runs engine calls itself."""

    def __init__(self, store: VectorStore) -> None:
        self._store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitrine-store")

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        except Exception as exc:
            if not self._store.is_outage(exc):
                raise
            # A write that failed here changed nothing: each is one request to the store.
            raise outage("the vector store", exc) from exc

    # -- what the store is -----------------------------------------------------------------

    @property
    def kind(self) -> str:
        return self._store.kind

    @property
    def collection(self) -> str:
        return self._store.collection

    @property
    def supports_index_builds(self) -> bool:
        """Whether the service builds the HNSW index itself (the embedded engine; a Qdrant
        server builds its own)."""
        return isinstance(self._store, EmbeddedStore)

    @property
    def keeps_own_snapshots(self) -> bool:
        """Whether snapshots are the Qdrant server's own (else archives of the store's folder)."""
        return isinstance(self._store, ServerStore)

    def dimensions(self) -> dict[str, int]:
        return self._store.dimensions()

    # -- collection and points -------------------------------------------------------------

    async def stored_dimensions(self) -> dict[str, int] | None:
        return await self._run(self._store.stored_dimensions)

    async def ensure_collection(self, dims: Mapping[str, int]) -> None:
        await self._run(self._store.ensure_collection, dims)

    async def upsert(self, points: Sequence[StoredPoint]) -> None:
        await self._run(self._store.upsert, points)

    async def get(
        self,
        ids: Sequence[str],
        with_vectors: bool = False,
        payload_fields: Sequence[str] | None = None,
        with_sparse: bool = False,
    ) -> dict[str, StoredPoint]:
        return await self._run(self._store.get, ids, with_vectors, payload_fields, with_sparse)

    async def get_by_keys(
        self, keys: Sequence[str], with_vectors: bool = False, payload_fields: Sequence[str] | None = None
    ) -> dict[str, StoredPoint]:
        return await self._run(self._store.get_by_keys, keys, with_vectors, payload_fields)

    async def get_vectors(self, ids: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        return await self._run(self._store.get_vectors, ids)

    async def delete(self, ids: Sequence[str]) -> int:
        return await self._run(self._store.delete, ids)

    async def count(self, conditions: Conditions | None = None) -> int:
        return await self._run(self._store.count, conditions)

    async def scroll(
        self, conditions: Conditions | None, limit: int, start: str | None, payload_fields: Sequence[str] | None
    ) -> tuple[list[StoredPoint], str | None]:
        return await self._run(self._store.scroll, conditions, limit, start, payload_fields)

    # -- queries ---------------------------------------------------------------------------

    async def query(
        self,
        vector_name: str,
        vector: np.ndarray,
        limit: int,
        offset: int = 0,
        conditions: Conditions | None = None,
        exclude_ids: Sequence[str] = (),
        keys_only: bool = False,
        approximate: bool = False,
    ) -> list[ScoredObject]:
        return await self._run(
            self._store.query, vector_name, vector, limit, offset, conditions, exclude_ids, keys_only, approximate
        )

    async def sparse_query(
        self,
        vector_name: str,
        vector: SparseVector,
        limit: int,
        conditions: Conditions | None = None,
        exclude_ids: Sequence[str] = (),
        keys_only: bool = False,
    ) -> list[ScoredObject]:
        return await self._run(self._store.sparse_query, vector_name, vector, limit, conditions, exclude_ids, keys_only)

    async def recommend(
        self,
        vector_name: str,
        positives: np.ndarray,
        negatives: np.ndarray,
        limit: int,
        conditions: Conditions | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> list[ScoredObject]:
        return await self._run(self._store.recommend, vector_name, positives, negatives, limit, conditions, exclude_ids)

    async def reading(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(reads, *args)` on the store's thread, `reads` being the store's read calls: several
        reads in one hop (each hop costs a thread switch and a wait for the GIL, more than a
        keys-only sparse query itself, 0.1-0.5 ms at 100k objects)."""
        reads: StoreReads = self._store
        return await self._run(fn, reads, *args)

    # -- index builds (the embedded engine: indexing.py) ------------------------------------

    def _embedded(self) -> EmbeddedStore:
        if not isinstance(self._store, EmbeddedStore):
            raise StoreError("only the embedded store keeps its collection in a folder of its own")
        return self._store

    def sibling(self, suffix: str) -> Path:
        """A path next to the embedded collection's folder: `<collection>.<suffix>`."""
        return self._embedded().sibling(suffix)

    @property
    def folder(self) -> Path:
        """The embedded collection's folder."""
        return self._embedded().path

    async def copy_for_index_build(self) -> tuple[Path, int]:
        return await self._run(self._embedded().copy_for_index_build)

    async def abandon_index_build(self) -> None:
        await self._run(self._embedded().abandon_index_build)

    async def swap_in(self) -> int:
        return await self._run(self._embedded().swap_in)

    # -- snapshots (snapshot_service.py) ----------------------------------------------------

    async def holding_embedded(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(the embedded store, *args)` on the store's thread, nothing else touching the store
        until it returns: for work on the engine's own folder (snapshot.write_partial copies it)."""
        return await self._run(fn, self._embedded(), *args)

    def _server(self) -> ServerStore:
        if not isinstance(self._store, ServerStore):
            raise StoreError("only a Qdrant server keeps snapshots of its own")
        return self._store

    async def create_server_snapshot(self) -> Any:
        return await self._run(self._server().create_snapshot)

    async def list_server_snapshots(self) -> list[Any]:
        return await self._run(self._server().list_snapshots)

    async def delete_server_snapshot(self, name: str) -> None:
        await self._run(self._server().delete_snapshot, name)

    async def close(self) -> None:
        await self._run(self._store.close)
        self._executor.shutdown(wait=True)
