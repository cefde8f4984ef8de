"""Nearest-neighbour label propagation: the tags of the most similar tagged objects.

Three flavours share the code: `knn` over the MPNet text vectors (meaning), `image_knn` over
the CLIP image vectors of objects that have an image, and `tfidf_knn` over TF-IDF words (the
baseline of the evaluation table). The vector neighbours also serve the
explanations: "objects like this one that carry the tag".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from vitrine.tagger.backends.base import (
    EVIDENCE_LIMIT,
    Backend,
    Inputs,
    carries,
    chunks,
    nearest,
    neighbour_scores,
    tagged_mask,
    top_k_sparse,
)
from vitrine.tagger.suggestions import Evidence, SimilarObject

if TYPE_CHECKING:
    from vitrine.tagger.ensemble import Ranked

CHUNK = 512
# Neighbours searched for the tagged objects an explanation names.
NEIGHBOURS_FOR_EXPLANATIONS = 50


class VectorKnn(Backend):
    name = "knn"
    neighbours = 30
    power = 3.0

    def usable(self, inputs: Inputs) -> tuple[np.ndarray, np.ndarray]:
        """The vectors this flavour reads, and which objects have one."""
        return inputs.text_vectors, np.ones(len(inputs), dtype=bool)

    def train(self, inputs: Inputs, labels: sp.csr_matrix, seed: int) -> None:
        vectors, present = self.usable(inputs)
        keep = np.flatnonzero(tagged_mask(labels) & present)
        self.vectors = vectors[keep].astype(np.float32)
        self.labels = labels[keep].tocsr()
        self.ids = [inputs.objects[i].id for i in keep]
        self.titles = [inputs.objects[i].title for i in keep]

    def nearest(self, inputs: Inputs, k: int) -> tuple[np.ndarray, np.ndarray]:
        vectors, _ = self.usable(inputs)
        found = [nearest(vectors[s], self.vectors, k) for s in chunks(len(inputs), CHUNK)]
        if not found:
            return np.zeros((0, k), int), np.zeros((0, k), np.float32)
        return np.vstack([f[0] for f in found]), np.vstack([f[1] for f in found])

    def suggest(self, inputs: Inputs, limit: int) -> sp.csr_matrix:
        _, present = self.usable(inputs)
        if len(self.ids) == 0 or not present.any():
            return sp.csr_matrix((len(inputs), self.labels.shape[1]), dtype=np.float32)
        neighbours, sims = self.nearest(inputs, self.neighbours)
        sims = np.where(present[:, None], sims, 0.0).astype(np.float32)
        return top_k_sparse(neighbour_scores(neighbours, sims, self.labels, self.power), limit)

    def explain(self, ranked: Ranked, positions: Sequence[np.ndarray]) -> list[list[Evidence]] | None:
        """The most similar tagged training objects that carry each suggested tag."""
        inputs = ranked.inputs
        _, present = self.usable(inputs)
        if len(self.ids) == 0 or not present.any():
            return None
        neighbours, sims = self.nearest(inputs, NEIGHBOURS_FOR_EXPLANATIONS)
        sims = np.where(present[:, None], sims, 0.0)  # objects without this flavour's vector: none
        tags = ranked.candidates.tags
        return [
            [Evidence(similar_objects=self._carrying(neighbours[doc], sims[doc], int(tags[p]))) for p in kept]
            for doc, kept in enumerate(positions)
        ]

    def _carrying(self, neighbours: np.ndarray, sims: np.ndarray, tag: int) -> list[SimilarObject]:
        """The first neighbours (best first) that carry the tag, one per object id."""
        carrying: dict[str, SimilarObject] = {}
        for n, similarity in zip(neighbours, sims, strict=True):
            if len(carrying) == EVIDENCE_LIMIT:
                break
            if similarity > 0 and carries(self.labels, int(n), tag) and self.ids[n] not in carrying:
                carrying[self.ids[n]] = SimilarObject(self.ids[n], self.titles[n], float(similarity))
        return list(carrying.values())

    def save(self, directory: Path) -> None:
        np.save(directory / "vectors.npy", self.vectors.astype(np.float16))
        sp.save_npz(directory / "labels.npz", self.labels)
        (directory / "objects.json").write_text(json.dumps({"ids": self.ids, "titles": self.titles}))

    def load(self, directory: Path) -> None:
        self.vectors = np.load(directory / "vectors.npy", allow_pickle=False).astype(np.float32)
        self.labels = sp.load_npz(directory / "labels.npz").tocsr()
        objects = json.loads((directory / "objects.json").read_text())
        self.ids, self.titles = objects["ids"], objects["titles"]


class ImageKnn(VectorKnn):
    """Tags of the tagged objects whose images look most like this object's image."""

    name = "image_knn"

    def usable(self, inputs: Inputs) -> tuple[np.ndarray, np.ndarray]:
        if inputs.image_vectors is None or inputs.has_image is None:
            return np.zeros((len(inputs), 0), np.float32), np.zeros(len(inputs), dtype=bool)
        return inputs.image_vectors, inputs.has_image


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
