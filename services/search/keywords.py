"""Keyword side of search: text to sparse vectors, computed here in Python so that the embedded
engine and a Qdrant server index and query exactly the same terms.

Two sparse vectors per object, both scored by the store with its IDF modifier (so a match on a
rare word counts more than one on a common word):

- `keywords`: normalised words. Lowercase, accents folded ("Géricault" = "gericault"), split at
  punctuation, a light English stemmer so that plurals and -ing/-ed forms meet ("vases" = "vase",
  "sailing" = "sail", "houses" = "house"); accession numbers ("N05438") and other tokens with
  digits are kept whole, and an id written with separators ("met-247009") is also indexed joined.
  Document values are BM25 term weights (saturated term frequency, normalised by the length of
  the object's text against a fixed typical length), query values are 1 per distinct term, so the
  store's score is BM25.
- `ngrams`: character trigrams of each word with boundary markers ("^po", "por", ..., "it$") and
  the whole word as written ("^portrait$"). A clipped word shares most trigrams with the longer
  one ("photo" with "photograph"), a word with one typo often does too ("potrait", "portrait").

Typos: trigrams alone miss the short words and swapped letters that real typos are made of
("fsih" shares no trigram with "fish"). So the service also corrects the query against the
collection's own words (`candidates`, `best_candidate`): a query word whose stem no object has
is replaced by the spelling one edit away (deleted, inserted, replaced or swapped letter) that
most objects have, found through the whole-word entries of `ngrams`; keyword matching then
uses both spellings and MPNet embeds the corrected text. Measured on 900 Tate subject queries
with one swapped pair of letters (dev split, subjects not indexed): 62% are corrected to exactly
the right words and typo nDCG@12 of the fused search is 0.88 of the clean one, against 0.38
for TF-IDF and 0.41 for MPNet on the raw typo; 8% of clean queries get a (harmless to keywords)
correction of a word no object has, which costs 0.002 of clean nDCG.

Ids are a 31-bit hash of the term (blake2b), stable across processes and machines, so no
vocabulary has to be kept anywhere.

Subject tags are not keywords: they go in a third sparse vector, `tags` (`tag_vector`): the terms
of the curators' own subjects (weight 1) and of the tagger's machine tags (weight = its calibrated
score; a term in several tags keeps its best). It also holds the whole-word spelling ids of the
tag words, so that spelling correction knows words only a tag has ("fsih" -> "fish" on a page
titled "Study" that the tagger tags fish).

With a subject vocabulary (the search setting `vocabulary`, SKOS or JSON lines, read like the
tagger's), a tag that names one of its terms (by subject, concept URI or any label) is indexed
under every label of that term (prefLabels and altLabels in all languages, hiddenLabels,
notations) with the tag's weight: an object tagged "antiquities" is found by "relics of
antiquity" and by "muinaisesineet". A concept URI is not text and adds no terms once resolved.
Without a vocabulary the vectors are exactly those of a label's own words.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from vitrine.common.vocabulary import Vocabulary
from vitrine.search.store import SPARSE_VECTOR_NAMES, SparseVector
from vitrine.v1 import common_pb2

KEYWORDS, NGRAMS, TAGS = SPARSE_VECTOR_NAMES
# Bumped whenever the terms an object gets change, so stored objects are re-indexed on ingest.
VERSION = "keywords-3"

# Words of a text: letters and digits, split at everything else (also "_").
_WORD = re.compile(r"[^\W_]+")
_VOWELS = frozenset("aeiouy")
# Dropped from queries (unless the query has nothing else), kept in documents.
# fmt: off
STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "had", "has", "have", "he", "her",
    "his", "i", "in", "into", "is", "it", "its", "of", "on", "or", "she", "that", "the", "their", "them",
    "there", "these", "they", "this", "to", "was", "were", "which", "who", "with",
})
# fmt: on
# Words the suffix rules would cut wrongly and whose forms matter in catalogues.
_INVARIANT = frozenset({"canvas", "gas", "bias", "atlas", "christmas", "always", "news"})

# BM25 term saturation and length normalisation. AVERAGE_TERMS is a fixed typical length of an
# object's keyword text (title, artist, date, medium, classification: 15 to 25 words), so a
# document's weights never depend on the rest of the collection.
K1 = 1.2
B = 0.75
AVERAGE_TERMS = 20.0
AVERAGE_NGRAMS = 80.0
# Field -> how many times its terms count (the title says most about the object).
FIELD_REPEATS = {"title": 2}


# Letters NFKD does not decompose.
_LIGATURES = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "þ": "th", "ð": "d"})


def fold(text: str) -> str:
    """Lowercase with accents and ligatures folded to ASCII where they have a plain form."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).translate(_LIGATURES)


