"""The search evaluation's baseline: the prototype's keyword search."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from vitrine.evaluation.metrics import RECALL_K


class TfidfBaseline:
    """The prototype's keyword search: scikit-learn TF-IDF over the metadata text, cosine
    similarity, top 100; an object is a result only when it shares a term with the query."""

    def __init__(self, texts: Mapping[str, str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.ids = list(texts)
        self.vectorizer = TfidfVectorizer()
        self.matrix = self.vectorizer.fit_transform([texts[i] for i in self.ids])  # rows l2-normalised

    def search(self, query: str, k: int = RECALL_K) -> list[str]:
        scores = (self.matrix @ self.vectorizer.transform([query]).T).toarray().ravel()
        found = np.flatnonzero(scores > 0)
        order = found[np.lexsort((found, -scores[found]))][:k]
        return [self.ids[i] for i in order]
