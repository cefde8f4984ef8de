"""Word features of an object for the lexical models: stemmed words of the text fields plus whole
field values that are names (artist, movements, decade), weighted by TF-IDF.

Hand-written rather than sklearn's vectoriser so that a trained model is two JSON-friendly
arrays (vocabulary, idf) and loads without pickles.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import Stemmer

from vitrine.v1 import common_pb2

_WORD = re.compile(r"[^\W\d_]{2,}")
_STEMMER = Stemmer.Stemmer("english")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "he",
        "her",
        "his",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "she",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "were",
        "with",
        "verso",
        "recto",
    ]
)
WORD_FIELDS = ("title", "medium", "classification", "description")


def words(text: str) -> list[str]:
    """Lower-cased, stemmed words, stop words left out."""
    tokens = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]
    return _STEMMER.stemWords(tokens)


def tokens(obj: common_pb2.CollectionObject) -> list[str]:
    out: list[str] = []
    for name in WORD_FIELDS:
        out += words(getattr(obj, name))
    if obj.artist:
        out.append("artist=" + obj.artist.lower())
        out += ["name=" + w for w in words(obj.artist)]
    out += ["movement=" + m.lower() for m in obj.movements]
    if obj.HasField("year"):
        out.append(f"decade={obj.year // 10 * 10}")
    return out


class TfidfFeatures:
    """Sublinear TF-IDF over `tokens`, rows L2-normalised."""

    def __init__(self, vocabulary: dict[str, int], idf: np.ndarray) -> None:
        self.vocabulary = vocabulary
        self.idf = idf.astype(np.float32)

    @classmethod
    def fit(cls, objects: Sequence[common_pb2.CollectionObject], min_df: int = 1) -> TfidfFeatures:
        df: Counter[str] = Counter()
        for obj in objects:
            df.update(set(tokens(obj)))
        kept = sorted(t for t, c in df.items() if c >= min_df)
        vocabulary = {t: i for i, t in enumerate(kept)}
        n = len(objects)
        idf = np.log((1 + n) / (1 + np.array([df[t] for t in kept], dtype=np.float64))) + 1.0
        return cls(vocabulary, idf)

    def transform(self, objects: Sequence[common_pb2.CollectionObject]) -> sp.csr_matrix:
        indptr, indices, values = [0], [], []
        for obj in objects:
            counts = Counter(self.vocabulary[t] for t in tokens(obj) if t in self.vocabulary)
            cols = sorted(counts)
            indices += cols
            values += [1.0 + np.log(counts[c]) for c in cols]
            indptr.append(len(indices))
        matrix = sp.csr_matrix(
            (np.asarray(values, dtype=np.float32), np.asarray(indices, dtype=np.int32), np.asarray(indptr)),
            shape=(len(objects), len(self.vocabulary)),
        )
        matrix = matrix.multiply(self.idf[None, :]).tocsr()
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ matrix, dtype=np.float32)

    def save(self, directory: Path) -> None:
        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        (directory / "tfidf_terms.json").write_text(json.dumps(terms))
        np.save(directory / "tfidf_idf.npy", self.idf)

    @classmethod
    def load(cls, directory: Path) -> TfidfFeatures:
        terms = json.loads((directory / "tfidf_terms.json").read_text())
        return cls({t: i for i, t in enumerate(terms)}, np.load(directory / "tfidf_idf.npy", allow_pickle=False))
