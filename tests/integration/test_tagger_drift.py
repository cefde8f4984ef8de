"""The drift score on the real Tate vocabulary and training tag counts: suggestions drawn like
the training tags score near 0, suggestions from one category score high, and tag counters keep
to the tracked tags."""

from __future__ import annotations

import math

import numpy as np

from tests.conftest import SHARED_DATA
from vitrine.common.vocabulary import Vocabulary
from vitrine.tagger.data import label_matrix, load_documents, tag_counts
from vitrine.tagger.drift import MIN_SUGGESTIONS, TRACKED_TAGS, DriftMonitor

TATE = SHARED_DATA / "tate"


def test_drift_score_separates_training_like_from_one_sided_suggestions() -> None:
    vocabulary = Vocabulary.load(TATE / "subjects.jsonl.gz")
    counts = tag_counts(label_matrix(load_documents(TATE / "tate_train.jsonl.gz", limit=5000), vocabulary))
    rng = np.random.default_rng(3)
    names = [t.subject for t in vocabulary]

    like_training = DriftMonitor(vocabulary, counts)
    assert math.isnan(like_training.score())
    draws = rng.choice(len(names), size=3000, p=counts / counts.sum())
    like_training.observe([names[i] for i in draws])
    assert like_training.score() < 0.02

    one_sided = DriftMonitor(vocabulary, counts)
    people = [t.subject for t in vocabulary if t.paths and t.paths[0].startswith("people")]
    one_sided.observe(list(rng.choice(people, size=MIN_SUGGESTIONS)))
    assert one_sided.score() > 0.3

    assert len(like_training.tracked) == TRACKED_TAGS
    assert like_training.tag_label(names[int(np.argmax(counts))]) != "other"
    assert like_training.tag_label(names[int(np.argmin(counts))]) == "other"
