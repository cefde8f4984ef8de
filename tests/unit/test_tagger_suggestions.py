"""Domain suggestions and the wire: backends contribute evidence through `explain` (the default
has none), and the servicer's transport builds the protobuf messages from domain results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from vitrine.common.vocabulary import Term, Vocabulary
from vitrine.tagger.backends.base import Backend, Context, Inputs
from vitrine.tagger.backends.catalogue import CatalogueNeighbours
from vitrine.tagger.backends.most_frequent import MostFrequent
from vitrine.tagger.ensemble import Candidates, Combiner, Ranked
from vitrine.tagger.safety import ContextRule, SafetyRules
from vitrine.tagger.suggestions import (
    CatalogueNeighbour,
    ComponentEvidence,
    Explanation,
    MatchedText,
    SimilarObject,
    Suggestion,
    SuggestionKind,
    Tag,
)
from vitrine.tagger.text_features import words
from vitrine.tagger.transport import suggestion_message
from vitrine.v1 import common_pb2, tagger_pb2


def inputs(ids: list[str]) -> Inputs:
    objects = [common_pb2.CollectionObject(id=i, title=f"title of {i}") for i in ids]
    return Inputs(objects, np.zeros((len(ids), 1), np.float32), sp.csr_matrix((len(ids), 1)))


def ranked_for(batch: Inputs, pairs: list[tuple[int, int]]) -> Ranked:
    """A ranking holding the (document, tag) candidates given, in that order."""
    docs = np.array([d for d, _ in pairs], dtype=np.int64)
    tags = np.array([t for _, t in pairs], dtype=np.int64)
    candidates = Candidates(docs, tags, np.zeros((len(pairs), 1), np.float32), {}, {})
    return Ranked(batch, {}, candidates, np.ones(len(pairs), np.float32))


@pytest.fixture
def vocabulary() -> Vocabulary:
    return Vocabulary([Term(f"tag {i}", (f"top > tag {i}",)) for i in range(3)])


def test_the_default_explain_hook_gives_no_evidence(vocabulary: Vocabulary) -> None:
    batch = inputs(["A1"])
    assert (
        MostFrequent(Context(vocabulary, np.zeros((3, 0)))).explain(ranked_for(batch, [(0, 1)]), [np.array([0])])
        is None
    )


def test_the_catalogue_backend_names_its_neighbours_as_evidence(tmp_path: Path) -> None:
    ids = ["D100", "D101", "D103"]
    labels = sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 1]], np.float32))
    model = CatalogueNeighbours(None)  # type: ignore[arg-type]  # the context is not used
    model.train(inputs(ids), labels, seed=1)
    batch = inputs(["D102", "X"])
    ranked = ranked_for(batch, [(0, 0), (0, 1), (1, 0)])
    evidence = model.explain(ranked, [np.array([0, 1]), np.array([], dtype=np.int64)])
    assert evidence is not None and len(evidence) == 2 and evidence[1] == []
    first, second = evidence[0]
    assert first.catalogue_neighbours == [
        CatalogueNeighbour("D101", "title of D101", 1),
        CatalogueNeighbour("D100", "title of D100", 2),
    ]
    assert [n.id for n in second.catalogue_neighbours] == ["D101", "D103"]
    assert not first.similar_objects and not first.matched_text and not first.components


def test_the_combiner_is_a_backend(vocabulary: Vocabulary) -> None:
    context = Context(vocabulary, np.zeros((3, 0)))
    combiner = Combiner(context, {}, ["knn", "omikuji"])
    assert isinstance(combiner, Backend) and combiner.name == "combiner"
    assert combiner.feature_names[:4] == ["knn_score", "knn_rank", "omikuji_score", "omikuji_rank"]
    assert (context.tag_counts == np.zeros(3)).all()


def explained() -> Suggestion:
    return Suggestion(
        tag=Tag("sea", "sea", ("nature > water",), "http://example.org/sea"),
        score=0.75,
        kind=SuggestionKind.RECOMMEND,
        already_present=True,
        explanation=Explanation(
            components=[ComponentEvidence("knn", 0.5, 2, 0.25), ComponentEvidence("tag_frequency", contribution=0.1)],
            similar_objects=[SimilarObject("T1", "Seascape", 0.875)],
            matched_text=[MatchedText("title", "Sea", 1.0)],
            tag_paths=("nature > water",),
            summary="'sea': strongest evidence from knn.",
            catalogue_neighbours=[CatalogueNeighbour("T2", "Another sea", 3)],
        ),
    )


def test_the_transport_builds_the_wire_message_from_a_domain_suggestion() -> None:
    message = suggestion_message(explained())
    expected = tagger_pb2.TagSuggestion(
        tag=common_pb2.Tag(id="sea", label="sea", paths=["nature > water"], uri="http://example.org/sea"),
        score=0.75,
        kind=tagger_pb2.SUGGESTION_KIND_RECOMMEND,
        already_present=True,
        explanation=common_pb2.Explanation(
            components=[
                common_pb2.ComponentEvidence(component="knn", score=0.5, rank=2, contribution=0.25),
                common_pb2.ComponentEvidence(component="tag_frequency", contribution=0.1),
            ],
            similar_objects=[common_pb2.SimilarObject(id="T1", title="Seascape", similarity=0.875)],
            matched_text=[common_pb2.MatchedText(field="title", text="Sea", similarity=1.0)],
            tag_paths=["nature > water"],
            summary="'sea': strongest evidence from knn.",
            catalogue_neighbours=[common_pb2.CatalogueNeighbour(id="T2", title="Another sea", gap=3)],
        ),
    )
    assert message == expected
    # The domain kinds carry the wire's numbers.
    assert [int(k) for k in SuggestionKind] == [tagger_pb2.SUGGESTION_KIND_MIMIC, tagger_pb2.SUGGESTION_KIND_RECOMMEND]


def test_a_suggestion_without_explanation_has_none_on_the_wire() -> None:
    bare = explained()
    bare.explanation = None
    assert not suggestion_message(bare).HasField("explanation")


def test_safety_rules_flag_domain_suggestions() -> None:
    rules = SafetyRules(
        {"sea": "always reviewed"}, [ContextRule(frozenset({"sea"}), (frozenset(words("war")),), "war")]
    )
    suggestion = explained()
    rules.flag(common_pb2.CollectionObject(id="T9", title="A war at sea"), [suggestion])
    assert suggestion.review_required and suggestion.review_reason == "always reviewed; war"
    message = suggestion_message(suggestion)
    assert message.review_required and message.review_reason == "always reviewed; war"
