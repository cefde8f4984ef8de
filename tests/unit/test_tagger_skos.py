"""SKOS vocabularies for the tagger: a real slice of YSO (tests/fixtures/skos, 130 concepts in
Finnish, Swedish and English) read from Turtle and from RDF/XML, JSON-LD, N-Triples and gzip
copies rdflib makes of it; labels and alternative labels in a language preference, broader
paths, URIs; feedback naming a tag by URI, label or altLabel. Polyhierarchy, cycles, homonyms
and deprecated concepts, which the slice lacks, come from small graphs written here."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import grpc
import numpy as np
import pytest
import scipy.sparse as sp
from rdflib import Graph

from tests.conftest import FIXTURES
from vitrine.common.errors import ServiceError
from vitrine.common.skos import MAX_PATHS, rdf_format
from vitrine.common.vocabulary import Term, Vocabulary
from vitrine.tagger.backends.base import Context, Inputs
from vitrine.tagger.backends.semantic_text import SemanticText
from vitrine.tagger.feedback import parse
from vitrine.v1 import common_pb2, tagger_pb2

YSO = FIXTURES / "skos" / "yso-archaeology.ttl"
YSO_URI = "http://www.yso.fi/onto/yso/"
ANTIQUITIES = YSO_URI + "p10417"
COIN_FINDS = YSO_URI + "p10415"
BARROWS = YSO_URI + "p5842"

PREFIXES = """@prefix skos: <http://www.w3.org/2004/02/skos/core#> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix ex: <http://example.org/t/> .
"""


def write_turtle(directory: Path, body: str) -> Path:
    path = directory / "vocabulary.ttl"
    path.write_text(PREFIXES + body)
    return path


@pytest.fixture(scope="module")
def yso() -> Vocabulary:
    return Vocabulary.load(YSO)


def test_rdf_formats_by_extension() -> None:
    expected = {
        "a.ttl": "turtle",
        "a.TTL.gz": "turtle",
        "a.rdf": "xml",
        "a.xml": "xml",
        "a.owl.gz": "xml",
        "a.jsonld": "json-ld",
        "a.nt": "nt",
        "subjects.jsonl.gz": None,
        "subjects.jsonl": None,
        "noext": None,
    }
    assert {name: rdf_format(name) for name in expected} == expected


def test_every_concept_with_its_labels_paths_and_uri(yso: Vocabulary) -> None:
    assert len(yso) == 130
    assert all(t.uri.startswith(YSO_URI) for t in yso)
    assert [t.uri for t in yso] == sorted(t.uri for t in yso)  # columns independent of the language read
    antiquities = yso.by_uri[ANTIQUITIES]
    assert antiquities.subject == "antiquities"
    assert antiquities.alt_labels == ("relics of antiquity",)  # the English altLabel only
    assert {"muinaisesineet", "fornsaker", "fornföremål"} <= set(antiquities.other_labels)
    assert antiquities.paths == ("prehistoric remains > antiquities",)
    # Up to the top concept, the term itself last.
    assert yso.by_uri[COIN_FINDS].paths == ("prehistoric remains > antiquities > coin finds",)
    assert yso.by_uri[BARROWS].paths == ("graves > prehistoric graves > barrows (prehistoric graves)",)
    top = yso.by_subject["archaeologists"]
    assert top.paths == ("archaeologists",)
    assert yso.top_levels()[yso.index["coin finds"]] == "prehistoric remains"


def test_language_preference_then_untagged_then_any(tmp_path: Path) -> None:
    finnish = Vocabulary.load(YSO, "fi")
    antiquities = finnish.by_uri[ANTIQUITIES]
    assert antiquities.subject == "muinaisesineet"
    assert antiquities.paths == ("muinaisjäännökset > muinaisesineet",)
    assert "antiquities" in antiquities.other_labels and "relics of antiquity" in antiquities.other_labels
    assert [t.uri for t in finnish] == [t.uri for t in Vocabulary.load(YSO)]
    # A preference list: Swedish where there is Swedish, else the next one.
    assert Vocabulary.load(YSO, "sv, en").by_uri[ANTIQUITIES].subject in {"fornsaker", "fornföremål"}
    path = write_turtle(
        tmp_path,
        """ex:a a skos:Concept ; skos:prefLabel "Vase"@de-AT, "jar" ; skos:altLabel "urn"@en-GB, "Krug"@de .
        ex:b a skos:Concept ; skos:prefLabel "maljakko"@fi, "vas"@sv .
        ex:c a skos:Concept .""",
    )
    english = Vocabulary.load(path, "en")
    assert english.by_uri["http://example.org/t/a"].subject == "jar"  # untagged before other languages
    assert english.by_uri["http://example.org/t/a"].alt_labels == ("urn",)  # en matches en-GB
    assert english.by_uri["http://example.org/t/b"].subject == "maljakko"  # any language, alphabetically
    assert english.by_uri["http://example.org/t/c"].subject == "http://example.org/t/c"  # no label at all
    assert Vocabulary.load(path, "de").by_uri["http://example.org/t/a"].subject == "Vase"
    with pytest.raises(ValueError, match="language preference is empty"):
        Vocabulary.load(path, " , ")


@pytest.mark.parametrize(("suffix", "rdf"), [(".rdf", "xml"), (".jsonld", "json-ld"), (".nt", "nt")])
def test_rdf_xml_json_ld_and_n_triples_read_the_same(yso: Vocabulary, tmp_path: Path, suffix: str, rdf: str) -> None:
    converted = tmp_path / f"yso-archaeology{suffix}"
    Graph().parse(YSO).serialize(converted, format=rdf, encoding="utf-8")
    assert Vocabulary.load(converted).terms == yso.terms


def test_gzip(yso: Vocabulary, tmp_path: Path) -> None:
    packed = tmp_path / "yso-archaeology.ttl.gz"
    packed.write_bytes(gzip.compress(YSO.read_bytes()))
    assert Vocabulary.load(packed).terms == yso.terms


def test_polyhierarchy_gives_every_path(tmp_path: Path) -> None:
    path = write_turtle(
        tmp_path,
        """ex:objects a skos:Concept ; skos:prefLabel "objects"@en .
        ex:tools a skos:Concept ; skos:prefLabel "tools"@en ; skos:broader ex:objects .
        ex:weapons a skos:Concept ; skos:prefLabel "weapons"@en ; skos:broader ex:objects .
        ex:axes a skos:Concept ; skos:prefLabel "axes"@en ; skos:broader ex:tools, ex:weapons .
        ex:battleaxes a skos:Concept ; skos:prefLabel "battle-axes"@en .
        ex:axes skos:narrower ex:battleaxes .""",  # only the narrower link is stated
    )
    vocabulary = Vocabulary.load(path)
    assert vocabulary.by_subject["axes"].paths == ("objects > tools > axes", "objects > weapons > axes")
    assert vocabulary.by_subject["battle-axes"].paths == (
        "objects > tools > axes > battle-axes",
        "objects > weapons > axes > battle-axes",
    )


def test_a_cycle_ends_the_path_instead_of_looping(tmp_path: Path) -> None:
    path = write_turtle(
        tmp_path,
        """ex:a a skos:Concept ; skos:prefLabel "a"@en ; skos:broader ex:b .
        ex:b a skos:Concept ; skos:prefLabel "b"@en ; skos:broader ex:c .
        ex:c a skos:Concept ; skos:prefLabel "c"@en ; skos:broader ex:a .
        ex:d a skos:Concept ; skos:prefLabel "d"@en ; skos:broader ex:a, ex:d .""",
    )
    vocabulary = Vocabulary.load(path)
    # Each chain climbs until the next step would repeat a concept: a's broader is b, b's is c.
    assert vocabulary.by_subject["a"].paths == ("c > b > a",)
    assert vocabulary.by_subject["b"].paths == ("a > c > b",)
    assert vocabulary.by_subject["c"].paths == ("b > a > c",)
    assert vocabulary.by_subject["d"].paths == ("c > b > a > d",)  # a concept's own broader link ignored


def test_paths_are_capped_in_a_dense_polyhierarchy(tmp_path: Path) -> None:
    # Six levels of two parents each: 64 chains to the bottom concept.
    lines = ['ex:top a skos:Concept ; skos:prefLabel "top"@en .']
    parents = ["ex:top"]
    for level in range(6):
        names = [f"ex:l{level}x{i}" for i in range(2)]
        lines += [
            f'{n} a skos:Concept ; skos:prefLabel "{n[3:]}"@en ; skos:broader {", ".join(parents)} .' for n in names
        ]
        parents = names
    lines.append(f'ex:bottom a skos:Concept ; skos:prefLabel "bottom"@en ; skos:broader {", ".join(parents)} .')
    paths = Vocabulary.load(write_turtle(tmp_path, "\n".join(lines))).by_subject["bottom"].paths
    assert len(paths) == MAX_PATHS and len(set(paths)) == MAX_PATHS
    assert all(p.startswith("top > ") and p.endswith(" > bottom") for p in paths)


def test_homonyms_are_told_apart_and_deprecated_concepts_left_out(tmp_path: Path) -> None:
    path = write_turtle(
        tmp_path,
        """ex:headgear a skos:Concept ; skos:prefLabel "headgear"@en .
        ex:coins a skos:Concept ; skos:prefLabel "coins"@en .
        ex:crown1 a skos:Concept ; skos:prefLabel "crowns"@en ; skos:broader ex:headgear .
        ex:crown2 a skos:Concept ; skos:prefLabel "crowns"@en ; skos:broader ex:coins .
        ex:crown3 a skos:Concept ; skos:prefLabel "crowns"@en ; skos:broader ex:coins .
        ex:old a skos:Concept ; skos:prefLabel "old term"@en ; owl:deprecated true .""",
    )
    vocabulary = Vocabulary.load(path)
    assert sorted(vocabulary.by_subject) == [
        "coins",
        "crowns (coins) <http://example.org/t/crown2>",
        "crowns (coins) <http://example.org/t/crown3>",
        "crowns (headgear)",
        "headgear",
    ]
    assert vocabulary.by_subject["crowns (headgear)"].paths == ("headgear > crowns (headgear)",)


def test_files_that_are_no_skos_vocabulary_are_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.ttl"
    broken.write_text("this is not turtle <")
    with pytest.raises(ValueError, match=r"broken\.ttl: not readable as turtle"):
        Vocabulary.load(broken)
    with pytest.raises(ValueError, match="no skos:Concept found"):
        Vocabulary.load(write_turtle(tmp_path, 'ex:a ex:p "x" .'))


def test_names_resolve_to_subjects(yso: Vocabulary) -> None:
    for name in (
        "antiquities",
        ANTIQUITIES,
        f"<{ANTIQUITIES}>",
        "relics of antiquity",
        "muinaisesineet",
        " fornsaker ",
    ):
        assert yso.canonical(name) == "antiquities", name
    assert yso.canonical("Antiquities") is None  # exact names only
    assert yso.canonical_subjects([COIN_FINDS, "coin finds", "rahalöydöt", "not a term"]) == [
        "coin finds",
        "not a term",
    ]


def test_json_lines_vocabularies_are_read_as_before(tmp_path: Path) -> None:
    path = tmp_path / "subjects.jsonl"
    rows = [
        {"subject": "sea", "paths": ["nature > water"]},
        {"subject": "Sea", "paths": []},
        {"subject": "car", "paths": [], "uri": "http://example.org/car", "alt_labels": ["automobile"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    vocabulary = Vocabulary.load(path)
    assert vocabulary.terms[0] == Term("sea", ("nature > water",))
    assert vocabulary.terms[0].uri == ""
    assert vocabulary.canonical("Sea") == "Sea" and vocabulary.canonical("sea") == "sea"
    assert vocabulary.canonical("automobile") == "car"
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[0]) + "\n")
    with pytest.raises(ValueError, match="the subject 'sea' is in the vocabulary twice"):
        Vocabulary.load(path)
    path.write_text(json.dumps({"paths": []}) + "\n")
    with pytest.raises(ValueError, match=r"subjects\.jsonl:1: not a vocabulary line"):
        Vocabulary.load(path)


def feedback(tag: str) -> tagger_pb2.SubmitFeedbackRequest:
    return tagger_pb2.SubmitFeedbackRequest(
        feedback_id="f1", object_id="O1", tag=tag, action=tagger_pb2.FEEDBACK_ACTION_ACCEPT, curator_id="c"
    )


def test_feedback_names_a_tag_by_uri_label_or_alt_label(yso: Vocabulary) -> None:
    for name in (ANTIQUITIES, "antiquities", "relics of antiquity", "muinaisesineet"):
        assert parse(feedback(name), yso).tag == "antiquities", name
    with pytest.raises(ServiceError) as unknown:
        parse(feedback("http://www.yso.fi/onto/yso/p0"), yso, "feedback #1: ")
    assert unknown.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "feedback #1: tag 'http://www.yso.fi/onto/yso/p0' is not in the tagger's vocabulary" in unknown.value.message


def test_an_ambiguous_label_is_refused_with_the_candidates(tmp_path: Path) -> None:
    path = write_turtle(
        tmp_path,
        """ex:mouse1 a skos:Concept ; skos:prefLabel "mice (animals)"@en ; skos:altLabel "mouse"@en .
        ex:mouse2 a skos:Concept ; skos:prefLabel "computer mice"@en ; skos:altLabel "mouse"@en .""",
    )
    vocabulary = Vocabulary.load(path)
    with pytest.raises(ServiceError) as ambiguous:
        parse(feedback("mouse"), vocabulary)
    assert ambiguous.value.code == grpc.StatusCode.INVALID_ARGUMENT
    message = ambiguous.value.message
    assert "tag 'mouse' is ambiguous: 2 concepts" in message
    assert "'mice (animals)' (http://example.org/t/mouse1)" in message
    assert "'computer mice' (http://example.org/t/mouse2)" in message
    assert parse(feedback("http://example.org/t/mouse2"), vocabulary).tag == "computer mice"


def test_semantic_model_matches_a_tag_by_its_best_label() -> None:
    vocabulary = Vocabulary([Term("automobiles", (), "ex:car", ("cars",)), Term("boats", ())])
    names = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)  # automobiles, boats
    alt = np.array([[0.0, 0.0, 1.0]], np.float32)  # cars
    texts, columns = vocabulary.alt_label_rows()
    assert (texts, columns) == (["cars"], [0])
    objects = np.array([[0.0, 0.6, 0.8]], np.float32)  # closer to "cars" than to any tag name
    inputs = Inputs([common_pb2.CollectionObject(id="O1")], objects, sp.csr_matrix((1, 1)))
    with_alt = SemanticText(Context(vocabulary, names, None, alt, np.array(columns))).suggest(inputs, 2)
    without = SemanticText(Context(vocabulary, names)).suggest(inputs, 2)
    assert with_alt.toarray()[0].tolist() == pytest.approx([0.8, 0.6])
    assert without.toarray()[0].tolist() == pytest.approx([0.0, 0.6])
