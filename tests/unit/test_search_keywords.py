"""Keyword side of search: tokens, stems, sparse vectors, trigrams and spelling candidates."""

from __future__ import annotations

import math

import pytest

from vitrine.search import keywords as kw
from vitrine.v1 import common_pb2


def test_words_fold_accents_case_and_punctuation() -> None:
    assert kw.words("Géricault’s RAFT, of the Medusa!") == ["gericault", "s", "raft", "of", "the", "medusa"]
    assert kw.words("Straße naïve Æsop Łódź") == ["strasse", "naive", "aesop", "lodz"]
    assert kw.words("oil_on-canvas/1840–41") == ["oil", "on", "canvas", "1840", "41"]


@pytest.mark.parametrize(
    ("forms", "same"),
    [
        (["vase", "vases"], True),
        (["horse", "horses"], True),
        (["church", "churches"], True),
        (["study", "studies", "studied"], True),
        (["sail", "sails", "sailing", "sailed"], True),
        (["run", "running"], True),
        (["building", "buildings"], True),
        (["glass", "glasses"], True),
        (["canvas", "canvases"], True),
        (["hill", "hills"], True),
        (["photo", "photographs"], False),  # the trigrams make these meet, not the stemmer
        (["sea", "see"], False),
    ],
)
def test_stemmer_folds_plurals_and_verb_forms(forms: list[str], same: bool) -> None:
    stems = {kw.stem(f) for f in forms}
    assert (len(stems) == 1) is same, stems


def test_numbers_and_accession_numbers_are_kept_whole() -> None:
    assert kw.stem("n05438") == "n05438"
    assert kw.stem("1840s") == "1840s"
    assert kw.terms("N05438") == ["n05438"]
    # An id written with separators is also indexed joined, so it can be typed either way.
    assert kw.terms("met-247009") == ["met", "247009", "met247009"]
    assert kw.terms("1840–41") == ["1840", "41"]  # digits only: nothing joined
    assert kw.id_like("Show me T01967, please") == {"t01967"}
    assert kw.id_like("met-247009") == {"met-247009"}
    assert kw.id_like("ancient vase") == set()


def test_query_terms_drop_stopwords_unless_nothing_else_is_left() -> None:
    assert kw.query_terms("a vase of the Ming dynasty") == ["vas", "ming", "dynasti"]
    assert kw.query_terms("The The") == ["the"]


def test_term_ids_are_stable_31_bit_hashes() -> None:
    assert kw.term_id("vase") == kw.term_id("vase")
    assert kw.term_id("vase") != kw.term_id("vas")
    assert 0 <= kw.term_id("vase") < 2**31
    # Fixed for good: stored vectors depend on it (change VERSION if the hash ever changes).
    assert kw.term_id("vase") == int.from_bytes(__import__("hashlib").blake2b(b"vase", digest_size=4).digest()) & (
        2**31 - 1
    )


def _object() -> common_pb2.CollectionObject:
    return common_pb2.CollectionObject(
        id="T01967",
        title="Vases of Flowers",
        artist="Paul Nash",
        date="1927",
        medium="Oil paint on canvas",
        classification="painting",
        movements=["Modernism"],
        subjects=["flower", "SUBJECTWORD"],
    )


def test_object_vectors_cover_the_catalogue_fields_but_not_subjects() -> None:
    vectors = kw.object_vectors(_object())
    assert set(vectors) == {kw.KEYWORDS, kw.NGRAMS}
    ids = set(vectors[kw.KEYWORDS].indices)
    for term in ["t01967", "vase", "flower", "paul", "nash", "1927", "oil", "canvas", "painting", "modernism"]:
        assert kw.term_id(kw.stem(term)) in ids, term
    assert kw.term_id("subjectword") not in ids
    assert kw.spelling_id("subjectword") not in set(vectors[kw.NGRAMS].indices)
    # Indices ascending and distinct, as the store wants them.
    assert list(vectors[kw.KEYWORDS].indices) == sorted(set(vectors[kw.KEYWORDS].indices))


