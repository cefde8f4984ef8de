"""The vector store: one collection of collection objects, each a point with named dense vectors
(`text`, and `image` when the object has one), named sparse vectors (`keywords`, `ngrams` and
`tags`, see keywords.py; the store applies IDF to them, so a sparse query scores like BM25) and its
catalogue fields as payload.

This is the only module that imports a Qdrant library. `VectorStore` is the interface the service
codes against; `EmbeddedStore` runs the Qdrant engine in-process (qdrant-edge, files in a folder,
no server to run) and `ServerStore` talks to a Qdrant server (or qdrant-client's local mode in
tests). Both pass the same contract tests.

Every call is blocking: qdrant_edge holds the GIL for the whole call. From asyncio, go through
`AsyncStore`, which runs all calls on one dedicated thread (the engine is not meant for concurrent
writers, and one thread keeps the calls ordered).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import uuid
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from vitrine.common.errors import outage

VECTOR_NAMES = ("text", "image")
# Sparse vectors every collection has, scored with Qdrant's IDF modifier.
SPARSE_VECTOR_NAMES = ("keywords", "ngrams", "tags")
# Payload fields with an index, and the field holding the museum's own id.
ID_FIELD = "museum_id"
# The term ids (keywords.term_id) of an object's tags: the tags signal's coverage rule filters on it.
TAG_TERMS_FIELD = "tag_terms"
KEYWORD_FIELDS = (ID_FIELD, "artist", "classification", "medium", "subjects")
INTEGER_FIELDS = ("year", TAG_TERMS_FIELD)
BOOL_FIELDS = ("has_image",)

# Up to this many excluded ids are dropped from a longer answer instead of being a filter in the
# engine, which slows HNSW search down (100k objects, best-score recommend excluding its 4
# examples: 2.83 ms as a filter, 2.66 ms dropped after, and recall@12 0.982 -> 0.987).
MAX_IDS_DROPPED_AFTER = 32

# Point ids must be integers or UUIDs; museum ids are free strings ("T05010", "met-247009"), so
# each is mapped to a stable UUIDv5 and kept verbatim in the payload.
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://vitrine.museum/objects")

T = TypeVar("T")


def point_key(museum_id: str) -> str:
    """The point's own id as text: what `keys_only` queries return instead of the museum id."""
    return str(point_id(museum_id))


def point_id(museum_id: str) -> uuid.UUID:
    return uuid.uuid5(_ID_NAMESPACE, museum_id)


class StoreError(Exception):
    """The store cannot do what was asked (collection missing, folder in use, bad input)."""


class DimensionMismatch(StoreError):
    """The stored collection was built with vectors of other dimensions than the models give."""


class OutdatedCollection(StoreError):
    """The stored collection was made by an older Vitrine (without some of the sparse vectors)."""


def _outdated(collection: str, where: str, missing: Sequence[str]) -> OutdatedCollection:
    return OutdatedCollection(
        f"collection {collection!r} {where} was made by an older Vitrine: it has no {', '.join(missing)} vectors "
        f"for keyword and tag search. Ingest the collection again into a fresh one (another VITRINE_SEARCH_COLLECTION "
        f"or VITRINE_SEARCH_DATA_DIR), or delete this one and re-ingest."
    )


@dataclass(frozen=True)
class Conditions:
    """Store-neutral filter. Every set field must match (AND); values within a field are ORs."""

    artists: tuple[str, ...] = ()
    classifications: tuple[str, ...] = ()
    mediums: tuple[str, ...] = ()
    # Matched against the object's subjects (curators' tags).
    tags: tuple[str, ...] = ()
    year_from: int | None = None
    year_to: int | None = None
    has_image: bool | None = None
    # At least `min_tag_terms` of these term ids among the object's `tag_terms` (none: no rule).
    tag_terms: tuple[int, ...] = ()
    min_tag_terms: int = 1

    def keyword_terms(self) -> list[tuple[str, list[str]]]:
        terms = [
            ("artist", self.artists),
            ("classification", self.classifications),
            ("medium", self.mediums),
            ("subjects", self.tags),
        ]
        return [(key, list(values)) for key, values in terms if values]


