"""Watching what the tagger suggests against what it was trained on.

The drift score compares the top-level categories (places, people, objects, nature, ...) of the
last few thousand suggestions with the categories of the tags in the training data, as the
Jensen-Shannon divergence in bits (0 = same mix, 1 = nothing in common). New kinds of
acquisitions, a broken upstream field or a bad model version all move it long before curators'
acceptance rate does. Which tags are suggested is counted for the most used training tags only,
so that the metric's cardinality stays bounded.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from vitrine.common.vocabulary import Vocabulary

WINDOW = 2000  # suggestions the score looks at
MIN_SUGGESTIONS = 200  # fewer: no score yet (NaN)
TRACKED_TAGS = 50  # per-tag counters for the training's most used tags; the rest count as "other"


class DriftMonitor:
    def __init__(self, vocabulary: Vocabulary, tag_counts: np.ndarray, window: int = WINDOW) -> None:
        levels = vocabulary.top_levels()
        self.categories = sorted(set(levels))
        self.category_of = np.array([self.categories.index(level) for level in levels], dtype=np.int64)
        training = np.bincount(self.category_of, weights=tag_counts.astype(float), minlength=len(self.categories))
        self.training = training / max(training.sum(), 1.0)
        self.recent: deque[int] = deque(maxlen=window)
        self.lock = threading.Lock()
        top = np.argsort(-tag_counts, kind="stable")[:TRACKED_TAGS]
        self.tracked = {vocabulary.terms[i].subject for i in top if tag_counts[i] > 0}
        self.index = vocabulary.index

    def tag_label(self, tag: str) -> str:
        """The counter label for a suggested tag: itself if tracked, else 'other'."""
        return tag if tag in self.tracked else "other"

    def observe(self, tags: list[str]) -> None:
        with self.lock:
            self.recent.extend(int(self.category_of[self.index[t]]) for t in tags if t in self.index)

    def score(self) -> float:
        """Jensen-Shannon divergence (bits) of the recent suggestions' categories from the
        training's; NaN until enough suggestions were seen."""
        with self.lock:
            if len(self.recent) < MIN_SUGGESTIONS:
                return float("nan")
            recent = np.bincount(np.fromiter(self.recent, dtype=np.int64), minlength=len(self.categories))
        return jensen_shannon(recent / recent.sum(), self.training)


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    middle = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float((a[mask] * np.log2(a[mask] / middle[mask])).sum())

    return (kl(p) + kl(q)) / 2