def test_document_weights_are_bm25_and_titles_count_double() -> None:
    vector = kw.document_vectors([("title", "ship"), ("medium", "ship oil")]).get(kw.KEYWORDS)
    assert vector is not None
    weights = vector.as_dict()
    # "ship" counts 2 (title) + 1 (medium), "oil" 1; length 4 against the average.
    norm = kw.K1 * (1 - kw.B + kw.B * 4 / kw.AVERAGE_TERMS)
    assert weights[kw.term_id("ship")] == pytest.approx(3 * (kw.K1 + 1) / (3 + norm))
    assert weights[kw.term_id("oil")] == pytest.approx(1 * (kw.K1 + 1) / (1 + norm))
    assert kw.document_vectors([("title", ""), ("medium", "")]) == {}


def test_a_typo_keeps_most_trigrams() -> None:
    def grams(word: str) -> set[str]:
        return set(kw.trigrams(word))

    assert len(grams("portrait") & grams("potrait")) >= 4
    assert len(grams("photo") & grams("photograph")) == 4  # ^ph pho hot oto
    assert "^portrait$" in grams("portrait")  # the whole word, for exact spellings
    assert kw.trigrams("a") == []
    query = kw.query_vectors("a potrait")
    assert query.ngrams is not None and kw.term_id("^po") in query.ngrams.indices
    assert kw.term_id("^a$") not in query.ngrams.indices  # stopwords are left out


def test_spelling_candidates_and_choice() -> None:
    found = kw.candidates("hnad")
    spellings = set(found.values())
    assert {"hand", "head", "had"} <= spellings  # swap, replacement, deletion
    assert "hnad" not in spellings and all(len(c) >= 3 for c in spellings)
    assert found[kw.spelling_id("hand")] == "hand"
    counts = {kw.spelling_id("hand"): 4, kw.spelling_id("head"): 9}
    assert kw.best_candidate(found, counts) == "head"  # the spelling more objects have
    assert kw.best_candidate(found, {kw.spelling_id("hand"): 3, kw.spelling_id("had"): 3}) == "had"  # tie: a-z
    assert kw.best_candidate(found, {}) is None
    assert not kw.correctable("of") and not kw.correctable("t01967") and kw.correctable("vsae")


def test_corrections_replace_whole_words_keeping_capitals() -> None:
    fixes = {"potrait": "portrait", "gainsbrough": "gainsborough"}
    text = "Potrait by Gainsbrough, potraits"
    assert kw.apply_corrections(text, fixes) == "Portrait by Gainsborough, potraits"
    query = kw.query_vectors(text, kw.apply_corrections(text, fixes))
    assert {"potrait", "portrait", "gainsborough"} <= set(query.terms)  # both spellings for keywords
    assert query.ngrams is not None and kw.spelling_id("potrait") not in query.ngrams.indices


def test_idf_matches_qdrants_formula() -> None:
    assert kw.idf(2, 1) == pytest.approx(math.log(2))
    assert kw.idf(100, 1) > kw.idf(100, 50) > 0


def test_tag_vector_weights_curators_tags_1_and_machine_tags_their_score() -> None:
    vector = kw.tag_vector(["Boats"], [("boat, sailing", 0.4), ("sea", 0.7), ("seas", 0.2)])
    assert vector is not None
    weights = vector.as_dict()
    assert weights[kw.term_id("boat")] == 1.0  # the curators' tag beats the machine's 0.4
    assert weights[kw.term_id("sail")] == pytest.approx(0.4)
    assert weights[kw.term_id("sea")] == pytest.approx(0.7)  # a term in two tags keeps the best
    # Whole-word spellings are there for spelling correction (queries never carry them).
    assert weights[kw.spelling_id("sailing")] == pytest.approx(0.4)
    assert kw.tag_vector([], []) is None
    assert kw.tag_vector([], [("sea", 0.0)]) is None