@dataclass(frozen=True)
class SparseVector:
    """A sparse vector: term ids (ascending, distinct) and their weights."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    @classmethod
    def from_dict(cls, weights: Mapping[int, float]) -> SparseVector:
        ordered = sorted((int(i), float(v)) for i, v in weights.items() if v)
        return cls(tuple(i for i, _ in ordered), tuple(v for _, v in ordered))

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.indices, self.values, strict=True))

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class StoredPoint:
    """One object as stored: its museum id, vectors by name (dense arrays, and `SparseVector`s
    under the sparse names), payload."""

    id: str
    vectors: dict[str, np.ndarray | SparseVector] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScoredObject:
    """A query's hit: the museum id (or, from a `keys_only` query, the point key: see
    `get_by_keys`), its score and its payload."""

    id: str
    score: float
    payload: dict[str, Any]


class VectorStore(ABC):
    """One collection of objects with named dense vectors (cosine) and indexed payload."""

    kind: ClassVar[str]

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
                    _check_sparse(vector, f"point {p.id!r}: sparse vector {name!r}")
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
            vector = _vectors_as_arrays(record.vector).get(name)
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
        return self._count(conditions)

    def scroll(
        self, conditions: Conditions | None, limit: int, start: str | None, payload_fields: Sequence[str] | None
    ) -> tuple[list[StoredPoint], str | None]:
        """Up to `limit` objects in point-key order from the point key `start` on (None: the
        first), and the key of the next one (None: no more). For ListObjects (listing.py)."""
        self.dimensions()
        return self._scroll(conditions, limit, start, payload_fields)

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
        if offset:
            return self._query(vector_name, vector, limit, offset, conditions, exclude_ids, keys_only, approximate)
        return _dropping(
            lambda n, ex: self._query(vector_name, vector, n, 0, conditions, ex, keys_only, approximate),
            limit,
            exclude_ids,
            keys_only,
        )

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
        _check_sparse(vector, f"query vector for {vector_name!r}")
        if limit <= 0 or not len(vector):
            return []
        return self._sparse_query(vector_name, vector, limit, conditions, exclude_ids, keys_only)

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
        return _dropping(
            lambda n, ex: self._recommend(vector_name, positives, negatives, n, conditions, ex), limit, exclude_ids
        )

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
    def _count(self, conditions: Conditions | None) -> int: ...

    @abstractmethod
    def _scroll(
        self, conditions: Conditions | None, limit: int, start: str | None, payload_fields: Sequence[str] | None
    ) -> tuple[list[StoredPoint], str | None]: ...

    @abstractmethod
    def _query(
        self,
        vector_name: str,
        vector: np.ndarray,
        limit: int,
        offset: int,
        conditions: Conditions | None,
        exclude_ids: Sequence[str],
        keys_only: bool,
        approximate: bool,
    ) -> list[ScoredObject]: ...

    @abstractmethod
    def _sparse_query(
        self,
        vector_name: str,
        vector: SparseVector,
        limit: int,
        conditions: Conditions | None,
        exclude_ids: Sequence[str],
        keys_only: bool,
    ) -> list[ScoredObject]: ...

    @abstractmethod
    def _recommend(
        self,
        vector_name: str,
        positives: np.ndarray,
        negatives: np.ndarray,
        limit: int,
        conditions: Conditions | None,
        exclude_ids: Sequence[str],
    ) -> list[ScoredObject]: ...

    @abstractmethod
    def close(self) -> None: ...

    def is_outage(self, exc: Exception) -> bool:
        """Whether an error raised by a call means the store cannot be reached right now (the
        caller may retry), rather than a bad request or a bug."""
        return False


def sync_folder(folder: Path) -> None:
    """Make renames in `folder` durable (fsync of the directory)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _payload(point: StoredPoint) -> dict[str, Any]:
    return {**point.payload, ID_FIELD: point.id}