def words(text: str) -> list[str]:
    """The folded words of a text, unstemmed."""
    return _WORD.findall(fold(text))


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light English stemmer: plurals, -ing and -ed, a final e or y. Short words and anything
    with a digit (dates, accession numbers) are kept as they are. Both sides of a match go
    through it, so it only has to be consistent, not linguistically right ("horse", "horses" ->
    "hors")."""
    if len(word) <= 3 or not word.isalpha() or word in _INVARIANT:
        return word
    w = word
    if w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "i"
    elif w.endswith(("ches", "shes")) or (w.endswith("es") and w[-3] in "sxz"):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ing", "ed"):
        base = w[: -len(suffix)]
        if w.endswith(suffix) and len(base) >= 3 and _VOWELS.intersection(base):
            w = base
            if w[-1] == w[-2] and w[-1] not in "lsz":  # running -> run, but not hill -> hil
                w = w[:-1]
            break
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    elif len(w) > 3 and w.endswith("y") and w[-2] not in _VOWELS:
        w = w[:-1] + "i"
    return w


def _joined(text: str) -> list[str]:
    """Whitespace-separated chunks with letters and digits and inner punctuation ("met-247009",
    "T01967/2"), joined into one token so that an id can be matched as written."""
    found = []
    for chunk in fold(text).split():
        parts = _WORD.findall(chunk)
        joined = "".join(parts)
        if len(parts) > 1 and any(c.isdigit() for c in joined) and any(c.isalpha() for c in joined):
            found.append(joined)
    return found


def terms(text: str) -> list[str]:
    """The keyword terms of a text, in order, with repeats (document side)."""
    return [stem(w) for w in words(text)] + _joined(text)


def query_terms(text: str) -> list[str]:
    """The distinct keyword terms of a query, stopwords left out unless nothing else is left."""
    found = list(dict.fromkeys(terms(text)))
    content = [t for t in found if t not in STOPWORDS]
    return content or found


def trigrams(word: str) -> list[str]:
    """Character trigrams of a folded word with boundary markers, and the whole word as written
    ("^word$": an exact spelling counts more, and spelling correction checks which spellings
    exist). One-letter words have none."""
    if len(word) < 2:
        return []
    marked = f"^{word}$"
    return [marked[i : i + 3] for i in range(len(marked) - 2)] + ([marked] if len(word) > 2 else [])


def spelling_id(word: str) -> int:
    """The `ngrams` term id of a whole word as written (see `trigrams`)."""
    return term_id(f"^{word}$")


@functools.lru_cache(maxsize=262144)
def term_id(term: str) -> int:
    """A stable 31-bit id of a term."""
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "big") & 0x7FFFFFFF


def _bm25(counts: Mapping[str, float], average: float) -> SparseVector:
    length = sum(counts.values())
    norm = K1 * (1 - B + B * length / average)
    weights: dict[int, float] = {}
    for term, tf in counts.items():
        index = term_id(term)
        weights[index] = weights.get(index, 0.0) + tf * (K1 + 1) / (tf + norm)
    return SparseVector.from_dict(weights)


def _query_vector(items: Iterable[str]) -> SparseVector:
    return SparseVector.from_dict({term_id(t): 1.0 for t in items})


def object_fields(obj: common_pb2.CollectionObject) -> list[tuple[str, str]]:
    """(field, text) of the fields keywords are taken from (never the subject tags)."""
    return [
        ("id", obj.id),
        ("title", obj.title),
        ("artist", obj.artist),
        ("date", obj.date),
        ("medium", obj.medium),
        ("classification", obj.classification),
        ("movements", " ; ".join(obj.movements)),
        ("description", obj.description),
    ]


def document_vectors(fields: Sequence[tuple[str, str]]) -> dict[str, SparseVector]:
    """The `keywords` and `ngrams` vectors of an object's fields; empty vectors are left out."""
    term_counts: Counter[str] = Counter()
    ngram_counts: Counter[str] = Counter()
    for name, text in fields:
        if not text:
            continue
        repeats = FIELD_REPEATS.get(name, 1)
        for term in terms(text):
            term_counts[term] += repeats
        for word in words(text):
            for gram in trigrams(word):
                ngram_counts[gram] += repeats
    vectors = {}
    if term_counts:
        vectors[KEYWORDS] = _bm25(term_counts, AVERAGE_TERMS)
    if ngram_counts:
        vectors[NGRAMS] = _bm25(ngram_counts, AVERAGE_NGRAMS)
    return vectors


