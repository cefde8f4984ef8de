"""What the store speaks in, whichever engine holds the collection: vector and payload names,
point ids, the filter (`Conditions`), sparse vectors, stored and scored points, and the errors."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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

# Point ids must be integers or UUIDs; museum ids are free strings ("T05010", "met-247009"), so
# each is mapped to a stable UUIDv5 and kept verbatim in the payload.
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://vitrine.museum/objects")

_MAX_SPARSE_INDEX = 2**32 - 1


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


def outdated(collection: str, where: str, missing: Sequence[str]) -> OutdatedCollection:
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


def check_sparse(vector: Any, what: str) -> None:
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