_MAX_SPARSE_INDEX = 2**32 - 1


def _check_sparse(vector: Any, what: str) -> None:
    if not isinstance(vector, SparseVector):
        raise StoreError(f"{what} must be a SparseVector, not {type(vector).__name__}")
    if len(vector.indices) != len(vector.values):
        raise StoreError(f"{what} has {len(vector.indices)} indices but {len(vector.values)} values")
    if any(not 0 <= i <= _MAX_SPARSE_INDEX for i in vector.indices):
        raise StoreError(f"{what} has an index outside 0..2^32-1")
    if len(set(vector.indices)) != len(vector.indices):
        raise StoreError(f"{what} has repeated indices")
    if not all(np.isfinite(vector.values)):
        raise StoreError(f"{what} has a value that is not a finite number")


def _vectors_as_arrays(raw: Any) -> dict[str, np.ndarray | SparseVector]:
    """Named vectors of either library: dense as float32 arrays, sparse as `SparseVector`s."""
    if not isinstance(raw, dict):
        return {}
    vectors: dict[str, np.ndarray | SparseVector] = {}
    for name, values in raw.items():
        if hasattr(values, "indices"):
            vectors[name] = SparseVector(tuple(int(i) for i in values.indices), tuple(float(v) for v in values.values))
        else:
            vectors[name] = np.asarray(values, dtype=np.float32)
    return vectors


def _scored(hits: Sequence[Any], keys_only: bool = False) -> list[ScoredObject]:
    """Query answers (of either library) as ScoredObjects, best first."""
    if keys_only:
        return [ScoredObject(str(h.id), float(h.score), {}) for h in hits]
    return [ScoredObject(h.payload[ID_FIELD], float(h.score), dict(h.payload)) for h in hits if h.payload]


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


def _points(records: Sequence[Any], with_vectors: bool, payload_fields: Sequence[str] | None) -> dict[str, StoredPoint]:
    """Retrieved records (of either library) as StoredPoints keyed by point key."""
    found: dict[str, StoredPoint] = {}
    for record in records:
        payload = dict(record.payload or {})
        museum_id = payload.get(ID_FIELD)
        if payload_fields is not None and ID_FIELD not in payload_fields:
            payload.pop(ID_FIELD, None)
        if museum_id is not None:
            found[str(record.id)] = StoredPoint(
                museum_id, _vectors_as_arrays(record.vector) if with_vectors else {}, payload
            )
    return found


