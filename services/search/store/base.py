"""`VectorStore`: the store's contract, checked and answered here once for both engines.

An engine (embedded.py, qdrant_server.py) opens and creates collections, writes and reads
points, and runs an `EngineQuery` under a filter made by `translation.engine_filter`; every
check of the caller's input, the dropping of a few excluded ids and the reading of answers are
the same for both and live here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from vitrine.search.store.translation import EngineQuery, FilterTerms, engine_filter, named_vectors, scored
from vitrine.search.store.types import (
    SPARSE_VECTOR_NAMES,
    VECTOR_NAMES,
    Conditions,
    DimensionMismatch,
    ScoredObject,
    SparseVector,
    StoredPoint,
    StoreError,
    check_sparse,
    point_key,
)

# Up to this many excluded ids are dropped from a longer answer instead of being a filter in the
# engine, which slows HNSW search down (100k objects, best-score recommend excluding its 4
# examples: 2.83 ms as a filter, 2.66 ms dropped after, and recall@12 0.982 -> 0.987).
MAX_IDS_DROPPED_AFTER = 32


class StoreReads(Protocol):
    """The reads a function run on the store's thread may make (`AsyncStore.reading`)."""

    def sparse_query(
        self,
        vector_name: str,
        vector: SparseVector,
        limit: int,
        conditions: Conditions | None = None,
        exclude_ids: Sequence[str] = (),
        keys_only: bool = False,
    ) -> list[ScoredObject]: ...

    def sparse_vectors(self, keys: Sequence[str], name: str) -> dict[str, SparseVector]: ...

    def get_by_keys(
        self,
        keys: Sequence[str],
        with_vectors: bool = False,
        payload_fields: Sequence[str] | None = None,
        with_sparse: bool = False,
    ) -> dict[str, StoredPoint]: ...


