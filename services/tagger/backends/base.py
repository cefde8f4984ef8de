"""The interface every tagger model implements, and the helpers they share.

A backend reads a batch of objects (`Inputs`: their text vectors, TF-IDF rows, image vectors)
and answers a sparse documents × tags matrix holding its scores (0..1, higher is more likely)
for its top `limit` tags per document; absent entries mean "not suggested". Asked to explain
the batch's final suggestions, each backend may contribute its evidence for them (`explain`):
the objects it found similar, the words it matched.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import scipy.sparse as sp

from vitrine.common.vocabulary import Vocabulary
from vitrine.tagger.suggestions import Evidence
from vitrine.v1 import common_pb2

if TYPE_CHECKING:
    from vitrine.tagger.ensemble import Ranked

# Objects an explanation names per kind of evidence (similar objects, catalogue neighbours).
EVIDENCE_LIMIT = 3


@dataclass
class Inputs:
    """What the models read for a batch of objects, computed once per batch."""

    objects: list[common_pb2.CollectionObject]
    text_vectors: np.ndarray  # one unit-length row per object (MPNet of the metadata text)
    tfidf: sp.csr_matrix
    # Unit-length image rows (CLIP) and which objects have one; None when no image model.
    image_vectors: np.ndarray | None = None
    has_image: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.objects)

    def subset(self, rows: np.ndarray) -> Inputs:
        return Inputs(
            [self.objects[i] for i in rows],
            self.text_vectors[rows],
            self.tfidf[rows],
            None if self.image_vectors is None else self.image_vectors[rows],
            None if self.has_image is None else self.has_image[rows],
        )


@dataclass
class Context:
    """What backends share across a model version: the vocabulary, its embedded tags and how
    often the training documents carry each tag."""

    vocabulary: Vocabulary
    tag_vectors: np.ndarray  # one unit-length row per tag (text model)
    # Tag rows in the image model's text tower (CLIP), when the system has one.
    tag_image_vectors: np.ndarray | None = None
    # Unit-length rows of the tags' alternative labels (SKOS altLabel, text model) and the tag
    # column of each: a tag matches by its best name. Empty for vocabularies without them.
    alt_label_vectors: np.ndarray | None = None
    alt_label_tags: np.ndarray | None = None
    # Uses of each tag in the documents the base models learnt from (training sets it per stage).
    tag_counts: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.tag_counts is None:
            self.tag_counts = np.zeros(len(self.vocabulary), dtype=np.int64)


class Backend(abc.ABC):
    name: ClassVar[str]
    # Learns from curators' tags (MIMIC evidence) rather than from tag names (RECOMMEND).
    supervised: ClassVar[bool] = True

    def __init__(self, context: Context) -> None:
        self.context = context

    @abc.abstractmethod
    def train(self, inputs: Inputs, labels: sp.csr_matrix, seed: int) -> None:
        """Learn from documents and their label rows (documents × tags, 0/1)."""

    @abc.abstractmethod
    def suggest(self, inputs: Inputs, limit: int) -> sp.csr_matrix:
        """Scores of each document's top `limit` tags."""

    def explain(self, ranked: Ranked, positions: Sequence[np.ndarray]) -> list[list[Evidence]] | None:
        """This backend's evidence for the suggestions at `positions` of the batch's ranked
        candidates (one array per document, empty for those not explained), one `Evidence` per
        position; None: it has none (the default)."""
        return None

    @abc.abstractmethod
    def save(self, directory: Path) -> None: ...

    @abc.abstractmethod
    def load(self, directory: Path) -> None: ...


def top_k_rows(scores: np.ndarray, limit: int, minimum: float = 0.0) -> sp.csr_matrix:
    """Keep each row's `limit` largest scores above `minimum` (dense rows -> sparse)."""
    n, width = scores.shape
    limit = min(limit, width)
    if n == 0 or limit == 0:
        return sp.csr_matrix((n, width), dtype=np.float32)
    cols = np.argpartition(-scores, limit - 1, axis=1)[:, :limit]
    values = np.take_along_axis(scores, cols, axis=1)
    keep = values > minimum
    rows = np.repeat(np.arange(n), limit)[keep.ravel()]
    return sp.csr_matrix((values[keep].astype(np.float32), (rows, cols[keep])), shape=(n, width))


def top_k_sparse(scores: sp.csr_matrix, limit: int) -> sp.csr_matrix:
    """The same for sparse rows, row by row."""
    scores = scores.tocsr()
    indptr, indices, data = [0], [], []
    for row in range(scores.shape[0]):
        start, end = scores.indptr[row], scores.indptr[row + 1]
        values = scores.data[start:end]
        order = np.argsort(-values, kind="stable")[:limit]
        order = order[values[order] > 0]
        indices.append(scores.indices[start:end][order])
        data.append(values[order])
        indptr.append(indptr[-1] + len(order))
    return sp.csr_matrix(
        (
            np.concatenate(data or [np.zeros(0)]).astype(np.float32),
            np.concatenate(indices or [np.zeros(0, int)]),
            indptr,
        ),
        shape=scores.shape,
    )


def tagged_mask(labels: sp.csr_matrix) -> np.ndarray:
    """Which documents carry at least one tag (the others teach the supervised models nothing)."""
    return np.diff(labels.tocsr().indptr) > 0


def carries(labels: sp.csr_matrix, row: int, tag: int) -> bool:
    """Whether document `row` of a label matrix carries `tag`."""
    return bool(tag in labels.indices[labels.indptr[row] : labels.indptr[row + 1]])


def chunks(n: int, size: int) -> list[slice]:
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def neighbour_scores(
    neighbours: np.ndarray, similarities: np.ndarray, labels: sp.csr_matrix, power: float
) -> sp.csr_matrix:
    """Label propagation: a tag's score is the similarity-weighted share of the neighbours that
    carry it (weights = similarity ** power), so it reads as a probability-like vote."""
    n, k = neighbours.shape
    weights = np.clip(similarities, 0, None) ** power
    totals = weights.sum(axis=1, keepdims=True)
    totals[totals == 0] = 1.0
    weights = weights / totals
    propagation = sp.csr_matrix(
        (weights.ravel().astype(np.float32), neighbours.ravel(), np.arange(0, n * k + 1, k)),
        shape=(n, labels.shape[0]),
    )
    return (propagation @ labels).tocsr()


def nearest(query: np.ndarray, index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows of `index` by inner product for each query row (best first)."""
    k = min(k, index.shape[0])
    sims = query @ index.T
    cols = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(sims, cols, axis=1)
    order = np.argsort(-values, axis=1)
    return np.take_along_axis(cols, order, axis=1), np.take_along_axis(values, order, axis=1)