# ----------------------------------------------------------------------------------------------
# Embedded engine (qdrant-edge)
# ----------------------------------------------------------------------------------------------


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
            raise _outdated(self.collection, f"in {self.path}", missing)
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

    def _filter(self, conditions: Conditions | None, exclude_ids: Sequence[str] = ()) -> Any:
        qe = self._qe
        must: list[Any] = []
        if conditions is not None:
            for key, values in conditions.keyword_terms():
                must.append(qe.FieldCondition(key, match=qe.MatchAny(values)))
            if conditions.year_from is not None or conditions.year_to is not None:
                must.append(
                    qe.FieldCondition("year", range=qe.RangeFloat(gte=conditions.year_from, lte=conditions.year_to))
                )
            if conditions.has_image is not None:
                # A Python bool in MatchValue silently matches nothing in qdrant-edge 0.9; numpy's works.
                must.append(qe.FieldCondition("has_image", match=qe.MatchValue(np.bool_(conditions.has_image))))
        must_not = [qe.HasIdCondition({point_id(i) for i in exclude_ids})] if exclude_ids else []
        min_should = None
        if conditions is not None and conditions.tag_terms:
            terms = [qe.FieldCondition(TAG_TERMS_FIELD, match=qe.MatchValue(t)) for t in conditions.tag_terms]
            min_should = qe.MinShould(terms, conditions.min_tag_terms)
        if not must and not must_not and min_should is None:
            return None
        return qe.Filter(must=must or None, must_not=must_not or None, min_should=min_should)

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
            qe.Point(point_id(p.id), {n: self._vector(v) for n, v in p.vectors.items()}, _payload(p)) for p in points
        ]
        self._update(qe.UpdateOperation.upsert_points(batch))

    def _get(
        self, keys: list[str], vector_names: Sequence[str], payload_fields: Sequence[str] | None
    ) -> dict[str, StoredPoint]:
        qe = self._qe
        fields = None if payload_fields is None else [ID_FIELD, *payload_fields]
        with_payload = True if fields is None else qe.PayloadSelector.Include(fields)
        records = self._shard.retrieve([uuid.UUID(k) for k in keys], with_payload, list(vector_names) or False)
        return _points(records, bool(vector_names), payload_fields)

    def _retrieve_vectors(self, keys: list[str], name: str) -> Sequence[Any]:
        return self._shard.retrieve([uuid.UUID(k) for k in keys], False, [name])

    def _delete(self, ids: list[str]) -> None:
        self._update(self._qe.UpdateOperation.delete_points([point_id(i) for i in ids]))

    def _count(self, conditions: Conditions | None) -> int:
        return int(self._shard.count(self._qe.CountRequest(exact=True, filter=self._filter(conditions))))

    def _scroll(
        self, conditions: Conditions | None, limit: int, start: str | None, payload_fields: Sequence[str] | None
    ) -> tuple[list[StoredPoint], str | None]:
        qe = self._qe
        fields = None if payload_fields is None else [ID_FIELD, *payload_fields]
        request = qe.ScrollRequest(
            offset=uuid.UUID(start) if start else None,
            limit=limit,
            filter=self._filter(conditions),
            with_payload=True if fields is None else qe.PayloadSelector.Include(fields),
            with_vector=False,
        )
        records, following = self._shard.scroll(request)
        return list(_points(records, False, payload_fields).values()), None if following is None else str(following)

    def _query(
        self,
        vector_name: str,
        vector: np.ndarray,
        limit: int,
        offset: int,
        conditions: Conditions | None,
        exclude_ids: Sequence[str],
        keys_only: bool,
        approximate: bool,
    ) -> list[ScoredObject]:
        qe = self._qe
        request = qe.QueryRequest(
            limit=limit,
            offset=offset or None,
            query=qe.Query.Nearest(vector.tolist(), using=vector_name),
            filter=self._filter(conditions, exclude_ids),
            params=qe.SearchParams(quantization=qe.QuantizationSearchParams(ignore=not approximate)),
            with_payload=not keys_only,
            with_vector=False,
        )
        return _scored(self._shard.query(request), keys_only)

    def _sparse_query(
        self,
        vector_name: str,
        vector: SparseVector,
        limit: int,
        conditions: Conditions | None,
        exclude_ids: Sequence[str],
        keys_only: bool,
    ) -> list[ScoredObject]:
        qe = self._qe
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(self._vector(vector), using=vector_name),
            filter=self._filter(conditions, exclude_ids),
            with_payload=not keys_only,
            with_vector=False,
        )
        return _scored(self._shard.query(request), keys_only)

    def _recommend(
        self,
        vector_name: str,
        positives: np.ndarray,
        negatives: np.ndarray,
        limit: int,
        conditions: Conditions | None,
        exclude_ids: Sequence[str],
    ) -> list[ScoredObject]:
        qe = self._qe
        examples = qe.RecommendQuery(positives=positives.tolist(), negatives=negatives.tolist())
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.RecommendBestScore(examples, using=vector_name),
            filter=self._filter(conditions, exclude_ids),
            params=qe.SearchParams(quantization=qe.QuantizationSearchParams(ignore=True)),  # exact
            with_payload=True,
            with_vector=False,
        )
        return _scored(self._shard.query(request))

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
        return target, self._count(None)

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


# ----------------------------------------------------------------------------------------------
# Qdrant server (qdrant-client)
# ----------------------------------------------------------------------------------------------


