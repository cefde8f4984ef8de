"""The sensitive-tag rules on real Tate records and the real Tate vocabulary: identity terms are
always flagged, a festive tag is flagged on a battle painting and not on a harbour view, and the
shipped rules file names only tags and places the Tate vocabulary has."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import SHARED_DATA
from vitrine.common.vocabulary import Vocabulary
from vitrine.tagger.data import load_documents
from vitrine.tagger.safety import DEFAULT_RULES, SafetyRules
from vitrine.v1 import common_pb2, tagger_pb2

TATE = SHARED_DATA / "tate"


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    return Vocabulary.load(TATE / "subjects.jsonl.gz")


@pytest.fixture(scope="module")
def dev() -> dict[str, common_pb2.CollectionObject]:
    return {d.id: d.obj for d in load_documents(TATE / "tate_dev.jsonl.gz")}


def test_shipped_rules_match_the_tate_vocabulary(vocabulary: Vocabulary, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vitrine.tagger.safety"):
        rules = SafetyRules.load(DEFAULT_RULES, vocabulary)
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    # Every ethnicity term of the hierarchy is covered by the path rule.
    ethnicity = [t.subject for t in vocabulary if "people > ethnicity" in t.paths]
    assert len(ethnicity) >= 10 and all(t in rules.by_tag for t in ethnicity)


def test_festive_tag_is_flagged_on_a_battle_painting_only(
    vocabulary: Vocabulary, dev: dict[str, common_pb2.CollectionObject]
) -> None:
    rules = SafetyRules.load(DEFAULT_RULES, vocabulary)
    battle = dev["T01009"]  # Nicholas Pocock, "The Battle of Lissa" (1812)
    assert "Battle of Lissa" in battle.title
    suggestions = [tagger_pb2.TagSuggestion(tag=common_pb2.Tag(id=t)) for t in ("firework", "sea", "black")]
    rules.flag(battle, suggestions)
    flagged = {s.tag.id: s.review_reason for s in suggestions if s.review_required}
    assert set(flagged) == {"firework", "black"}
    assert "war" in flagged["firework"] and "ethnicity" in flagged["black"]
    calm = dev["D01199"]  # Turner, "Margate Harbour from the Sea"
    assert rules.review_reason(calm, "firework") == ""
    # The object's existing tags count as context too.
    at_war = common_pb2.CollectionObject()
    at_war.CopyFrom(calm)
    at_war.subjects.append("World War I - non-specific")
    assert "war" in rules.review_reason(at_war, "firework")
    assert rules.review_reason(calm, "black")  # identity terms: always, whatever the object
