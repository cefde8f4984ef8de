"""What the tagger answers, as domain results: suggestions and the evidence behind them.

The models, the feedback filter, the safety rules and the audit work on these; the servicer
turns them into protobuf messages (transport.py), the only place the wire format is built.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from vitrine.common.vocabulary import Term


class SuggestionKind(enum.IntEnum):
    """Why a tag is suggested. The numbers are the wire enum's (SuggestionKind in tagger.proto),
    which buf breaking keeps stable."""

    MIMIC = 1  # some supervised model proposes it: curators used it on objects like this
    RECOMMEND = 2  # only the semantic models do: it fits by meaning, curators have not used it so


@dataclass(frozen=True)
class Tag:
    id: str  # the vocabulary's subject
    label: str
    paths: tuple[str, ...]
    uri: str = ""

    @classmethod
    def of(cls, term: Term) -> Tag:
        return cls(term.subject, term.subject, tuple(term.paths), term.uri)


@dataclass(frozen=True)
class ComponentEvidence:
    """What one component said about the tag and its (signed) share of the final score."""

    component: str
    score: float = 0.0
    rank: int = 0  # 1 = its best tag, 0 = not ranked
    contribution: float = 0.0


@dataclass(frozen=True)
class SimilarObject:
    id: str
    title: str
    similarity: float


@dataclass(frozen=True)
class MatchedText:
    field: str  # the object field that matched, or a meaning ("metadata (meaning)")
    text: str
    similarity: float


@dataclass(frozen=True)
class CatalogueNeighbour:
    id: str
    title: str
    gap: int  # how far apart the accession numbers are


@dataclass
class Evidence:
    """What one backend contributes to one suggestion's explanation (empty: nothing)."""

    components: list[ComponentEvidence] = field(default_factory=list)
    similar_objects: list[SimilarObject] = field(default_factory=list)
    matched_text: list[MatchedText] = field(default_factory=list)
    catalogue_neighbours: list[CatalogueNeighbour] = field(default_factory=list)


@dataclass
class Explanation:
    components: list[ComponentEvidence]
    similar_objects: list[SimilarObject]
    matched_text: list[MatchedText]
    tag_paths: tuple[str, ...]
    summary: str
    catalogue_neighbours: list[CatalogueNeighbour]


@dataclass
class Suggestion:
    tag: Tag
    score: float  # calibrated probability that a curator would give the tag
    kind: SuggestionKind
    already_present: bool = False
    explanation: Explanation | None = None  # None when the caller asked for none
    # Set by the safety rules: a sensitive suggestion a curator must confirm, and why.
    review_required: bool = False
    review_reason: str = ""