class VectorStore(ABC):
    """One collection of objects with named dense vectors (cosine) and indexed payload."""

    kind: ClassVar[str]
    # The engine's filter constructors (translation.FilterTerms), set by each engine.
    filter_terms: FilterTerms

    def __init__(self, collection: str) -> None:
        self.collection = collection
        self._dims: dict[str, int] | None = None

    # -- collection ------------------------------------------------------------------------

    @abstractmethod
    def stored_dimensions(self) -> dict[str, int] | None:
        """Dense vector dimensions of the existing collection, or None when there is none yet.
        Raises `OutdatedCollection` when it lacks the sparse vectors (an older Vitrine made it)."""

    @abstractmethod
    def _create(self, dims: Mapping[str, int]) -> None: ...

    @abstractmethod
    def _open(self, dims: Mapping[str, int]) -> None: ...

    def ensure_collection(self, dims: Mapping[str, int]) -> None:
        """Open the collection, creating it with these vector dimensions if it does not exist.
        Raises `DimensionMismatch` when it exists with other vectors (another model's)."""
        unknown = set(dims) - set(VECTOR_NAMES)
        if unknown or "text" not in dims:
            raise StoreError(f"vectors must include 'text' and be among {VECTOR_NAMES}, got {sorted(dims)}")
        if self._dims is not None:
            if self._dims != dict(dims):
                raise DimensionMismatch(
                    f"collection {self.collection!r} is open with vectors {self._dims}, not {dict(dims)}"
                )
            return
        stored = self.stored_dimensions()
        if stored is None:
            self._create(dims)
        else:
            if stored != dict(dims):
                raise DimensionMismatch(
                    f"collection {self.collection!r} holds vectors {stored} but the configured models give "
                    f"{dict(dims)}: the models changed since it was built. Use another collection name "
                    f"(VITRINE_SEARCH_COLLECTION) or delete the collection to rebuild it."
                )
            self._open(dims)
        self._dims = dict(dims)

    def dimensions(self) -> dict[str, int]:
        if self._dims is None:
            raise StoreError("the collection is not open: call ensure_collection first")
        return dict(self._dims)

    # -- points ----------------------------------------------------------------------------

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        """Insert or replace points by museum id (all vectors and payload are replaced)."""
        dims = self.dimensions()
        seen: set[str] = set()
        for p in points:
            if not p.id:
                raise StoreError("a point has an empty id")
            if p.id in seen:
                raise StoreError(f"id {p.id!r} appears twice in one upsert")
            seen.add(p.id)
            if not p.vectors:
                raise StoreError(f"point {p.id!r} has no vector")
            for name, vector in p.vectors.items():
                if name in SPARSE_VECTOR_NAMES:
                    check_sparse(vector, f"point {p.id!r}: sparse vector {name!r}")
                    continue
                if name not in dims:
                    raise StoreError(
                        f"point {p.id!r}: unknown vector {name!r} "
                        f"(collection has {sorted(dims)} and sparse {list(SPARSE_VECTOR_NAMES)})"
                    )
                if np.shape(vector) != (dims[name],):
                    raise DimensionMismatch(
                        f"point {p.id!r}: vector {name!r} has shape {np.shape(vector)}, expected ({dims[name]},)"
                    )
        if points:
            self._upsert(points)

    def get(
        self,
        ids: Sequence[str],
        with_vectors: bool = False,
        payload_fields: Sequence[str] | None = None,
        with_sparse: bool = False,
    ) -> dict[str, StoredPoint]:
        """The stored points of these museum ids (unknown ids are absent from the answer).
        `with_vectors` gives the dense vectors, `with_sparse` the sparse ones too;
        `payload_fields` limits the payload to those keys (None: all of it). Only the vectors
        asked for are read from the engine (one sparse vector alone: `sparse_vectors`)."""
        found = self.get_by_keys([point_key(i) for i in ids], with_vectors, payload_fields, with_sparse)
        return {point.id: point for point in found.values()}

    def get_by_keys(
        self,
        keys: Sequence[str],
        with_vectors: bool = False,
        payload_fields: Sequence[str] | None = None,
        with_sparse: bool = False,
    ) -> dict[str, StoredPoint]:
        """As `get`, for the point keys a `keys_only` query returned; the answer is keyed by
        point key (each StoredPoint still carries its museum id)."""
        dims = self.dimensions()
        if not keys:
            return {}
        wanted = [*(dims if with_vectors else ()), *(SPARSE_VECTOR_NAMES if with_sparse else ())]
        found = self._get(list(dict.fromkeys(keys)), wanted, payload_fields)
        for point in found.values():
            point.vectors = {name: vector for name, vector in point.vectors.items() if name in wanted}
        return found

    def sparse_vectors(self, keys: Sequence[str], name: str) -> dict[str, SparseVector]:
        """The sparse vector `name` of each of these point keys that has one, reading no payload
        (several times faster than `get_by_keys`: measured 0.9 ms instead of 4 ms for 200 points
        at 100k objects). For checks over a query's candidates (spelling correction)."""
        self.dimensions()
        if name not in SPARSE_VECTOR_NAMES:
            raise StoreError(f"unknown sparse vector {name!r} (collection has {list(SPARSE_VECTOR_NAMES)})")
        if not keys:
            return {}
        found = {}
        for record in self._retrieve_vectors(list(dict.fromkeys(keys)), name):
            vector = named_vectors(record.vector).get(name)
            if isinstance(vector, SparseVector):
                found[str(record.id)] = vector
        return found

    def get_vectors(self, ids: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        """The stored vectors of these ids, by id then vector name (for more-like-this)."""
        return {i: p.vectors for i, p in self.get(ids, with_vectors=True, payload_fields=[]).items()}

    def delete(self, ids: Sequence[str]) -> int:
        """Delete by museum id; returns how many existed. Unknown ids are ignored."""
        existing = list(self.get(ids, payload_fields=[]))
        if existing:
            self._delete(existing)
        return len(existing)

    def count(self, conditions: Conditions | None = None) -> int:
        self.dimensions()
        return self._count(engine_filter(self.filter_terms, conditions))

    def scroll(
        self, conditions: Conditions | None, limit: int, start: str | None, payload_fields: Sequence[str] | None
    ) -> tuple[list[StoredPoint], str | None]:
        """Up to `limit` objects in point-key order from the point key `start` on (None: the
        first), and the key of the next one (None: no more). For ListObjects (listing.py)."""
        self.dimensions()
        return self._scroll(engine_filter(self.filter_terms, conditions), limit, start, payload_fields)

    # -- queries ---------------------------------------------------------------------------

    def query(
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
        """Nearest objects to `vector` in the named vector space, best first, with payload.
        With `keys_only` a hit's id is the point key and no payload is read: the engine then
        answers several times faster (measured: 0.2 ms instead of 1.5 ms for 200 sparse hits),
        and a search reads the payload of the page alone (`get_by_keys`).
        With `approximate` the index searches the int8 copy of the vectors, where it has one
        (the embedded store's indexed segments): twice as fast, a slightly different order
        (recall@12 0.98 at 100k), for candidates that are fused by rank anyway.
        Objects without that vector (e.g. no image) are never returned."""
        dims = self.dimensions()
        if vector_name not in dims:
            raise StoreError(f"unknown vector {vector_name!r} (collection has {sorted(dims)})")
        if np.shape(vector) != (dims[vector_name],):
            raise DimensionMismatch(
                f"query vector for {vector_name!r} has shape {np.shape(vector)}, expected ({dims[vector_name]},)"
            )
        if limit <= 0:
            return []
        vector = np.asarray(vector, dtype=np.float32)

        def nearest(n: int, excluded: Sequence[str], skip: int = 0) -> list[ScoredObject]:
            return self._run(
                EngineQuery(
                    vector_name,
                    n,
                    engine_filter(self.filter_terms, conditions, excluded),
                    with_payload=not keys_only,
                    vector=vector,
                    offset=skip,
                    exact=not approximate,
                ),
                keys_only,
            )

        if offset:
            return nearest(limit, exclude_ids, offset)
        return _dropping(nearest, limit, exclude_ids, keys_only)

    def sparse_query(
        self,
        vector_name: str,
        vector: SparseVector,
        limit: int,
        conditions: Conditions | None = None,
        exclude_ids: Sequence[str] = (),
        keys_only: bool = False,
    ) -> list[ScoredObject]:
        """Objects sharing terms with the sparse `vector` in the named sparse space, best first
        (score: the dot product with the stored weights, each term weighted by its IDF over the
        collection), with payload (point keys only with `keys_only`, as in `query`). Objects
        sharing no term are never returned."""
        self.dimensions()
        if vector_name not in SPARSE_VECTOR_NAMES:
            raise StoreError(f"unknown sparse vector {vector_name!r} (collection has {list(SPARSE_VECTOR_NAMES)})")
        check_sparse(vector, f"query vector for {vector_name!r}")
        if limit <= 0 or not len(vector):
            return []
        query = EngineQuery(
            vector_name,
            limit,
            engine_filter(self.filter_terms, conditions, exclude_ids),
            with_payload=not keys_only,
            vector=vector,
        )
        return self._run(query, keys_only)

    def recommend(
        self,
        vector_name: str,
        positives: np.ndarray,
        negatives: np.ndarray,
        limit: int,
        conditions: Conditions | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> list[ScoredObject]:
        """Qdrant's best-score recommendation: each candidate is scored by its best similarity to
        any positive example, pushed down when it is closer to a negative one. The examples are
        vectors (rows); the engine does not exclude them, so pass their ids in `exclude_ids`."""
        dims = self.dimensions()
        if vector_name not in dims:
            raise StoreError(f"unknown vector {vector_name!r} (collection has {sorted(dims)})")
        positives = np.asarray(positives, dtype=np.float32).reshape(-1, dims[vector_name])
        negatives = np.asarray(negatives, dtype=np.float32).reshape(-1, dims[vector_name])
        if limit <= 0 or len(positives) == 0:
            return []

        def best_score(n: int, excluded: Sequence[str]) -> list[ScoredObject]:
            where = engine_filter(self.filter_terms, conditions, excluded)
            query = EngineQuery(
                vector_name, n, where, with_payload=True, positives=positives, negatives=negatives, exact=True
            )
            return self._run(query)

        return _dropping(best_score, limit, exclude_ids)

    def _run(self, query: EngineQuery, keys_only: bool = False) -> list[ScoredObject]:
        return scored(self._search(query), keys_only)

    # -- what each engine does its own way --------------------------------------------------

    @abstractmethod
    def _upsert(self, points: Sequence[StoredPoint]) -> None: ...

    @abstractmethod
    def _get(
        self, keys: list[str], vector_names: Sequence[str], payload_fields: Sequence[str] | None
    ) -> dict[str, StoredPoint]:
        """Points with the named vectors (none when empty) and payload."""

    @abstractmethod
    def _retrieve_vectors(self, keys: list[str], name: str) -> Sequence[Any]:
        """Records with the one named vector and no payload."""

    @abstractmethod
    def _delete(self, ids: list[str]) -> None: ...

    @abstractmethod
    def _count(self, engine_filter: Any) -> int: ...

    @abstractmethod
    def _scroll(
        self, engine_filter: Any, limit: int, start: str | None, payload_fields: Sequence[str] | None
    ) -> tuple[list[StoredPoint], str | None]: ...

    @abstractmethod
    def _search(self, query: EngineQuery) -> Sequence[Any]:
        """The engine's scored records for the query, best first."""

    @abstractmethod
    def close(self) -> None: ...

    def is_outage(self, exc: Exception) -> bool:
        """Whether an error raised by a call means the store cannot be reached right now (the
        caller may retry), rather than a bad request or a bug."""
        return False


def _dropping(
    search: Callable[[int, Sequence[str]], list[ScoredObject]],
    limit: int,
    exclude_ids: Sequence[str],
    keys_only: bool = False,
) -> list[ScoredObject]:
    """`search(limit, exclude_ids)`; a few excluded ids are rather dropped from a longer answer
    (see MAX_IDS_DROPPED_AFTER)."""
    unwanted = set(exclude_ids)
    if not unwanted or len(unwanted) > MAX_IDS_DROPPED_AFTER:
        return search(limit, exclude_ids)
    if keys_only:
        unwanted = {point_key(i) for i in unwanted}
    return [hit for hit in search(limit + len(unwanted), ()) if hit.id not in unwanted][:limit]
