"""The `tags` signal with a subject vocabulary (the search setting `vocabulary`): a tag naming a
term of the real YSO archaeology slice (tests/fixtures/skos, CC BY 4.0) is indexed under every
label of that term, a tag given by URI or any label is resolved the way the tagger resolves it,
and without a vocabulary the vectors are exactly what they were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from vitrine.common.vocabulary import Vocabulary
from vitrine.search import keywords as kw
from vitrine.search.settings import SearchSettings
from vitrine.search.store import SparseVector

YSO = FIXTURES / "skos" / "yso-archaeology.ttl"
ANTIQUITIES = "http://www.yso.fi/onto/yso/p10417"
GRAVES = "http://www.yso.fi/onto/yso/p8506"


@pytest.fixture(scope="module")
def yso() -> Vocabulary:
    return Vocabulary.load(YSO)


def weights(vector: SparseVector | None) -> dict[int, float]:
    assert vector is not None
    return dict(zip(vector.indices, vector.values, strict=True))


def term_weights(vector: SparseVector | None, words: list[str]) -> dict[str, float]:
    """The vector's weight of the keyword term of each of these words (absent: 0)."""
    found = weights(vector)
    return {w: found.get(kw.term_id(kw.stem(kw.fold(w))), 0.0) for w in words}


def test_a_tag_is_indexed_under_every_label_of_its_term(yso: Vocabulary) -> None:
    antiquities = yso.by_uri[ANTIQUITIES]
    assert antiquities.alt_labels == ("relics of antiquity",)
    assert {"muinaisesineet", "fornsaker"} <= set(antiquities.other_labels)
    # Curators' tag (weight 1) by its prefLabel: its altLabel and its Finnish and Swedish labels too.
    expanded = kw.tag_vector(["antiquities"], vocabulary=yso)
    wanted = ["antiquities", "relics", "muinaisesineet", "fornsaker", "fornföremål"]
    assert term_weights(expanded, wanted) == dict.fromkeys(wanted, 1.0)
    # Spelling correction knows the altLabel words as well.
    assert weights(expanded)[kw.spelling_id("relics")] == 1.0
    # Without the vocabulary: the label's own word only.
    assert term_weights(kw.tag_vector(["antiquities"]), wanted) == {
        "antiquities": 1.0,
        **dict.fromkeys(wanted[1:], 0.0),
    }


def test_machine_tags_spread_their_score_and_a_term_keeps_its_best_weight(yso: Vocabulary) -> None:
    vector = kw.tag_vector(["Stone Age"], [("graves", 0.4), ("antiquities", 0.3), ("prehistoric graves", 0.7)], yso)
    found = term_weights(vector, ["tombs", "haudat", "antiquities", "relics", "graves", "stone"])
    # "tombs" (graves' altLabel) and "haudat" at graves' 0.4; "graves" at prehistoric graves' 0.7.
    assert found == {"tombs": 0.4, "haudat": 0.4, "antiquities": 0.3, "relics": 0.3, "graves": 0.7, "stone": 1.0}


def test_tags_given_by_uri_or_any_label_are_resolved_like_the_tagger_does(yso: Vocabulary) -> None:
    by_label = kw.tag_vector(["antiquities"], vocabulary=yso)
    for name in (ANTIQUITIES, f"<{ANTIQUITIES}>", "relics of antiquity", "muinaisesineet", " fornsaker "):
        assert kw.tag_vector([name], vocabulary=yso) == by_label, name
        assert kw.tag_term_ids([name], vocabulary=yso) == kw.tag_term_ids(["antiquities"], vocabulary=yso)
    # A resolved URI is no text: none of its pieces is a term. Unresolved, it is indexed as given.
    uri_terms = ["http", "yso", "onto", "p10417"]
    assert set(term_weights(kw.tag_vector([ANTIQUITIES], vocabulary=yso), uri_terms).values()) == {0.0}
    assert set(term_weights(kw.tag_vector([ANTIQUITIES]), uri_terms).values()) == {1.0}
    # Exact names only, as in the tagger: another case is not the term.
    assert term_weights(kw.tag_vector(["Antiquities"], vocabulary=yso), ["relic"]) == {"relic": 0.0}


