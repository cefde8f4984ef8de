"""Semantic matching of tag names to the object's text: cosine similarity between the MPNet
vector of the object's metadata and each tag's vector (its name, nudged towards its places in
the hierarchy), or the vector of one of its alternative labels (SKOS altLabel) when that is
closer: "automobiles" matches a text about a car through its altLabel "cars". Needs no
curators' tags, so it reaches rare and never-used tags."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from vitrine.tagger.backends.base import Backend, Inputs, chunks, top_k_rows
from vitrine.tagger.suggestions import Evidence, MatchedText

if TYPE_CHECKING:
    from vitrine.tagger.ensemble import Ranked


def meaning_evidence(
    backend: Backend, matched: str, ranked: Ranked, positions: Sequence[np.ndarray]
) -> list[list[Evidence]] | None:
    """A semantic backend's evidence: the tag's name matched `matched` by meaning, as closely
    as the backend's score for it says (no evidence where it did not propose the tag)."""
    scores = ranked.candidates.scores.get(backend.name)
    if scores is None:  # not one of the models the combiner reads
        return None
    terms = backend.context.vocabulary.terms
    found = []
    for kept in positions:
        row = []
        for position in kept:
            score = float(scores[position])
            subject = terms[int(ranked.candidates.tags[position])].subject
            row.append(Evidence(matched_text=[MatchedText(matched, subject, score)] if score > 0 else []))
        found.append(row)
    return found


class SemanticText(Backend):
    name = "semantic_text"
    supervised = False

    def train(self, inputs: Inputs, labels: sp.csr_matrix, seed: int) -> None:
        """Nothing to learn: the tag vectors come with the model version's context."""

    def suggest(self, inputs: Inputs, limit: int) -> sp.csr_matrix:
        tags = self.context.tag_vectors
        parts = [top_k_rows(self.similarities(inputs.text_vectors[s]), limit) for s in chunks(len(inputs), 1024)]
        return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, tags.shape[0]), dtype=np.float32)

    def similarities(self, text_vectors: np.ndarray) -> np.ndarray:
        """Objects × tags: each tag's best similarity over its name and alternative labels."""
        scores = text_vectors @ self.context.tag_vectors.T
        alt, columns = self.context.alt_label_vectors, self.context.alt_label_tags
        if alt is not None and columns is not None and len(columns):
            np.maximum.at(scores, (slice(None), columns), text_vectors @ alt.T)
        return scores

    def explain(self, ranked: Ranked, positions: Sequence[np.ndarray]) -> list[list[Evidence]] | None:
        return meaning_evidence(self, "metadata (meaning)", ranked, positions)

    def save(self, directory: Path) -> None:
        """Stateless."""

    def load(self, directory: Path) -> None:
        """Stateless."""


class SemanticImage(Backend):
    """The same across modalities: CLIP's text vector of each tag against the object's CLIP
    image vector, for objects that have an image (the others get nothing)."""

    name = "semantic_image"
    supervised = False

    def train(self, inputs: Inputs, labels: sp.csr_matrix, seed: int) -> None:
        """Nothing to learn."""

    def suggest(self, inputs: Inputs, limit: int) -> sp.csr_matrix:
        tags = self.context.tag_image_vectors
        if tags is None or inputs.image_vectors is None or inputs.has_image is None:
            return sp.csr_matrix((len(inputs), len(self.context.vocabulary)), dtype=np.float32)
        scores = inputs.image_vectors @ tags.T
        scores[~inputs.has_image] = 0.0
        return top_k_rows(scores, limit)

    def explain(self, ranked: Ranked, positions: Sequence[np.ndarray]) -> list[list[Evidence]] | None:
        return meaning_evidence(self, "image (meaning)", ranked, positions)

    def save(self, directory: Path) -> None:
        """Stateless."""

    def load(self, directory: Path) -> None:
        """Stateless."""
