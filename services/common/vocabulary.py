"""The subject vocabulary: every term a tagger may suggest, with its places in the hierarchy.

It is the museum's thesaurus, not its usage: it includes terms no object carries yet, which only
models that read tag names can suggest. Search reads it too (its `tags` signal indexes a tag
under every label of its term), so it lives here, shared. It comes as JSON lines ({subject,
paths}, optionally uri and alt_labels; plain or .gz) or as SKOS (Turtle, RDF/XML, JSON-LD,
N-Triples; see skos.py).

A term is known by its subject (the tag id every score matrix, feedback row and suggestion
uses) and, for matching what curators and data files name it by, by its concept URI and its
other labels. Names are matched exactly (case matters: the Tate vocabulary holds "Fox" and
"fox" as two terms); a name several terms carry is ambiguous, never guessed.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LANGUAGES = "en"


@dataclass(frozen=True)
class Term:
    subject: str
    paths: tuple[str, ...]
    uri: str = ""  # the SKOS concept's URI ("" for vocabularies without URIs, such as Tate's)
    # Other names in the preferred languages (skos:altLabel): read by the semantic model.
    alt_labels: tuple[str, ...] = ()
    # Names only matched, never embedded: labels in other languages, hidden labels, notations.
    other_labels: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.subject, *self.alt_labels, *self.other_labels)


class Vocabulary:
    def __init__(self, terms: list[Term]) -> None:
        self.terms = terms
        self.by_subject = {t.subject: t for t in terms}
        if len(self.by_subject) != len(terms):
            twice = next(s for s, n in Counter(t.subject for t in terms).items() if n > 1)
            raise ValueError(f"the subject {twice!r} is in the vocabulary twice: every subject must be unique")
        # Tag index: the column of each subject in every score matrix.
        self.index = {t.subject: i for i, t in enumerate(terms)}
        self.by_uri = {t.uri: t for t in terms if t.uri}
        self.by_name: dict[str, list[Term]] = {}
        for term in terms:
            for name in dict.fromkeys(term.names[1:]):
                self.by_name.setdefault(name, []).append(term)

    def __len__(self) -> int:
        return len(self.terms)

    def __contains__(self, subject: object) -> bool:
        return subject in self.by_subject

    def __iter__(self) -> Iterator[Term]:
        return iter(self.terms)

    def top_levels(self) -> list[str]:
        """The first level of each term's first path ("people", "nature", ...), or ""."""
        return [t.paths[0].split(">")[0].strip() if t.paths else "" for t in self.terms]

    def matches(self, name: str) -> list[Term]:
        """The terms `name` may mean: its subject, its concept URI (also as <URI>), else every term
        carrying it as another label (several = ambiguous)."""
        name = name.strip()
        term = self.by_subject.get(name) or self.by_uri.get(name.removeprefix("<").removesuffix(">"))
        if term is not None:
            return [term]
        return list(self.by_name.get(name, ()))

    def canonical(self, name: str) -> str | None:
        """The subject `name` stands for, or None when it names no term or several."""
        found = self.matches(name)
        return found[0].subject if len(found) == 1 else None

    def canonical_subjects(self, names: Iterable[str]) -> list[str]:
        """Subjects as the vocabulary names them (URIs and labels resolved, duplicates dropped);
        names it does not know, or knows several terms by, are kept as given: they are outside
        the vocabulary and no model learns them."""
        return list(dict.fromkeys(self.canonical(n) or n for n in names))

    def alt_label_rows(self) -> tuple[list[str], list[int]]:
        """Every alternative label with the column of its term, for the semantic model."""
        texts: list[str] = []
        columns: list[int] = []
        for column, term in enumerate(self.terms):
            texts += term.alt_labels
            columns += [column] * len(term.alt_labels)
        return texts, columns

    @classmethod
    def load(cls, path: str | Path, languages: str = DEFAULT_LANGUAGES) -> Vocabulary:
        """JSON lines, or SKOS by the file's extension (`languages`: the labels' preference)."""
        from vitrine.common import skos  # rdflib is needed for SKOS vocabularies only

        path = Path(path)
        if skos.rdf_format(path):
            return cls(skos.load_terms(path, languages))
        opener = gzip.open if path.suffix == ".gz" else open
        terms: list[Term] = []
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    terms.append(
                        Term(
                            record["subject"],
                            tuple(record.get("paths") or ()),
                            str(record.get("uri") or ""),
                            tuple(record.get("alt_labels") or ()),
                        )
                    )
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise ValueError(f"{path}:{number}: not a vocabulary line ({exc})") from exc
        return cls(terms)