def object_vectors(obj: common_pb2.CollectionObject) -> dict[str, SparseVector]:
    return document_vectors(object_fields(obj))


def _weighted_tags(subjects: Iterable[str], machine_tags: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """An object's tags with their weights: curators' subjects 1, machine tags their score
    (those of score 0 or less left out)."""
    return [(label, float(weight)) for label, weight in [*((s, 1.0) for s in subjects), *machine_tags] if weight > 0]


def _tag_texts(
    subjects: Iterable[str], machine_tags: Iterable[tuple[str, float]], vocabulary: Vocabulary | None
) -> list[tuple[str, float]]:
    """The texts whose terms the tags vector holds, with their weights: each tag's label, or,
    when the vocabulary knows exactly one term by it (as the tagger resolves names: subject,
    URI, label), every name of that term. A name several terms carry is not guessed at."""
    tags = _weighted_tags(subjects, machine_tags)
    if vocabulary is None:
        return tags
    texts: list[tuple[str, float]] = []
    for label, weight in tags:
        found = vocabulary.matches(label)
        texts += [(name, weight) for name in found[0].names] if len(found) == 1 else [(label, weight)]
    return texts


def vocabulary_version(vocabulary: Vocabulary) -> str:
    """A fingerprint of what the tags vectors take from a vocabulary (each term's URI and names), hashed
    into each object's content hash: a changed vocabulary re-indexes objects on their next ingest."""
    digest = hashlib.blake2b(digest_size=8)
    for term in vocabulary:
        digest.update("\x1f".join((term.uri, *term.names)).encode() + b"\x1e")
    return f"vocabulary-{digest.hexdigest()}"


def tag_vector(
    subjects: Iterable[str], machine_tags: Iterable[tuple[str, float]] = (), vocabulary: Vocabulary | None = None
) -> SparseVector | None:
    """The `tags` vector: each term of a tag label weighted by the tag's weight (curators'
    subjects 1, machine tags their score; the best weight when a term is in several tags), and
    the spelling id of each tag word (for correction; queries of the tags signal never hold
    spelling ids, so they add nothing to scores). With a vocabulary, the terms of all the labels
    of the tag's term (see `_tag_texts`). None when there is no tag."""
    weights: dict[int, float] = {}
    for label, weight in _tag_texts(subjects, machine_tags, vocabulary):
        for term in terms(label):
            index = term_id(term)
            weights[index] = max(weights.get(index, 0.0), weight)
        for word in words(label):
            if len(word) > 2:
                index = spelling_id(word)
                weights[index] = max(weights.get(index, 0.0), weight)
    return SparseVector.from_dict(weights) if weights else None


def tag_term_ids(
    subjects: Iterable[str], machine_tags: Iterable[tuple[str, float]] = (), vocabulary: Vocabulary | None = None
) -> list[int]:
    """The term ids of an object's tags (those `tag_vector` weights), for the payload field the
    tags signal's coverage rule filters on."""
    texts = _tag_texts(subjects, machine_tags, vocabulary)
    return sorted({term_id(term) for label, _ in texts for term in terms(label)})


@dataclass(frozen=True)
class KeywordQuery:
    """The sparse vectors of one query (None when the query has no such terms)."""

    terms: tuple[str, ...]
    keywords: SparseVector | None
    ngrams: SparseVector | None


def query_vectors(text: str, corrected: str | None = None) -> KeywordQuery:
    """The query's sparse vectors. With a spelling-corrected text, `keywords` has the terms of
    both (a word no object has costs nothing) and `ngrams` those of the corrected text only."""
    found = query_terms(text if corrected is None else f"{text} {corrected}")
    fuzzy = text if corrected is None else corrected
    content = {w for w in words(fuzzy) if w not in STOPWORDS} or set(words(fuzzy))
    grams = sorted({g for w in content for g in trigrams(w)})
    return KeywordQuery(
        tuple(found),
        _query_vector(found) if found else None,
        _query_vector(grams) if grams else None,
    )


def id_like(text: str) -> set[str]:
    """The query's whitespace-separated chunks that could be an object id (with a digit), folded
    and stripped of surrounding punctuation: an object whose folded id is one of them is what the
    user asked for."""
    chunks = {c.strip(".,;:!?()[]{}'\"") for c in fold(text).split()}
    return {c for c in chunks if len(c) >= 3 and any(ch.isdigit() for ch in c)}


def term_vector(term: str) -> SparseVector:
    """A `keywords` query vector of one term (is there an object with this term at all?)."""
    return _query_vector([term])


def idf(documents: int, containing: int) -> float:
    """The IDF the store applies (Qdrant's modifier), for tests and tuning."""
    return math.log(1 + (documents - containing + 0.5) / (containing + 0.5))


# ----------------------------------------------------------------------------------------------
# Spelling correction
# ----------------------------------------------------------------------------------------------

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def edits(word: str) -> set[str]:
    """Every word one edit away (a letter deleted, inserted, replaced, or two neighbours swapped)."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = {a + b[1:] for a, b in splits if b}
    swaps = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    replaces = {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    inserts = {a + c + b for a, b in splits for c in _LETTERS}
    return (deletes | swaps | replaces | inserts) - {word}


def correctable(word: str) -> bool:
    """Words a typo correction is tried for: plain words of 3+ letters, not stopwords."""
    return len(word) >= 3 and word.isascii() and word.isalpha() and word not in STOPWORDS


def candidates(word: str) -> dict[int, str]:
    """`ngrams` term id -> each spelling one edit away from `word` (3+ letters)."""
    return {spelling_id(c): c for c in sorted(edits(word)) if len(c) >= 3}


def best_candidate(found: Mapping[int, str], counts: Mapping[int, int]) -> str | None:
    """The spelling most objects have (`counts`: objects by spelling id); on ties the first in
    alphabetical order. None when no object has any."""
    ordered = sorted(found.items(), key=lambda c: c[1])
    best = max(ordered, key=lambda c: counts.get(c[0], 0), default=None)
    return None if best is None or counts.get(best[0], 0) == 0 else best[1]


def apply_corrections(text: str, fixes: Mapping[str, str]) -> str:
    """`text` with each word whose folded form is in `fixes` replaced (capitalised like it)."""

    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        new = fixes.get(fold(word))
        if new is None:
            return word
        return new.capitalize() if word[:1].isupper() else new

    return _WORD.sub(fix, text)
