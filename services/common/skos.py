"""A SKOS thesaurus as vocabulary terms (for the tagger and search): concepts, their labels in a
language preference, their places in the hierarchy, their URIs.

Read with rdflib from Turtle, RDF/XML, JSON-LD or N-Triples (the format by the extension; .gz
allowed). Every skos:Concept that is not owl:deprecated becomes a term:
- subject: its skos:prefLabel in the first preferred language that has one ("fi,en": Finnish,
  else English), else an untagged one, else any (alphabetically first language); rdfs:label
  when it has no prefLabel, its URI when it has no label at all. Two concepts with the same
  label are told apart by their first broader concept's label, "crowns (headgear)", then by URI.
- alt_labels: skos:altLabel in the preferred languages (or untagged), which the semantic model
  embeds beside the subject.
- other_labels: every other prefLabel, altLabel and hiddenLabel and skos:notation, which
  feedback and training data may name the concept by.
- paths: "top > ... > term" for each chain of skos:broader (or inverse skos:narrower) up to a
  concept without a broader one, several with polyhierarchy (at most MAX_PATHS); a cycle ends a
  chain where it would repeat a concept.
Terms come in URI order, so the columns of a trained model do not depend on the language read.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vitrine.common.vocabulary import Term

if TYPE_CHECKING:  # rdflib is imported when a SKOS file is read, not by JSON-lines vocabularies
    from rdflib import Graph, Literal, URIRef

FORMATS = {".ttl": "turtle", ".rdf": "xml", ".xml": "xml", ".owl": "xml", ".jsonld": "json-ld", ".nt": "nt"}
MAX_PATHS = 20
SEPARATOR = " > "


def rdf_format(path: str | Path) -> str | None:
    """rdflib's name of the file's format by its extension (under .gz), or None when not SKOS."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return FORMATS.get(suffixes[-1]) if suffixes else None


def parse_languages(languages: str) -> list[str]:
    """ "fi, en" -> ["fi", "en"]; a language matches its regional variants ("en" matches en-GB)."""
    found = [part.strip().lower() for part in languages.split(",") if part.strip()]
    if not found:
        raise ValueError("the vocabulary language preference is empty: give one or more, such as 'en' or 'fi,en'")
    return found


def read_graph(path: Path) -> Graph:
    from rdflib import Graph

    rdf = rdf_format(path)
    if rdf is None:
        raise ValueError(f"{path}: not a SKOS file by its extension ({', '.join(FORMATS)}, optionally .gz)")
    data = gzip.decompress(path.read_bytes()) if path.suffix.lower() == ".gz" else path.read_bytes()
    try:
        return Graph().parse(data=data, format=rdf, publicID=path.resolve().as_uri())
    except Exception as exc:  # rdflib's parsers raise their own (and plain) errors on bad input
        raise ValueError(f"{path}: not readable as {rdf}: {exc}") from exc


class _Labels:
    """A concept's labels ranked by the language preference."""

    def __init__(self, languages: Sequence[str]) -> None:
        self.languages = list(languages)

    def rank(self, literal: Literal) -> tuple[int, str]:
        """(preference, language): preferred languages in order, then untagged, then the rest."""
        language = (literal.language or "").lower()
        for position, preferred in enumerate(self.languages):
            if language == preferred or language.startswith(preferred + "-"):
                return position, language
        return (len(self.languages), "") if not language else (len(self.languages) + 1, language)

    def best(self, literals: Iterable[Literal]) -> Literal | None:
        named = [literal for literal in literals if str(literal).strip()]
        return min(named, key=lambda literal: (self.rank(literal), str(literal).strip())) if named else None

    def preferred(self, literal: Literal) -> bool:
        return self.rank(literal)[0] <= len(self.languages)


