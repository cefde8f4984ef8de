"""Curators' feedback on suggestions: stored durably, replayed idempotently, applied at once.

Each item says that a curator accepted or rejected a suggested tag for an object, or added a
tag of their own. Items live in SQLite (WAL journal, `synchronous=FULL`: a call that returned
survives a crash or power cut), or in PostgreSQL given a connection URL (what several tagger
replicas share), keyed by the client's feedback id, so a client that is unsure
whether a call went through sends it again; the replay changes nothing. The latest decision per
(object, tag) wins: it is what suggestions honour before any retraining (a rejected tag is not
suggested again for the object; accepted and added tags count as the object's own).

A database that cannot be reached (PostgreSQL down, the connection lost) or stays locked (SQLite,
another writer for longer than the busy timeout) answers UNAVAILABLE; a batch that failed stored
nothing (one transaction), and the next call reconnects.
"""

from __future__ import annotations

import abc
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitrine.common.errors import already_exists, invalid_argument, outage
from vitrine.common.vocabulary import Vocabulary
from vitrine.v1 import tagger_pb2

if TYPE_CHECKING:  # the server imports this module and must not load the training-data readers
    from vitrine.tagger.data import Document

ACTION_NAMES = {
    tagger_pb2.FEEDBACK_ACTION_ACCEPT: "accepted",
    tagger_pb2.FEEDBACK_ACTION_REJECT: "rejected",
    tagger_pb2.FEEDBACK_ACTION_ADD: "added",
}
MAX_ID_CHARS = 200
MAX_NOTE_CHARS = 4000
MAX_CANDIDATES = 10  # concepts an ambiguous label's refusal names

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    feedback_id TEXT NOT NULL UNIQUE,
    object_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    action TEXT NOT NULL,
    curator_id TEXT NOT NULL,
    note TEXT NOT NULL,
    model_version TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_object ON feedback (object_id, seq);
"""


@dataclass(frozen=True)
class Feedback:
    feedback_id: str
    object_id: str
    tag: str
    action: str  # accepted | rejected | added
    curator_id: str
    note: str = ""


@dataclass
class Decisions:
    """What curators decided about one object's tags (latest decision per tag)."""

    rejected: set[str]
    accepted: set[str]  # accepted or added


def parse(request: tagger_pb2.SubmitFeedbackRequest, vocabulary: Vocabulary, where: str = "") -> Feedback:
    """A validated feedback item, or INVALID_ARGUMENT saying which field to fix."""
    for name in ("feedback_id", "object_id", "curator_id"):
        value = getattr(request, name)
        if not value.strip():
            raise invalid_argument(f"{where}{name} is empty: every feedback item needs one")
        if len(value) > MAX_ID_CHARS:
            raise invalid_argument(f"{where}{name} has {len(value)} characters: at most {MAX_ID_CHARS}")
    if request.action not in ACTION_NAMES:
        raise invalid_argument(f"{where}action is unset or unknown: give ACCEPT, REJECT or ADD")
    tag = _tag(request.tag, vocabulary, where)
    if len(request.note) > MAX_NOTE_CHARS:
        raise invalid_argument(f"{where}note has {len(request.note)} characters: at most {MAX_NOTE_CHARS}")
    return Feedback(
        request.feedback_id,
        request.object_id,
        tag,
        ACTION_NAMES[request.action],
        request.curator_id,
        request.note,
    )


def _tag(name: str, vocabulary: Vocabulary, where: str) -> str:
    """The vocabulary's subject for a tag given by its id, its concept URI or (when only one
    concept carries it) one of its labels; stored so, it meets the suggestions' tag ids."""
    found = vocabulary.matches(name)
    if len(found) == 1:
        return found[0].subject
    if found:
        shown = ", ".join(f"{t.subject!r} ({t.uri})" if t.uri else repr(t.subject) for t in found[:MAX_CANDIDATES])
        more = f" and {len(found) - MAX_CANDIDATES} more" if len(found) > MAX_CANDIDATES else ""
        raise invalid_argument(
            f"{where}tag {name!r} is ambiguous: {len(found)} concepts carry that label ({shown}{more}); "
            "give the tag id or the concept URI of the one you mean"
        )
    raise invalid_argument(
        f"{where}tag {name!r} is not in the tagger's vocabulary: use a tag id from SuggestTags "
        "(a SKOS vocabulary also takes the concept URI or an unambiguous label)"
    )


