"""The embedded engine: Qdrant's engine in-process (qdrant-edge), files in a folder, no server to
run; and the index build on a copy of that folder that indexing.py drives."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from vitrine.search.store.base import VectorStore
from vitrine.search.store.translation import EngineQuery, point_payload, selected_payload, stored_points
from vitrine.search.store.types import (
    BOOL_FIELDS,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    SPARSE_VECTOR_NAMES,
    DimensionMismatch,
    SparseVector,
    StoredPoint,
    StoreError,
    outdated,
    point_id,
)

T = TypeVar("T")


class EmbeddedStore(VectorStore):
    """Qdrant's engine in-process, one shard in `data_dir/<collection>`, write-ahead log on.

    One process per folder: a second one fails to open it (the engine locks its WAL).
    The HNSW index is only built by an explicit `optimize()`, which blocks (and holds the GIL) for
    minutes at 100k objects; until then queries scan the vectors, fast enough at demo scale. A
    serving process builds it on a copy instead (indexing.py): `copy_for_index_build`, then a child
    process optimizes the copy, then `swap_in` replaces the collection by the copy and replays the
    writes made meanwhile. The swap is crash-safe: `recover` (on open) finishes or undoes it."""

    kind = "embedded"

    def __init__(self, data_dir: str | Path, collection: str) -> None:
        super().__init__(collection)
        import qdrant_edge  # imported here so ServerStore users need not have it

        self._qe = qdrant_edge
        self.filter_terms = _EdgeFilterTerms(qdrant_edge)
        self.path = Path(data_dir) / collection
        self._shard: Any = None
        # Writes made since `copy_for_index_build`, replayed by `swap_in` (None: no build running).
        self._journal: list[Any] | None = None
        self.recover()

    def _config(self, dims: Mapping[str, int]) -> Any:
        qe = self._qe
        vectors = {name: qe.EdgeVectorParams(size=size, distance=qe.Distance.Cosine) for name, size in dims.items()}
        sparse = {name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf) for name in SPARSE_VECTOR_NAMES}
        # An int8 copy of the dense vectors in RAM (a quarter of their size), made with the HNSW
        # index, for `approximate` queries; the others read the float32 vectors.
        int8 = qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, always_ram=True)
        # One search thread: a query runs on the calling thread instead of being handed to a pool
        # that searches the (usually two) segments in parallel; the service makes its calls one at
        # a time anyway (the engine holds the GIL). Measured at 100k on 2 cores: 2.4 ms a plain
        # query instead of 3.1, filtered and recommend queries alike.
        return qe.EdgeConfig(
            vectors=vectors,
            sparse_vectors=sparse,
            quantization_config=int8,
            max_search_threads=1,
            wal_enabled=True,
        )

    def stored_dimensions(self) -> dict[str, int] | None:
        config_file = self.path / "edge_config.json"
        if not config_file.exists():
            if self.path.exists() and any(self.path.iterdir()):
                raise StoreError(f"{self.path} exists but holds no vector store: move it away or pick another folder")
            return None
        try:
            config = json.loads(config_file.read_text())
            dims = {name: int(params["size"]) for name, params in config["vectors"].items()}
            sparse = config.get("sparse_vectors") or {}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # The engine's own file; if its layout changes, the engine still checks on load.
            raise StoreError(f"cannot read the vector configuration in {config_file}: {exc}") from exc
        missing = [name for name in SPARSE_VECTOR_NAMES if name not in sparse]
        if missing:
            raise outdated(self.collection, f"in {self.path}", missing)
        return dims

    def _create(self, dims: Mapping[str, int]) -> None:
        qe = self._qe
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._shard = self._call(lambda: qe.EdgeShard.create(str(self.path), self._config(dims)))
        self._ensure_indexes()

    def _open(self, dims: Mapping[str, int]) -> None:
        qe = self._qe
        # Passing the expected config makes the engine check it against the stored segments too.
        self._shard = self._call(lambda: qe.EdgeShard.load(str(self.path), self._config(dims)))
        self._ensure_indexes()

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:
            message = str(exc)
            if "WouldBlock" in message or "lock" in message.lower():
                raise StoreError(
                    f"the vector store in {self.path} is in use by another process (one process per folder)"
                ) from exc
            if "ncompatible" in message:
                raise DimensionMismatch(f"collection {self.collection!r} in {self.path}: {message}") from exc
            raise

    def _ensure_indexes(self) -> None:
        qe = self._qe
        existing = set(self._shard.info().payload_schema)
        schema = (
            [(f, qe.PayloadSchemaType.Keyword) for f in KEYWORD_FIELDS]
            + [(f, qe.PayloadSchemaType.Integer) for f in INTEGER_FIELDS]
            + [(f, qe.PayloadSchemaType.Bool) for f in BOOL_FIELDS]
        )
        for name, kind in schema:
            if name not in existing:
                self._shard.update(qe.UpdateOperation.create_field_index(name, kind))

    def _vector(self, vector: np.ndarray | SparseVector) -> Any:
        if isinstance(vector, SparseVector):
            return self._qe.SparseVector(list(vector.indices), list(vector.values))
        return np.asarray(vector, dtype=np.float32).tolist()

    def _update(self, operation: Any) -> None:
        self._shard.update(operation)
        if self._journal is not None:
            self._journal.append(operation)

    def _upsert(self, points: Sequence[StoredPoint]) -> None:
        qe = self._qe
        batch = [
            qe.Point(point_id(p.id), {n: self._vector(v) for n, v in p.vectors.items()}, point_payload(p))
            for p in points
        ]
        self._update(qe.UpdateOperation.upsert_points(batch))

    def _get(
        self, keys: list[str], vector_names: Sequence[str], payload_fields: Sequence[str] | None
    ) -> dict[str, StoredPoint]:
        qe = self._qe
        fields = selected_payload(payload_fields)
        with_payload = True if fields is None else qe.PayloadSelector.Include(fields)
        records = self._shard.retrieve([uuid.UUID(k) for k in keys], with_payload, list(vector_names) or False)
        return stored_points(records, bool(vector_names), payload_fields)

    def _retrieve_vectors(self, keys: list[str], name: str) -> Sequence[Any]:
        return self._shard.retrieve([uuid.UUID(k) for k in keys], False, [name])

    def _delete(self, ids: list[str]) -> None:
        self._update(self._qe.UpdateOperation.delete_points([point_id(i) for i in ids]))

    def _count(self, engine_filter: Any) -> int:
        return int(self._shard.count(self._qe.CountRequest(exact=True, filter=engine_filter)))

    def _scroll(
        self, engine_filter: Any, limit: int, start: str | None, payload_fields: Sequence[str] | None
    ) -> tuple[list[StoredPoint], str | None]:
        qe = self._qe
        fields = selected_payload(payload_fields)
        request = qe.ScrollRequest(
            offset=uuid.UUID(start) if start else None,
            limit=limit,
            filter=engine_filter,
            with_payload=True if fields is None else qe.PayloadSelector.Include(fields),
            with_vector=False,
        )
        records, following = self._shard.scroll(request)
        return list(stored_points(records, False, payload_fields).values()), None if following is None else str(
            following
        )

    def _search(self, query: EngineQuery) -> Sequence[Any]:
        qe = self._qe
        if query.positives is not None:
            examples = qe.RecommendQuery(positives=query.positives.tolist(), negatives=query.negatives.tolist())
            scoring = qe.Query.RecommendBestScore(examples, using=query.using)
        else:
            scoring = qe.Query.Nearest(self._vector(query.vector), using=query.using)
        params = None
        if query.exact is not None:
            params = qe.SearchParams(quantization=qe.QuantizationSearchParams(ignore=query.exact))
        request = qe.QueryRequest(
            limit=query.limit,
            offset=query.offset or None,
            query=scoring,
            filter=query.filter,
            params=params,
            with_payload=query.with_payload,
            with_vector=False,
        )
        return self._shard.query(request)

    def optimize(self) -> bool:
        """Build the HNSW index (slow, blocking): for batch jobs, never in the serving path."""
        self.dimensions()
        return bool(self._shard.optimize())

    # -- index build on a copy (indexing.py runs it) ---------------------------------------

    def sibling(self, suffix: str) -> Path:
        """A path next to the collection's folder: `<collection>.<suffix>`."""
        return self.path.with_name(f"{self.path.name}.{suffix}")

    def copy_for_index_build(self) -> tuple[Path, int]:
        """Flush, copy the collection's folder to `<collection>.build` and record every write from
        now on (for `swap_in`). Returns the copy and how many objects it holds."""
        self.dimensions()
        if self._journal is not None:
            raise StoreError("an index build is already under way")
        target = self.sibling("build")
        shutil.rmtree(target, ignore_errors=True)
        self._shard.flush()
        shutil.copytree(self.path, target)
        self._journal = []
        return target, self.count()

    def flushed_folder(self) -> Path:
        """Flush, and the collection's folder: complete on disk until this thread's next call, so a
        snapshot copies it within the same call (snapshot.py)."""
        self.dimensions()
        self._shard.flush()
        return self.path

    def abandon_index_build(self) -> None:
        self._journal = None
        shutil.rmtree(self.sibling("build"), ignore_errors=True)

    def swap_in(self) -> int:
        """Replace the collection by its indexed copy, then replay the writes made since the copy
        (so nothing acknowledged is lost). Returns how many write operations were replayed.
        On a crash part-way, `recover` keeps whichever folder holds every write."""
        dims = self.dimensions()
        journal, built = self._journal or [], self.sibling("build")
        old, done = self.sibling("old"), self.sibling("swapped")
        self._shard.flush()
        self._shard.close()
        self._shard = None
        os.replace(self.path, old)
        try:
            os.replace(built, self.path)
            self._open(dims)
            for operation in journal:
                self._shard.update(operation)
            self._shard.flush()
        except Exception:
            # Back to the folder that has every write; its index is built another time.
            if self._shard is not None:
                self._shard.close()
            shutil.rmtree(self.path, ignore_errors=True)
            os.replace(old, self.path)
            self._open(dims)
            self._journal = None
            raise
        done.touch()  # from here the new folder is the truth (see `recover`)
        sync_folder(self.path.parent)
        shutil.rmtree(old)
        done.unlink()
        self._journal = None
        return len(journal)

    def recover(self) -> None:
        """Finish or undo a swap a crash interrupted, and drop an unfinished build's copy."""
        old, done = self.sibling("old"), self.sibling("swapped")
        if old.exists():
            if done.exists():  # the new folder had every write: drop the old one
                shutil.rmtree(old)
            else:  # the new folder may lack writes: back to the old one
                shutil.rmtree(self.path, ignore_errors=True)
                os.replace(old, self.path)
        done.unlink(missing_ok=True)
        shutil.rmtree(self.sibling("build"), ignore_errors=True)

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None
            self._dims = None