def load_terms(path: str | Path, languages: str) -> list[Term]:
    from rdflib import URIRef
    from rdflib.namespace import OWL, RDF, RDFS, SKOS

    path = Path(path)
    graph = read_graph(path)
    labels = _Labels(parse_languages(languages))
    # Blank-node concepts have no identity outside the file: a tag needs a URI.
    typed = {c for c in graph.subjects(RDF.type, SKOS.Concept) if isinstance(c, URIRef)}
    concepts = sorted((c for c in typed if not _is_true(graph.value(c, OWL.deprecated))), key=str)
    if not concepts:
        raise ValueError(f"{path}: no skos:Concept found: is it a SKOS vocabulary?")
    known = set(concepts)
    broader = {
        c: sorted(
            ({b for b in graph.objects(c, SKOS.broader)} | {n for n in graph.subjects(SKOS.narrower, c)}) & known - {c},
            key=str,
        )
        for c in concepts
    }
    label: dict[URIRef, str] = {}
    chosen: dict[URIRef, Literal | None] = {}
    for c in concepts:
        best = labels.best(graph.objects(c, SKOS.prefLabel)) or labels.best(graph.objects(c, RDFS.label))
        chosen[c] = best
        label[c] = " ".join(str(best).split()) if best is not None else str(c)
    subject = _unique_subjects(concepts, label, broader)
    done: dict[URIRef, list[tuple[URIRef, ...]]] = {}
    terms = []
    for c in concepts:
        alt = [a for a in graph.objects(c, SKOS.altLabel) if labels.preferred(a) or _same_language(a, chosen[c])]
        alt_labels = tuple(dict.fromkeys(" ".join(str(a).split()) for a in sorted(alt, key=str) if str(a).strip()))
        alt_labels = tuple(a for a in alt_labels if a != subject[c])
        everything = [
            *graph.objects(c, SKOS.prefLabel),
            *graph.objects(c, SKOS.altLabel),
            *graph.objects(c, SKOS.hiddenLabel),
            *graph.objects(c, SKOS.notation),
        ]
        taken = {subject[c], *alt_labels}
        names = dict.fromkeys(" ".join(str(x).split()) for x in sorted(everything, key=str))
        others = tuple(n for n in names if n and n not in taken)
        paths = tuple(SEPARATOR.join(subject[step] for step in chain) for chain in _chains(c, broader, done, set())[0])
        terms.append(Term(subject[c], paths, str(c), alt_labels, others))
    return terms


def _is_true(value: object) -> bool:
    return value is not None and str(value).strip().lower() in ("true", "1")


def _same_language(a: Literal, b: Literal | None) -> bool:
    return b is not None and (a.language or "").lower() == (b.language or "").lower()


def _unique_subjects(
    concepts: list[URIRef], label: dict[URIRef, str], broader: dict[URIRef, list[URIRef]]
) -> dict[URIRef, str]:
    """Each concept's label, told apart from the same label on other concepts."""
    subject = dict(label)
    for qualify in (
        lambda c: f"{label[c]} ({label[broader[c][0]]})" if broader[c] else "",
        lambda c: f"{subject[c]} <{c}>",
    ):
        owners: dict[str, list[URIRef]] = {}
        for c in concepts:
            owners.setdefault(subject[c], []).append(c)
        for shared in (group for group in owners.values() if len(group) > 1):
            for c in shared:
                subject[c] = qualify(c) or subject[c]
    return subject


def _chains(
    concept: URIRef,
    broader: dict[URIRef, list[URIRef]],
    done: dict[URIRef, list[tuple[URIRef, ...]]],
    visiting: set[URIRef],
) -> tuple[list[tuple[URIRef, ...]], bool]:
    """The concept's chains from a top concept down to it, and whether a cycle cut one short.
    Chains found without a cut are kept in `done`: a cut depends on where the walk began."""
    if concept in done:
        return done[concept], False
    visiting.add(concept)
    chains: list[tuple[URIRef, ...]] = []
    cut = False
    for parent in broader[concept]:
        if parent in visiting:
            cut = True
            continue
        above, parent_cut = _chains(parent, broader, done, visiting)
        cut = cut or parent_cut
        chains += [(*chain, concept) for chain in above]
    visiting.discard(concept)
    chains = chains[:MAX_PATHS] or [(concept,)]
    if not cut:
        done[concept] = chains
    return chains, cut
