"""Domain suggestions (suggestions.py) to the wire's protobuf messages, for the servicer and the
audit report; vectors a request brings, from the wire."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vitrine.common.errors import invalid_argument
from vitrine.tagger.suggestions import Explanation, Suggestion, SuggestionKind
from vitrine.v1 import common_pb2, tagger_pb2

KINDS = {
    SuggestionKind.MIMIC: tagger_pb2.SUGGESTION_KIND_MIMIC,
    SuggestionKind.RECOMMEND: tagger_pb2.SUGGESTION_KIND_RECOMMEND,
}


def suggestion_message(suggestion: Suggestion) -> tagger_pb2.TagSuggestion:
    tag = suggestion.tag
    message = tagger_pb2.TagSuggestion(
        tag=common_pb2.Tag(id=tag.id, label=tag.label, paths=list(tag.paths), uri=tag.uri),
        score=suggestion.score,
        kind=KINDS[suggestion.kind],
        already_present=suggestion.already_present,
        review_required=suggestion.review_required,
        review_reason=suggestion.review_reason,
    )
    if suggestion.explanation is not None:
        message.explanation.CopyFrom(explanation_message(suggestion.explanation))
    return message


def explanation_message(explanation: Explanation) -> common_pb2.Explanation:
    return common_pb2.Explanation(
        components=[
            common_pb2.ComponentEvidence(component=c.component, score=c.score, rank=c.rank, contribution=c.contribution)
            for c in explanation.components
        ],
        similar_objects=[
            common_pb2.SimilarObject(id=s.id, title=s.title, similarity=s.similarity)
            for s in explanation.similar_objects
        ],
        matched_text=[
            common_pb2.MatchedText(field=m.field, text=m.text, similarity=m.similarity)
            for m in explanation.matched_text
        ],
        tag_paths=list(explanation.tag_paths),
        summary=explanation.summary,
        catalogue_neighbours=[
            common_pb2.CatalogueNeighbour(id=n.id, title=n.title, gap=n.gap) for n in explanation.catalogue_neighbours
        ],
    )


def given_text_vectors(
    requests: Sequence[tagger_pb2.SuggestTagsRequest], text_model: str, dimension: int
) -> dict[int, np.ndarray]:
    """Request position -> the text vector it brings, for requests whose vector comes from
    `text_model` (others are embedded by the tagger). A vector of that model with the wrong
    length, or not unit length, is refused: it would rank the object against nonsense."""
    given: dict[int, np.ndarray] = {}
    for row, request in enumerate(requests):
        vector = request.text_vector
        if not vector.values or vector.model != text_model:
            continue
        name = f"text_vector of object {request.object.id!r}"
        if len(vector.values) != dimension or vector.dimension not in (0, dimension):
            raise invalid_argument(
                f"{name} has {len(vector.values)} values (dimension {vector.dimension}): "
                f"{text_model} vectors of this model version have {dimension}"
            )
        values = np.asarray(vector.values, dtype=np.float32)
        norm = float(np.linalg.norm(values))
        if not abs(norm - 1.0) <= 1e-3:  # also catches NaN
            raise invalid_argument(f"{name} has length {norm:.4g}: send the embedder's unit-length vector")
        given[row] = values
    return given