class ServerStore(VectorStore):
    """A collection on a Qdrant server at `location` (http(s) URL), or in qdrant-client's local
    mode (`location=":memory:"`, or a folder given as `path`), which tests use to run the same
    contract as the embedded store."""

    kind = "server"

    def __init__(
        self, location: str, collection: str, api_key: str = "", timeout_s: int = 30, path: str | None = None
    ) -> None:
        super().__init__(collection)
        from qdrant_client import QdrantClient, models

        self._models = models
        # qdrant-client's local mode (tests): exact search only, it warns about search params.
        self._local = path is not None or location == ":memory:"
        if path is not None:
            self._client = QdrantClient(path=path)
        else:
            self._client = QdrantClient(location=location, api_key=api_key or None, timeout=timeout_s)

    def is_outage(self, exc: Exception) -> bool:
        import httpx
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        if isinstance(exc, UnexpectedResponse):  # the server answered: overloaded or failing
            return exc.status_code in (429, 502, 503, 504)
        return isinstance(exc, (ResponseHandlingException, httpx.TransportError))

    def stored_dimensions(self) -> dict[str, int] | None:
        if not self._client.collection_exists(self.collection):
            return None
        params = self._client.get_collection(self.collection).config.params
        if not isinstance(params.vectors, dict):
            raise StoreError(f"collection {self.collection!r} has an unnamed vector: it was not made by Vitrine")
        missing = [name for name in SPARSE_VECTOR_NAMES if name not in (params.sparse_vectors or {})]
        if missing:
            raise _outdated(self.collection, "on the Qdrant server", missing)
        return {name: int(p.size) for name, p in params.vectors.items()}

    def _create(self, dims: Mapping[str, int]) -> None:
        m = self._models
        self._client.create_collection(
            self.collection,
            vectors_config={name: m.VectorParams(size=size, distance=m.Distance.COSINE) for name, size in dims.items()},
            sparse_vectors_config={name: m.SparseVectorParams(modifier=m.Modifier.IDF) for name in SPARSE_VECTOR_NAMES},
            # As the embedded store: an int8 copy in RAM for `approximate` queries.
            quantization_config=m.ScalarQuantization(
                scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, quantile=0.99, always_ram=True)
            ),
        )
        self._ensure_indexes()

    def _open(self, dims: Mapping[str, int]) -> None:
        self._ensure_indexes()

    def _ensure_indexes(self) -> None:
        m = self._models
        existing = set(self._client.get_collection(self.collection).payload_schema or {})
        schema = (
            [(f, m.PayloadSchemaType.KEYWORD) for f in KEYWORD_FIELDS]
            + [(f, m.PayloadSchemaType.INTEGER) for f in INTEGER_FIELDS]
            + [(f, m.PayloadSchemaType.BOOL) for f in BOOL_FIELDS]
        )
        with warnings.catch_warnings():
            # Local mode warns that payload indexes have no effect there; a server builds them.
            warnings.simplefilter("ignore", UserWarning)
            for name, kind in schema:
                if name not in existing:
                    self._client.create_payload_index(self.collection, name, kind, wait=True)

    def _filter(self, conditions: Conditions | None, exclude_ids: Sequence[str] = ()) -> Any:
        m = self._models
        must: list[Any] = []
        if conditions is not None:
            for key, values in conditions.keyword_terms():
                must.append(m.FieldCondition(key=key, match=m.MatchAny(any=values)))
            if conditions.year_from is not None or conditions.year_to is not None:
                must.append(
                    m.FieldCondition(key="year", range=m.Range(gte=conditions.year_from, lte=conditions.year_to))
                )
            if conditions.has_image is not None:
                must.append(m.FieldCondition(key="has_image", match=m.MatchValue(value=bool(conditions.has_image))))
        must_not: list[Any] = [m.HasIdCondition(has_id=[str(point_id(i)) for i in exclude_ids])] if exclude_ids else []
        min_should = None
        if conditions is not None and conditions.tag_terms:
            terms = [m.FieldCondition(key=TAG_TERMS_FIELD, match=m.MatchValue(value=t)) for t in conditions.tag_terms]
            min_should = m.MinShould(conditions=terms, min_count=conditions.min_tag_terms)
        if not must and not must_not and min_should is None:
            return None
        return m.Filter(must=must or None, must_not=must_not or None, min_should=min_should)

    def _search_params(self, approximate: bool) -> Any:
        """The int8 copy for approximate queries, the float32 vectors otherwise (local mode, in
        tests, is always exact and warns about search params)."""
        if self._local:
            return None
        m = self._models
        return m.SearchParams(quantization=m.QuantizationSearchParams(ignore=not approximate))

    def _vector(self, vector: np.ndarray | SparseVector) -> Any:
        if isinstance(vector, SparseVector):
            return self._models.SparseVector(indices=list(vector.indices), values=list(vector.values))
        return np.asarray(vector, dtype=np.float32).tolist()

    def _upsert(self, points: Sequence[StoredPoint]) -> None:
        m = self._models
        structs = [
            m.PointStruct(
                id=str(point_id(p.id)), vector={n: self._vector(v) for n, v in p.vectors.items()}, payload=_payload(p)
            )
            for p in points
        ]
        self._client.upsert(self.collection, points=structs, wait=True)

    def _get(
        self, keys: list[str], vector_names: Sequence[str], payload_fields: Sequence[str] | None
    ) -> dict[str, StoredPoint]:
        fields: bool | list[str] = True if payload_fields is None else [ID_FIELD, *payload_fields]
        records = self._client.retrieve(
            self.collection,
            list(keys),
            with_payload=fields,
            with_vectors=list(vector_names) or False,
        )
        return _points(records, bool(vector_names), payload_fields)

    def _retrieve_vectors(self, keys: list[str], name: str) -> Sequence[Any]:
        return self._client.retrieve(self.collection, keys, with_payload=False, with_vectors=[name])

    def _delete(self, ids: list[str]) -> None:
        m = self._models
        self._client.delete(self.collection, m.PointIdsList(points=[str(point_id(i)) for i in ids]), wait=True)

    def _count(self, conditions: Conditions | None) -> int:
        return int(self._client.count(self.collection, count_filter=self._filter(conditions), exact=True).count)

    def _scroll(
        self, conditions: Conditions | None, limit: int, start: str | None, payload_fields: Sequence[str] | None
    ) -> tuple[list[StoredPoint], str | None]:
        records, following = self._client.scroll(
            self.collection,
            scroll_filter=self._filter(conditions),
            limit=limit,
            offset=start,
            with_payload=True if payload_fields is None else [ID_FIELD, *payload_fields],
            with_vectors=False,
        )
        return list(_points(records, False, payload_fields).values()), None if following is None else str(following)

    def _query(
        self,
        vector_name: str,
        vector: np.ndarray,
        limit: int,
        offset: int,
        conditions: Conditions | None,
        exclude_ids: Sequence[str],
        keys_only: bool,
        approximate: bool,
    ) -> list[ScoredObject]:
        answer = self._client.query_points(
            self.collection,
            query=vector.tolist(),
            using=vector_name,
            query_filter=self._filter(conditions, exclude_ids),
            search_params=self._search_params(approximate),
            limit=limit,
            offset=offset or None,
            with_payload=not keys_only,
        )
        return _scored(answer.points, keys_only)

    def _sparse_query(
        self,
        vector_name: str,
        vector: SparseVector,
        limit: int,
        conditions: Conditions | None,
        exclude_ids: Sequence[str],
        keys_only: bool,
    ) -> list[ScoredObject]:
        answer = self._client.query_points(
            self.collection,
            query=self._vector(vector),
            using=vector_name,
            query_filter=self._filter(conditions, exclude_ids),
            limit=limit,
            with_payload=not keys_only,
        )
        return _scored(answer.points, keys_only)

    def _recommend(
        self,
        vector_name: str,
        positives: np.ndarray,
        negatives: np.ndarray,
        limit: int,
        conditions: Conditions | None,
        exclude_ids: Sequence[str],
    ) -> list[ScoredObject]:
        m = self._models
        examples = m.RecommendInput(
            positive=positives.tolist(), negative=negatives.tolist(), strategy=m.RecommendStrategy.BEST_SCORE
        )
        answer = self._client.query_points(
            self.collection,
            query=m.RecommendQuery(recommend=examples),
            using=vector_name,
            query_filter=self._filter(conditions, exclude_ids),
            search_params=self._search_params(approximate=False),
            limit=limit,
            with_payload=True,
        )
        return _scored(answer.points)

    # -- snapshots: the server's own (snapshot_service.py) -----------------------------------

    def create_snapshot(self) -> Any:
        """A snapshot of the collection made by the Qdrant server and kept there (its description)."""
        return self._client.create_snapshot(self.collection, wait=True)

    def list_snapshots(self) -> list[Any]:
        return list(self._client.list_snapshots(self.collection))

    def delete_snapshot(self, name: str) -> None:
        self._client.delete_snapshot(self.collection, name, wait=True)

    def close(self) -> None:
        self._client.close()
        self._dims = None