class FeedbackStore(abc.ABC):
    """The SQL both engines share; subclasses open the connection and run transactions."""

    schema: str

    def __init__(self) -> None:
        # One connection shared by the server's worker threads, one writer at a time.
        self.lock = threading.Lock()
        self.db: Any = None

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.db.execute(sql, params)

    @abc.abstractmethod
    def _is_outage(self, exc: Exception) -> bool:
        """Whether an error of the engine means the database is unreachable or busy (not bad SQL)."""

    @contextlib.contextmanager
    def _reachable(self, writing: bool = False) -> Iterator[None]:
        """Outages of the database as UNAVAILABLE, with what the caller should do."""
        try:
            yield
        except Exception as exc:
            if not self._is_outage(exc):
                raise
            raise outage("the feedback database", exc, " nothing of this call was stored;" if writing else "") from exc

    def _create_schema(self) -> None:
        for statement in self.schema.split(";"):
            if statement.strip():
                self._execute(statement)

    @abc.abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        """One transaction: committed when the block ends, rolled back when it raises."""

    def record(self, items: Sequence[Feedback], model_version: str) -> list[bool]:
        """Store the items in one transaction; for each, whether it is new (False: the same id
        was stored before with the same content). An id reused for different content fails the
        whole batch with ALREADY_EXISTS, storing nothing."""
        created: list[bool] = []
        now = time.time()
        with self.lock, self._reachable(writing=True), self._transaction():
            for item in items:
                inserted = self._execute(
                    "INSERT INTO feedback (feedback_id, object_id, tag, action, curator_id, note, model_version,"
                    " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (feedback_id) DO NOTHING",
                    (item.feedback_id, item.object_id, item.tag, item.action, item.curator_id, item.note,
                     model_version, now),
                )  # fmt: skip
                if inserted.rowcount == 1:
                    created.append(True)
                    continue
                stored = self._get(item.feedback_id)
                if stored != item:
                    assert stored is not None
                    raise already_exists(
                        f"feedback_id {item.feedback_id!r} was stored before with different content "
                        f"({stored.action} {stored.tag!r} on {stored.object_id!r}): use a new id",
                    )
                created.append(False)
        return created

    def _get(self, feedback_id: str) -> Feedback | None:
        row = self._execute(
            "SELECT feedback_id, object_id, tag, action, curator_id, note FROM feedback WHERE feedback_id = ?",
            (feedback_id,),
        ).fetchone()
        return Feedback(*row) if row else None

    def decisions(self, object_ids: Iterable[str]) -> dict[str, Decisions]:
        """Per object id, the curators' latest decision on each tag they gave feedback on."""
        ids = sorted(set(object_ids))
        answer = {object_id: Decisions(set(), set()) for object_id in ids}
        with self.lock, self._reachable():
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._execute(
                    f"SELECT object_id, tag, action FROM feedback WHERE object_id IN ({marks}) ORDER BY seq", chunk
                ).fetchall()
                for object_id, tag, action in rows:
                    decided = answer[object_id]
                    decided.rejected.discard(tag)
                    decided.accepted.discard(tag)
                    (decided.rejected if action == "rejected" else decided.accepted).add(tag)
        return answer

    def object_ids(self) -> set[str]:
        with self.lock, self._reachable():
            return {row[0] for row in self._execute("SELECT DISTINCT object_id FROM feedback").fetchall()}

    def counts(self) -> dict[str, int]:
        """Stored items by action."""
        with self.lock, self._reachable():
            rows = self._execute("SELECT action, COUNT(*) FROM feedback GROUP BY action").fetchall()
        return {action: int(n) for action, n in rows}

    def close(self) -> None:
        with self.lock:
            self.db.close()


class SqliteFeedbackStore(FeedbackStore):
    """The embedded default: one file, WAL journal, every commit synced to disk."""

    schema = SCHEMA

    # SQLite's answers that mean "not now" (locked, busy, I/O, disk full, cannot open).
    OUTAGES = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN", "SQLITE_READONLY")

    def __init__(self, path: str | Path, busy_timeout_s: float = 5.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A writer waits this long for another one (a backup, a second process) to let go.
        self.db = sqlite3.connect(self.path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self._create_schema()

    def _is_outage(self, exc: Exception) -> bool:
        name = getattr(exc, "sqlite_errorname", "")
        return isinstance(exc, sqlite3.OperationalError) and name.startswith(self.OUTAGES)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")


class PostgresFeedbackStore(FeedbackStore):
    """Production: a PostgreSQL database shared by every tagger replica (a connection URL)."""

    schema = SCHEMA.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY").replace(
        "received_at REAL", "received_at DOUBLE PRECISION"
    )

    def __init__(self, url: str) -> None:
        import psycopg

        super().__init__()
        self.url = url
        self._psycopg = psycopg
        self.db = psycopg.connect(url, autocommit=True)
        self._create_schema()

    def _connection(self) -> Any:
        """The connection, opened again after the server went away (a restart, a failover)."""
        if self.db.closed or self.db.broken:
            self.db = self._psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        return self.db

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._connection().execute(sql.replace("?", "%s"), params)

    def _is_outage(self, exc: Exception) -> bool:
        return isinstance(exc, (self._psycopg.OperationalError, self._psycopg.InterfaceError))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._connection().transaction():
            yield


def open_feedback_store(target: str | Path) -> FeedbackStore:
    """A PostgreSQL URL (postgresql://...) or the path of a SQLite file."""
    if str(target).startswith(("postgresql://", "postgres://")):
        return PostgresFeedbackStore(str(target))
    return SqliteFeedbackStore(target)


def apply_feedback(docs: Sequence[Document], store: FeedbackStore) -> dict[str, int]:
    """Fold the curators' decisions into the documents' tags (in place) before a retraining:
    rejected tags are removed, accepted and added ones joined. Feedback on objects that are not
    in the data cannot be learnt from (their text is unknown) and is counted apart."""
    decided = store.decisions([d.id for d in docs])
    summary = {"objects_changed": 0, "tags_added": 0, "tags_removed": 0}
    for doc in docs:
        decisions = decided[doc.id]
        kept = [s for s in doc.subjects if s not in decisions.rejected]
        new = sorted(decisions.accepted - set(kept))
        if len(kept) == len(doc.subjects) and not new:
            continue
        summary["objects_changed"] += 1
        summary["tags_removed"] += len(doc.subjects) - len(kept)
        summary["tags_added"] += len(new)
        doc.subjects = kept + new
    summary["feedback_objects_not_in_data"] = len(store.object_ids() - {d.id for d in docs})
    return summary
