"""The feedback stores (SQLite by default, PostgreSQL by URL): idempotent on the client's id,
all-or-nothing batches, latest decision wins; and a SQLite item survives the process being killed
right after the call returns. PostgreSQL runs for real: a throwaway cluster started from the
server binaries `make tools` installs."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.conftest import ROOT
from tests.unit.test_tagger_feedback import (  # noqa: F401 - the store contract, run here on PostgreSQL
    item,
    test_latest_decision_per_object_and_tag_wins,
    test_replay_is_a_no_op_and_reuse_with_other_content_is_refused,
)
from vitrine.common.errors import ServiceError
from vitrine.tagger.feedback import FeedbackStore, SqliteFeedbackStore, open_feedback_store


def postgres_binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    assert found, f"PostgreSQL's {name} is missing: `make tools` installs the server"
    return found


@dataclass
class PostgresCluster:
    url: str
    pg_ctl: list[str]  # pg_ctl with its options, without the action

    def start(self) -> None:
        subprocess.run([*self.pg_ctl, "-w", "start"], check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run([*self.pg_ctl, "-m", "immediate", "stop"], check=True, capture_output=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of its own on a Unix socket (as the postgres user when run as root,
    since the server refuses to run as root)."""
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="vitrine-pg-"))
    if as_postgres:
        shutil.chown(base, "postgres")
    data = base / "data"
    run = [*as_postgres, postgres_binary("initdb"), "-D", str(data), "-A", "trust", "-U", "vitrine"]
    subprocess.run(run, check=True, capture_output=True)
    options = f"-p 55433 -k {base} -c listen_addresses='' -c fsync=on"
    pg_ctl = [*as_postgres, postgres_binary("pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log")]
    cluster = PostgresCluster(f"postgresql://vitrine@/postgres?host={base}&port=55433", pg_ctl)
    cluster.start()
    try:
        yield cluster
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["postgresql"])  # and "sqlite" in tests/unit/test_tagger_feedback.py
def store(request: pytest.FixtureRequest, postgres: PostgresCluster) -> Iterator[FeedbackStore]:
    opened = open_feedback_store(postgres.url)
    opened._execute("DROP TABLE IF EXISTS feedback")  # a clean table per test
    opened._create_schema()
    yield opened
    opened.close()


def test_stored_feedback_survives_a_kill_right_after_the_call(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite3"
    script = textwrap.dedent(
        f"""
        import os, signal
        from vitrine.tagger.feedback import Feedback, SqliteFeedbackStore
        store = SqliteFeedbackStore({str(path)!r})
        store.record([Feedback("k1", "T1", "sea", "rejected", "curator-7", "")], "v1")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=os.environ)
    assert killed.returncode == -signal.SIGKILL
    store = SqliteFeedbackStore(path)
    assert store.record([item("k1")], "v1") == [False]
    assert store.decisions(["T1"])["T1"].rejected == {"sea"}


def test_postgres_down_is_unavailable_then_the_store_reconnects(postgres: PostgresCluster) -> None:
    store = open_feedback_store(postgres.url)
    store._execute("DROP TABLE IF EXISTS feedback")
    store._create_schema()
    store.record([item("p1")], "v1")
    postgres.stop()
    try:
        for call in (lambda: store.record([item("p2"), item("p3", tag="ship")], "v1"), lambda: store.decisions(["T1"])):
            with pytest.raises(ServiceError) as refused:
                call()
            assert refused.value.code == grpc.StatusCode.UNAVAILABLE, refused.value.message
            assert "feedback database is unavailable" in refused.value.message
    finally:
        postgres.start()
    # The next call opens a new connection; the refused batch left nothing behind.
    assert store.counts() == {"rejected": 1}
    assert store.record([item("p2"), item("p3", tag="ship")], "v1") == [True, True]
    assert store.decisions(["T1"])["T1"].rejected == {"sea", "ship"}
    store.close()