def test_names_outside_the_vocabulary_or_ambiguous_are_kept_as_given(tmp_path: Path) -> None:
    path = tmp_path / "subjects.jsonl"
    rows = [
        {"subject": "ship", "paths": [], "alt_labels": ["vessel"]},
        {"subject": "bowl", "paths": [], "alt_labels": ["vessel", "basin"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    vocabulary = Vocabulary.load(path)
    # "vessel" names two terms: never guessed, so neither term's other labels come in.
    assert term_weights(kw.tag_vector(["vessel"], vocabulary=vocabulary), ["vessel", "ship", "bowl", "basin"]) == {
        "vessel": 1.0,
        "ship": 0.0,
        "bowl": 0.0,
        "basin": 0.0,
    }
    assert kw.tag_vector(["harbour"], vocabulary=vocabulary) == kw.tag_vector(["harbour"])
    assert term_weights(kw.tag_vector(["basin"], vocabulary=vocabulary), ["bowl", "vessel"]) == {
        "bowl": 1.0,
        "vessel": 1.0,
    }


def test_tag_term_ids_are_the_terms_the_vector_weights(yso: Vocabulary) -> None:
    subjects, machine = ["coin finds", GRAVES], [("antiquities", 0.2), ("not in yso", 0.5)]
    ids = kw.tag_term_ids(subjects, machine, yso)
    vector = weights(kw.tag_vector(subjects, machine, yso))
    names = [n for s in ("coin finds", "graves", "antiquities") for n in yso.by_subject[s].names] + ["not in yso"]
    assert ids == sorted({kw.term_id(t) for n in names for t in kw.terms(n)})
    assert set(ids) <= set(vector)
    # The rest of the vector is spelling ids, which queries of the tags signal never hold.
    spelling = {kw.spelling_id(w) for n in names for w in kw.words(n) if len(w) > 2}
    assert set(vector) == set(ids) | spelling


def test_without_a_vocabulary_nothing_changes() -> None:
    subjects, machine = ["Boats", "http://example.org/t/1"], [("boat, sailing", 0.4), ("sea", 0.7)]
    assert kw.tag_vector(subjects, machine, None) == kw.tag_vector(subjects, machine)
    assert kw.tag_term_ids(subjects, machine, None) == kw.tag_term_ids(subjects, machine)
    # Stored objects of stores without a vocabulary are not re-indexed: the keyword format is as it was.
    assert kw.VERSION == "keywords-3"
    assert SearchSettings().vocabulary == ""


def test_the_vocabulary_version_follows_its_labels(yso: Vocabulary, tmp_path: Path) -> None:
    version = kw.vocabulary_version(yso)
    assert version.startswith("vocabulary-") and version == kw.vocabulary_version(Vocabulary.load(YSO))
    # The language preference changes subjects ("muinaisesineet" in Finnish), so the version too.
    assert kw.vocabulary_version(Vocabulary.load(YSO, "fi")) != version
    path = tmp_path / "subjects.jsonl"
    path.write_text(json.dumps({"subject": "ship", "paths": [], "alt_labels": ["vessel"]}) + "\n")
    before = kw.vocabulary_version(Vocabulary.load(path))
    path.write_text(json.dumps({"subject": "ship", "paths": [], "alt_labels": ["boat"]}) + "\n")
    assert kw.vocabulary_version(Vocabulary.load(path)) != before
    boat = kw.vocabulary_version(Vocabulary.load(path))
    # Paths are not indexed: a new place in the hierarchy does not re-index the collection.
    path.write_text(json.dumps({"subject": "ship", "paths": ["transport > ship"], "alt_labels": ["boat"]}) + "\n")
    assert kw.vocabulary_version(Vocabulary.load(path)) == boat


def test_an_empty_language_preference_is_refused() -> None:
    with pytest.raises(ValueError, match="VITRINE_SEARCH_VOCABULARY_LANGUAGE is empty"):
        SearchSettings(vocabulary=str(YSO), vocabulary_language=" , ")
