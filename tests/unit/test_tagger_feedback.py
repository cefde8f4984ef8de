"""The feedback stores (SQLite by default, PostgreSQL by URL): idempotent on the client's id,
all-or-nothing batches, latest decision wins. Here on SQLite; tests/integration/test_tagger_feedback.py
runs the same contract on a real PostgreSQL and kills a process right after a call."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from vitrine.common.errors import ServiceError
from vitrine.common.vocabulary import Term, Vocabulary
from vitrine.tagger.feedback import Feedback, FeedbackStore, SqliteFeedbackStore, open_feedback_store, parse
from vitrine.v1 import tagger_pb2


@pytest.fixture(params=["sqlite"])  # and "postgresql" in tests/integration/test_tagger_feedback.py
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeedbackStore]:
    opened = open_feedback_store(tmp_path / "feedback.sqlite3")
    yield opened
    opened.close()


def item(feedback_id: str, object_id: str = "T1", tag: str = "sea", action: str = "rejected") -> Feedback:
    return Feedback(feedback_id, object_id, tag, action, "curator-7", "")


def test_replay_is_a_no_op_and_reuse_with_other_content_is_refused(store: FeedbackStore) -> None:
    assert store.record([item("f1"), item("f2", tag="ship")], "v1") == [True, True]
    assert store.record([item("f1")], "v1") == [False]
    with pytest.raises(ServiceError) as refused:
        store.record([item("f3"), item("f1", action="accepted")], "v1")
    assert refused.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert "f1" in refused.value.message
    # The batch was refused as a whole: f3 was not stored either.
    assert store.record([item("f3")], "v1") == [True]
    assert store.counts() == {"rejected": 3}


def test_latest_decision_per_object_and_tag_wins(store: FeedbackStore) -> None:
    store.record([item("a", tag="sea"), item("b", tag="ship", action="added"), item("c", object_id="T2")], "v1")
    store.record([item("d", tag="sea", action="accepted")], "v1")
    decided = store.decisions(["T1", "T2", "T9"])
    assert decided["T1"].accepted == {"sea", "ship"} and decided["T1"].rejected == set()
    assert decided["T2"].rejected == {"sea"}
    assert decided["T9"].accepted == decided["T9"].rejected == set()


def test_a_locked_sqlite_database_is_unavailable_and_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite3"
    store = SqliteFeedbackStore(path, busy_timeout_s=0.2)
    other = sqlite3.connect(path, isolation_level=None)  # another writer: a backup, a second process
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(ServiceError) as refused:
        store.record([item("L1"), item("L2", tag="ship")], "v1")
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    assert "nothing of this call was stored" in refused.value.message and "retry" in refused.value.message
    other.execute("ROLLBACK")
    assert store.counts() == {}
    assert store.record([item("L1"), item("L2", tag="ship")], "v1") == [True, True]
    store.close()


def test_parse_says_which_field_to_fix() -> None:
    vocabulary = Vocabulary([Term("sea", ("nature > water > sea",))])
    good = tagger_pb2.SubmitFeedbackRequest(
        feedback_id="f", object_id="T1", tag="sea", action=tagger_pb2.FEEDBACK_ACTION_ADD, curator_id="c"
    )
    assert parse(good, vocabulary).action == "added"
    cases = {
        "feedback_id is empty": {"feedback_id": " "},
        "object_id is empty": {"object_id": ""},
        "curator_id is empty": {"curator_id": ""},
        "not in the tagger's vocabulary": {"tag": "seaside"},
        "action is unset": {"action": tagger_pb2.FEEDBACK_ACTION_UNSPECIFIED},
        "note has": {"note": "x" * 5000},
    }
    for fragment, change in cases.items():
        bad = tagger_pb2.SubmitFeedbackRequest()
        bad.CopyFrom(good)
        for name, value in change.items():
            setattr(bad, name, value)
        with pytest.raises(ServiceError) as failure:
            parse(bad, vocabulary, "feedback #3: ")
        assert failure.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert failure.value.message.startswith("feedback #3: ") and fragment in failure.value.message