class _EdgeFilterTerms:
    """qdrant-edge's filter constructors (translation.FilterTerms)."""

    def __init__(self, qe: Any) -> None:
        self._qe = qe

    def match_any(self, key: str, values: list[str]) -> Any:
        return self._qe.FieldCondition(key, match=self._qe.MatchAny(values))

    def match_value(self, key: str, value: bool | int) -> Any:
        # A Python bool in MatchValue silently matches nothing in qdrant-edge 0.9; numpy's works.
        return self._qe.FieldCondition(
            key, match=self._qe.MatchValue(np.bool_(value) if isinstance(value, bool) else value)
        )

    def year_range(self, gte: int | None, lte: int | None) -> Any:
        return self._qe.FieldCondition("year", range=self._qe.RangeFloat(gte=gte, lte=lte))

    def has_id(self, ids: list[uuid.UUID]) -> Any:
        return self._qe.HasIdCondition(set(ids))

    def min_should(self, conditions: list[Any], min_count: int) -> Any:
        return self._qe.MinShould(conditions, min_count)

    def combine(self, must: list[Any] | None, must_not: list[Any] | None, min_should: Any) -> Any:
        return self._qe.Filter(must=must, must_not=must_not, min_should=min_should)


def sync_folder(folder: Path) -> None:
    """Make renames in `folder` durable (fsync of the directory)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
