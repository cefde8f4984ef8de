"""Baseline: the collection's most frequent tags, the same for every object."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from vitrine.tagger.backends.base import Backend, Inputs, top_k_rows


class MostFrequent(Backend):
    name = "most_frequent"

    def train(self, inputs: Inputs, labels: sp.csr_matrix, seed: int) -> None:
        counts = np.asarray(labels.sum(axis=0)).ravel()
        self.scores = (counts / max(counts.max(), 1)).astype(np.float32)

    def suggest(self, inputs: Inputs, limit: int) -> sp.csr_matrix:
        row = top_k_rows(self.scores[None, :], limit)
        return sp.vstack([row] * len(inputs), format="csr") if len(inputs) else row[:0]

    def save(self, directory: Path) -> None:
        np.save(directory / "scores.npy", self.scores)

    def load(self, directory: Path) -> None:
        self.scores = np.load(directory / "scores.npy", allow_pickle=False)
