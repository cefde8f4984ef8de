"""Between the store's own types and an engine's, written once for both engines.

`engine_filter` translates `Conditions` (and excluded ids) through an engine's `FilterTerms`,
the handful of constructors in which the two Qdrant libraries differ; `EngineQuery` is a query
described once, which each engine turns into its own request. Both libraries answer with records
of the same shape, read back here (`stored_points`, `scored`, `named_vectors`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from vitrine.search.store.types import (
    ID_FIELD,
    TAG_TERMS_FIELD,
    Conditions,
    ScoredObject,
    SparseVector,
    StoredPoint,
    point_id,
)


class FilterTerms(Protocol):
    """An engine's filter constructors."""

    def match_any(self, key: str, values: list[str]) -> Any: ...

    def match_value(self, key: str, value: bool | int) -> Any: ...

    def year_range(self, gte: int | None, lte: int | None) -> Any: ...

    def has_id(self, ids: list[uuid.UUID]) -> Any: ...

    def min_should(self, conditions: list[Any], min_count: int) -> Any: ...

    def combine(self, must: list[Any] | None, must_not: list[Any] | None, min_should: Any) -> Any: ...


def engine_filter(terms: FilterTerms, conditions: Conditions | None, exclude_ids: Sequence[str] = ()) -> Any:
    """The engine's filter for these conditions without the excluded ids (None: no filter)."""
    must: list[Any] = []
    min_should = None
    if conditions is not None:
        for key, values in conditions.keyword_terms():
            must.append(terms.match_any(key, values))
        if conditions.year_from is not None or conditions.year_to is not None:
            must.append(terms.year_range(conditions.year_from, conditions.year_to))
        if conditions.has_image is not None:
            must.append(terms.match_value("has_image", bool(conditions.has_image)))
        if conditions.tag_terms:
            wanted = [terms.match_value(TAG_TERMS_FIELD, t) for t in conditions.tag_terms]
            min_should = terms.min_should(wanted, conditions.min_tag_terms)
    must_not = [terms.has_id([point_id(i) for i in exclude_ids])] if exclude_ids else []
    if not must and not must_not and min_should is None:
        return None
    return terms.combine(must or None, must_not or None, min_should)


@dataclass(frozen=True)
class EngineQuery:
    """One query, as either engine runs it: nearest to `vector` (dense or sparse), or Qdrant's
    best-score recommendation from `positives` and `negatives` (rows) when those are set."""

    using: str
    limit: int
    filter: Any
    with_payload: bool
    vector: np.ndarray | SparseVector | None = None
    positives: np.ndarray | None = None
    negatives: np.ndarray | None = None
    offset: int = 0
    # True: the float32 vectors; False: the int8 copy where there is one; None: the engine's
    # default (sparse queries have no quantized copy).
    exact: bool | None = None


def point_payload(point: StoredPoint) -> dict[str, Any]:
    return {**point.payload, ID_FIELD: point.id}


def named_vectors(raw: Any) -> dict[str, np.ndarray | SparseVector]:
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


def scored(hits: Sequence[Any], keys_only: bool = False) -> list[ScoredObject]:
    """Query answers (of either library) as ScoredObjects, best first."""
    if keys_only:
        return [ScoredObject(str(h.id), float(h.score), {}) for h in hits]
    return [ScoredObject(h.payload[ID_FIELD], float(h.score), dict(h.payload)) for h in hits if h.payload]


def stored_points(
    records: Sequence[Any], with_vectors: bool, payload_fields: Sequence[str] | None
) -> dict[str, StoredPoint]:
    """Retrieved records (of either library) as StoredPoints keyed by point key."""
    found: dict[str, StoredPoint] = {}
    for record in records:
        payload = dict(record.payload or {})
        museum_id = payload.get(ID_FIELD)
        if payload_fields is not None and ID_FIELD not in payload_fields:
            payload.pop(ID_FIELD, None)
        if museum_id is not None:
            found[str(record.id)] = StoredPoint(
                museum_id, named_vectors(record.vector) if with_vectors else {}, payload
            )
    return found


def selected_payload(payload_fields: Sequence[str] | None) -> list[str] | None:
    """The payload keys to read (None: all of it); the museum id is always among them."""
    return None if payload_fields is None else [ID_FIELD, *payload_fields]
