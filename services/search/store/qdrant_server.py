"""The server engine: a collection on a Qdrant server, through qdrant-client (whose local mode
runs the same contract in tests)."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vitrine.search.store.base import VectorStore
from vitrine.search.store.translation import EngineQuery, point_payload, selected_payload, stored_points
from vitrine.search.store.types import (
    BOOL_FIELDS,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    SPARSE_VECTOR_NAMES,
    SparseVector,
    StoredPoint,
    StoreError,
    outdated,
    point_id,
)


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
        self.filter_terms = _ClientFilterTerms(models)
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
            raise outdated(self.collection, "on the Qdrant server", missing)
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
                id=str(point_id(p.id)),
                vector={n: self._vector(v) for n, v in p.vectors.items()},
                payload=point_payload(p),
            )
            for p in points
        ]
        self._client.upsert(self.collection, points=structs, wait=True)

    def _get(
        self, keys: list[str], vector_names: Sequence[str], payload_fields: Sequence[str] | None
    ) -> dict[str, StoredPoint]:
        fields: bool | list[str] = selected_payload(payload_fields) or True
        records = self._client.retrieve(
            self.collection,
            list(keys),
            with_payload=fields,
            with_vectors=list(vector_names) or False,
        )
        return stored_points(records, bool(vector_names), payload_fields)

    def _retrieve_vectors(self, keys: list[str], name: str) -> Sequence[Any]:
        return self._client.retrieve(self.collection, keys, with_payload=False, with_vectors=[name])

    def _delete(self, ids: list[str]) -> None:
        m = self._models
        self._client.delete(self.collection, m.PointIdsList(points=[str(point_id(i)) for i in ids]), wait=True)

    def _count(self, engine_filter: Any) -> int:
        return int(self._client.count(self.collection, count_filter=engine_filter, exact=True).count)

    def _scroll(
        self, engine_filter: Any, limit: int, start: str | None, payload_fields: Sequence[str] | None
    ) -> tuple[list[StoredPoint], str | None]:
        records, following = self._client.scroll(
            self.collection,
            scroll_filter=engine_filter,
            limit=limit,
            offset=start,
            with_payload=selected_payload(payload_fields) or True,
            with_vectors=False,
        )
        return list(stored_points(records, False, payload_fields).values()), None if following is None else str(
            following
        )

    def _search(self, query: EngineQuery) -> Sequence[Any]:
        m = self._models
        if query.positives is not None:
            examples = m.RecommendInput(
                positive=query.positives.tolist(),
                negative=query.negatives.tolist(),
                strategy=m.RecommendStrategy.BEST_SCORE,
            )
            scoring: Any = m.RecommendQuery(recommend=examples)
        else:
            scoring = self._vector(query.vector)
        answer = self._client.query_points(
            self.collection,
            query=scoring,
            using=query.using,
            query_filter=query.filter,
            search_params=None if query.exact is None else self._search_params(approximate=not query.exact),
            limit=query.limit,
            offset=query.offset or None,
            with_payload=query.with_payload,
        )
        return answer.points

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


class _ClientFilterTerms:
    """qdrant-client's filter constructors (translation.FilterTerms)."""

    def __init__(self, models: Any) -> None:
        self._m = models

    def match_any(self, key: str, values: list[str]) -> Any:
        return self._m.FieldCondition(key=key, match=self._m.MatchAny(any=values))

    def match_value(self, key: str, value: bool | int) -> Any:
        return self._m.FieldCondition(key=key, match=self._m.MatchValue(value=value))

    def year_range(self, gte: int | None, lte: int | None) -> Any:
        return self._m.FieldCondition(key="year", range=self._m.Range(gte=gte, lte=lte))

    def has_id(self, ids: list[uuid.UUID]) -> Any:
        return self._m.HasIdCondition(has_id=[str(i) for i in ids])

    def min_should(self, conditions: list[Any], min_count: int) -> Any:
        return self._m.MinShould(conditions=conditions, min_count=min_count)

    def combine(self, must: list[Any] | None, must_not: list[Any] | None, min_should: Any) -> Any:
        return self._m.Filter(must=must, must_not=must_not, min_should=min_should)
