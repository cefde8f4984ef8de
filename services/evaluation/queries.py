"""The evaluated collection and its queries: the objects of a records file with the curators'
subjects withheld (kept on this side as ground truth), queries generated from those subjects
(terms, co-occurring pairs, typo variants) or read from a queries file."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from vitrine.common.objects import object_text
from vitrine.common.records import RecordError, read_rows, record_to_object
from vitrine.evaluation.errors import EvalError

# Fields of a record that carry the curators' subjects: never sent to the service.
SUBJECT_FIELDS = ("subjects", "subject_paths")


@dataclass(frozen=True)
class Query:
    query: str
    relevant: tuple[str, ...]
    typo_of: str | None = None

    def to_json(self, **more: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"query": self.query, "relevant": list(self.relevant)}
        if self.typo_of is not None:
            out["typo_of"] = self.typo_of
        return {**out, **more}


@dataclass
class Collection:
    """The objects of one records file as the evaluation sees them."""

    path: Path
    # The rows sent to the service: subjects removed.
    rows: list[tuple[int, dict[str, Any]]]
    # Museum id -> metadata text (what the text signal embeds and TF-IDF indexes), in file order.
    texts: dict[str, str]
    # Museum id -> curators' subjects (kept here as ground truth, never sent).
    subjects: dict[str, list[str]]
    # Museum id -> the raw record (for group definitions such as artist or century).
    records: dict[str, dict[str, Any]]

    @property
    def ids(self) -> list[str]:
        return list(self.texts)


def strip_subjects(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record without the curators' subjects."""
    return {k: v for k, v in record.items() if k not in SUBJECT_FIELDS}


def _subject_list(value: Any) -> list[str]:
    items = value if isinstance(value, list | tuple) else re.split(r"\s*[;|]\s*", str(value or ""))
    return list(dict.fromkeys(s for s in (str(i).strip() for i in items if i is not None) if s))


def spread(rows: Sequence[Any], n: int | None) -> list[Any]:
    """`n` rows spread evenly over `rows` (all when n is None or larger), in order."""
    if n is None or n >= len(rows):
        return list(rows)
    return [rows[(i * len(rows)) // n] for i in range(n)]


def read_collection(path: Path, limit: int | None = None) -> Collection:
    rows = [(number, row) for number, row in read_rows(path) if isinstance(row, dict)]
    rows = spread(rows, limit)
    kept: list[tuple[int, dict[str, Any]]] = []
    texts: dict[str, str] = {}
    subjects: dict[str, list[str]] = {}
    records: dict[str, dict[str, Any]] = {}
    for number, row in rows:
        stripped = strip_subjects(row)
        try:
            obj = record_to_object(stripped)
        except RecordError:
            continue  # the ingest skips it too (and says so)
        kept.append((number, stripped))
        if obj.id in texts:
            continue  # the ingest keeps the first record of an id
        texts[obj.id] = object_text(obj)
        subjects[obj.id] = _subject_list(row.get("subjects"))
        records[obj.id] = row
    if not texts:
        raise EvalError(f"{path}: no usable records")
    return Collection(path, kept, texts, subjects, records)


def make_typo(text: str, rng: random.Random) -> str | None:
    """`text` with two neighbouring letters of one word swapped ('harbour' -> 'hrabour'); None
    when no word can take a visible typo. Words of 4+ letters are preferred and keep their first
    letter; shorter ones are used only when there is nothing longer."""
    words = text.split(" ")

    def spots(word: str, keep_first: bool) -> list[int]:
        start = 1 if keep_first else 0
        return [
            i
            for i in range(start, len(word) - 1)
            if word[i].isalpha() and word[i + 1].isalpha() and word[i].lower() != word[i + 1].lower()
        ]

    for min_letters, keep_first in ((4, True), (2, False)):
        candidates = [
            (n, spots(w, keep_first))
            for n, w in enumerate(words)
            if sum(c.isalpha() for c in w) >= min_letters and spots(w, keep_first)
        ]
        if candidates:
            n, positions = rng.choice(candidates)
            i = rng.choice(positions)
            word = words[n]
            words[n] = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
            return " ".join(words)
    return None


def generate_queries(
    subjects: Mapping[str, Sequence[str]],
    max_queries: int = 300,
    seed: int = 0,
    min_relevant: int = 3,
    pair_share: float = 1 / 3,
) -> list[Query]:
    """Queries from the curators' subjects: single terms and pairs of co-occurring terms with at
    least `min_relevant` objects (relevant: the objects that carry them all), `max_queries`
    clean queries at most (about `pair_share` of them pairs), each followed by a typo variant.
    Deterministic for a seed."""
    by_subject: dict[str, set[str]] = defaultdict(set)
    by_pair: dict[tuple[str, str], set[str]] = defaultdict(set)
    for museum_id, terms in subjects.items():
        unique = sorted(set(terms))
        for term in unique:
            by_subject[term].add(museum_id)
        for pair in combinations(unique, 2):
            by_pair[pair].add(museum_id)
    singles = sorted(t for t, ids in by_subject.items() if len(ids) >= min_relevant)
    pairs = sorted(
        p
        for p, ids in by_pair.items()
        # A pair that always comes together is one of its terms again.
        if len(ids) >= min_relevant and ids != by_subject[p[0]] and ids != by_subject[p[1]]
    )
    rng = random.Random(seed)
    n_pairs = min(len(pairs), round(max_queries * pair_share))
    n_singles = min(len(singles), max_queries - n_pairs)
    n_pairs = min(len(pairs), max_queries - n_singles)
    chosen: list[tuple[str, set[str]]] = [(t, by_subject[t]) for t in rng.sample(singles, n_singles)]
    chosen += [(f"{a} {b}", by_pair[(a, b)]) for a, b in rng.sample(pairs, n_pairs)]
    queries: list[Query] = []
    seen: set[str] = set()
    for text, ids in chosen:
        if text.lower() in seen:
            continue
        seen.add(text.lower())
        clean = Query(text, tuple(sorted(ids)))
        queries.append(clean)
        typo = make_typo(text, rng)
        if typo is not None:
            queries.append(Query(typo, clean.relevant, typo_of=text))
    return queries


def read_queries(path: Path) -> list[Query]:
    """A queries file: one JSON object a line, {"query", "relevant", optional "typo_of"}; other
    fields are ignored."""
    queries: list[Query] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalError(f"{path}:{number}: invalid JSON ({exc.msg})") from exc
            query = row.get("query") if isinstance(row, dict) else None
            relevant = row.get("relevant", []) if isinstance(row, dict) else None
            if not isinstance(query, str) or not query.strip():
                raise EvalError(f'{path}:{number}: needs a "query" string')
            if not isinstance(relevant, list) or not all(isinstance(r, str | int) for r in relevant):
                raise EvalError(f'{path}:{number}: "relevant" must be a list of object ids')
            typo_of = row.get("typo_of")
            if typo_of is not None and not isinstance(typo_of, str):
                raise EvalError(f'{path}:{number}: "typo_of" must be the clean query (a string)')
            queries.append(Query(query.strip(), tuple(str(r) for r in relevant), typo_of or None))
    if not queries:
        raise EvalError(f"{path}: no queries")
    return queries


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
