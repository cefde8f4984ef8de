"""Nearest-neighbour label propagation: the tags of the most similar tagged objects.

Two flavours share the code: `knn` over the MPNet text vectors (meaning) and `tfidf_knn` over
TF-IDF words (the baseline of the evaluation table). The `knn` neighbours also serve the
explanations: "objects like this one that carry the tag".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from vitrine.tagger.backends.base import (
    Backend,
    Inputs,
    chunks,
    nearest,
    neighbour_scores,
    tagged_mask,
    top_k_sparse,
)

CHUNK = 512


class VectorKnn(Backend):
    name = "knn"
    neighbours = 30
    power = 3.0

    def train(self, inputs: Inputs, labels: sp.csr_matrix, seed: int) -> None:
        tagged = np.flatnonzero(tagged_mask(labels))
        self.vectors = inputs.text_vectors[tagged].astype(np.float32)
        self.labels = labels[tagged].tocsr()
        self.ids = [inputs.objects[i].id for i in tagged]
        self.titles = [inputs.objects[i].title for i in tagged]

    def nearest(self, inputs: Inputs, k: int) -> tuple[np.ndarray, np.ndarray]:
        found = [nearest(inputs.text_vectors[s], self.vectors, k) for s in chunks(len(inputs), CHUNK)]
        if not found:
            return np.zeros((0, k), int), np.zeros((0, k), np.float32)
        return np.vstack([f[0] for f in found]), np.vstack([f[1] for f in found])

    def suggest(self, inputs: Inputs, limit: int) -> sp.csr_matrix:
        neighbours, sims = self.nearest(inputs, self.neighbours)
        return top_k_sparse(neighbour_scores(neighbours, sims, self.labels, self.power), limit)

    def save(self, directory: Path) -> None:
        np.save(directory / "vectors.npy", self.vectors.astype(np.float16))
        sp.save_npz(directory / "labels.npz", self.labels)
        (directory / "objects.json").write_text(json.dumps({"ids": self.ids, "titles": self.titles}))

    def load(self, directory: Path) -> None:
        self.vectors = np.load(directory / "vectors.npy", allow_pickle=False).astype(np.float32)
        self.labels = sp.load_npz(directory / "labels.npz").tocsr()
        objects = json.loads((directory / "objects.json").read_text())
        self.ids, self.titles = objects["ids"], objects["titles"]


class TfidfKnn(Backend):
    name = "tfidf_knn"
    neighbours = 20
    power = 1.0

    def train(self, inputs: Inputs, labels: sp.csr_matrix, seed: int) -> None:
        tagged = np.flatnonzero(tagged_mask(labels))
        self.rows = inputs.tfidf[tagged].tocsr()
        self.labels = labels[tagged].tocsr()

    def suggest(self, inputs: Inputs, limit: int) -> sp.csr_matrix:
        index_t = self.rows.T.tocsc()
        parts = []
        for part in chunks(len(inputs), CHUNK):
            sims = (inputs.tfidf[part] @ index_t).toarray()
            k = min(self.neighbours, sims.shape[1])
            cols = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            values = np.take_along_axis(sims, cols, axis=1)
            parts.append(top_k_sparse(neighbour_scores(cols, values, self.labels, self.power), limit))
        return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, self.labels.shape[1]), dtype=np.float32)

    def save(self, directory: Path) -> None:
        sp.save_npz(directory / "rows.npz", self.rows)
        sp.save_npz(directory / "labels.npz", self.labels)

    def load(self, directory: Path) -> None:
        self.rows = sp.load_npz(directory / "rows.npz").tocsr()
        self.labels = sp.load_npz(directory / "labels.npz").tocsr()
