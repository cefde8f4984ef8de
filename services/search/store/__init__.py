"""The vector store: one collection of collection objects, each a point with named dense vectors
(`text`, and `image` when the object has one), named sparse vectors (`keywords`, `ngrams` and
`tags`, see keywords.py; the store applies IDF to them, so a sparse query scores like BM25) and its
catalogue fields as payload.

This package is the only code that imports a Qdrant library: types.py (what the store speaks in),
translation.py (filters and queries, written once for both engines), base.py (`VectorStore`, the
contract), embedded.py (`EmbeddedStore`: qdrant-edge in-process, files in a folder, no server to
run), qdrant_server.py (`ServerStore`: a Qdrant server, or qdrant-client's local mode in tests;
both pass the same contract tests) and asynchronous.py (`AsyncStore`, which the service codes
against, and `open_store`). The names below are the package's interface.
"""

from vitrine.search.store.asynchronous import AsyncStore, open_store
from vitrine.search.store.base import MAX_IDS_DROPPED_AFTER, StoreReads, VectorStore
from vitrine.search.store.embedded import EmbeddedStore, sync_folder
from vitrine.search.store.qdrant_server import ServerStore
from vitrine.search.store.types import (
    ID_FIELD,
    SPARSE_VECTOR_NAMES,
    TAG_TERMS_FIELD,
    VECTOR_NAMES,
    Conditions,
    DimensionMismatch,
    OutdatedCollection,
    ScoredObject,
    SparseVector,
    StoredPoint,
    StoreError,
    point_id,
    point_key,
)

__all__ = [
    "ID_FIELD",
    "MAX_IDS_DROPPED_AFTER",
    "SPARSE_VECTOR_NAMES",
    "TAG_TERMS_FIELD",
    "VECTOR_NAMES",
    "AsyncStore",
    "Conditions",
    "DimensionMismatch",
    "EmbeddedStore",
    "OutdatedCollection",
    "ScoredObject",
    "ServerStore",
    "SparseVector",
    "StoreError",
    "StoreReads",
    "StoredPoint",
    "VectorStore",
    "open_store",
    "point_id",
    "point_key",
    "sync_folder",
]
