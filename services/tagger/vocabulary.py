"""The subject vocabulary: every term a tagger may suggest, with its places in the hierarchy.

It is the museum's thesaurus, not its usage: it includes terms no object carries yet, which only
models that read tag names can suggest.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Term:
    subject: str
    paths: tuple[str, ...]


class Vocabulary:
    def __init__(self, terms: list[Term]) -> None:
        self.terms = terms
        self.by_subject = {t.subject: t for t in terms}
        # Tag index: the column of each subject in every score matrix.
        self.index = {t.subject: i for i, t in enumerate(terms)}

    def __len__(self) -> int:
        return len(self.terms)

    def __contains__(self, subject: object) -> bool:
        return subject in self.by_subject

    def __iter__(self) -> Iterator[Term]:
        return iter(self.terms)

    def top_levels(self) -> list[str]:
        """The first level of each term's first path ("people", "nature", ...), or ""."""
        return [t.paths[0].split(">")[0].strip() if t.paths else "" for t in self.terms]

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        terms: list[Term] = []
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    terms.append(Term(record["subject"], tuple(record.get("paths") or ())))
                except (json.JSONDecodeError, KeyError) as exc:
                    raise ValueError(f"{path}:{number}: not a vocabulary line ({exc})") from exc
        return cls(terms)