def open_store(data_dir: str | Path, collection: str, qdrant_url: str = "", qdrant_api_key: str = "") -> VectorStore:
    """The Qdrant server at `qdrant_url` when given, else the embedded engine in `data_dir`."""
    if qdrant_url:
        return ServerStore(qdrant_url, collection, api_key=qdrant_api_key)
    return EmbeddedStore(data_dir, collection)


class AsyncStore:
    """A store for asyncio code: every call runs on one dedicated thread, in submission order,
    so the event loop never runs engine calls itself."""

    def __init__(self, store: VectorStore) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitrine-store")

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        except Exception as exc:
            if not self.store.is_outage(exc):
                raise
            # A write that failed here changed nothing: each is one request to the store.
            raise outage("the vector store", exc) from exc

    @property
    def kind(self) -> str:
        return self.store.kind

    def dimensions(self) -> dict[str, int]:
        return self.store.dimensions()

    async def stored_dimensions(self) -> dict[str, int] | None:
        return await self._run(self.store.stored_dimensions)

    async def ensure_collection(self, dims: Mapping[str, int]) -> None:
        await self._run(self.store.ensure_collection, dims)

    async def upsert(self, points: Sequence[StoredPoint]) -> None:
        await self._run(self.store.upsert, points)

    async def get(
        self,
        ids: Sequence[str],
        with_vectors: bool = False,
        payload_fields: Sequence[str] | None = None,
        with_sparse: bool = False,
    ) -> dict[str, StoredPoint]:
        return await self._run(self.store.get, ids, with_vectors, payload_fields, with_sparse)

    async def get_vectors(self, ids: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        return await self._run(self.store.get_vectors, ids)

    async def delete(self, ids: Sequence[str]) -> int:
        return await self._run(self.store.delete, ids)

    async def count(self, conditions: Conditions | None = None) -> int:
        return await self._run(self.store.count, conditions)

    async def scroll(
        self, conditions: Conditions | None, limit: int, start: str | None, payload_fields: Sequence[str] | None
    ) -> tuple[list[StoredPoint], str | None]:
        return await self._run(self.store.scroll, conditions, limit, start, payload_fields)

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
            self.store.query, vector_name, vector, limit, offset, conditions, exclude_ids, keys_only, approximate
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
        return await self._run(self.store.sparse_query, vector_name, vector, limit, conditions, exclude_ids, keys_only)

    async def recommend(
        self,
        vector_name: str,
        positives: np.ndarray,
        negatives: np.ndarray,
        limit: int,
        conditions: Conditions | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> list[ScoredObject]:
        return await self._run(self.store.recommend, vector_name, positives, negatives, limit, conditions, exclude_ids)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Any other work with the store, on the store's thread: `fn` is one of the store's
        methods, or a function calling several of them (one hop to the thread for all)."""
        return await self._run(fn, *args, **kwargs)

    async def close(self) -> None:
        await self._run(self.store.close)
        self._executor.shutdown(wait=True)
