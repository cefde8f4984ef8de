"""The feedback store: idempotent on the client's id, all-or-nothing batches, latest decision
wins, and a stored item survives the process being killed right after the call returns."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import pytest

from tests.conftest import ROOT
from vitrine.common.errors import ServiceError
from vitrine.tagger.feedback import Feedback, FeedbackStore, parse
from vitrine.tagger.vocabulary import Term, Vocabulary
from vitrine.v1 import tagger_pb2


def item(feedback_id: str, object_id: str = "T1", tag: str = "sea", action: str = "rejected") -> Feedback:
    return Feedback(feedback_id, object_id, tag, action, "curator-7", "")


def test_replay_is_a_no_op_and_reuse_with_other_content_is_refused(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "feedback.sqlite3")
    assert store.record([item("f1"), item("f2", tag="ship")], "v1") == [True, True]
    assert store.record([item("f1")], "v1") == [False]
    with pytest.raises(ServiceError) as refused:
        store.record([item("f3"), item("f1", action="accepted")], "v1")
    assert refused.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert "f1" in refused.value.message
    # The batch was refused as a whole: f3 was not stored either.
    assert store.record([item("f3")], "v1") == [True]
    assert store.counts() == {"rejected": 3}


def test_latest_decision_per_object_and_tag_wins(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "feedback.sqlite3")
    store.record([item("a", tag="sea"), item("b", tag="ship", action="added"), item("c", object_id="T2")], "v1")
    store.record([item("d", tag="sea", action="accepted")], "v1")
    decided = store.decisions(["T1", "T2", "T9"])
    assert decided["T1"].accepted == {"sea", "ship"} and decided["T1"].rejected == set()
    assert decided["T2"].rejected == {"sea"}
    assert decided["T9"].accepted == decided["T9"].rejected == set()


def test_stored_feedback_survives_a_kill_right_after_the_call(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite3"
    script = textwrap.dedent(
        f"""
        import os, signal
        from vitrine.tagger.feedback import Feedback, FeedbackStore
        store = FeedbackStore({str(path)!r})
        store.record([Feedback("k1", "T1", "sea", "rejected", "curator-7", "")], "v1")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=os.environ)
    assert killed.returncode == -signal.SIGKILL
    store = FeedbackStore(path)
    assert store.record([item("k1")], "v1") == [False]
    assert store.decisions(["T1"])["T1"].rejected == {"sea"}


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
