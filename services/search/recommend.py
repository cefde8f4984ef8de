"""Like-based recommendation: more like the liked objects, away from the disliked ones.

Two strategies over the same stored vectors:
- MEAN: one query vector, the mean of the liked vectors minus a share of the disliked mean (what
  the notebook prototype did); good when the likes share one theme.
- BEST_SCORE: Qdrant's best-score recommendation: a candidate counts by its best similarity to any
  liked example, pushed down when closer to a disliked one; it keeps several themes apart.
`diversify` clusters the likes (a few k-means steps on the unit sphere) and fills the page from
each cluster in turn, so one dominant theme cannot crowd out the others.
The session is the client's: it sends the seen ids every time, and they are never returned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vitrine.search.store import ScoredObject

DISLIKE_WEIGHT = 0.5
MAX_CLUSTERS = 3
# Likes whose cluster centres are more similar than this are one theme, not two.
SAME_THEME = 0.9


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def mean_query(liked: np.ndarray, disliked: np.ndarray) -> np.ndarray:
    """The MEAN strategy's query: the liked mean, moved away from the disliked mean."""
    query = unit(liked).mean(axis=0)
    if len(disliked):
        query = query - DISLIKE_WEIGHT * unit(disliked).mean(axis=0)
    return unit(query)


def cluster_likes(liked: np.ndarray, max_clusters: int = MAX_CLUSTERS, steps: int = 10) -> list[np.ndarray]:
    """Indices of the liked rows, grouped by theme (deterministic: farthest-point start)."""
    vectors = unit(np.asarray(liked, dtype=np.float32))
    k = min(max_clusters, len(vectors))
    centres = [0]
    while len(centres) < k:
        similarity = (vectors @ vectors[centres].T).max(axis=1)
        farthest = int(similarity.argmin())
        if similarity[farthest] > SAME_THEME:
            break  # everything left is close to a centre already
        centres.append(farthest)
    centre_vectors = vectors[centres]
    for _ in range(steps):
        assignment = (vectors @ centre_vectors.T).argmax(axis=1)
        centre_vectors = unit(np.stack([vectors[assignment == c].mean(axis=0) for c in range(len(centres))]))
    assignment = (vectors @ centre_vectors.T).argmax(axis=1)
    return [np.flatnonzero(assignment == c) for c in range(len(centres)) if (assignment == c).any()]


def interleave(ranked_lists: Sequence[Sequence[ScoredObject]], k: int) -> list[ScoredObject]:
    """Round-robin over the lists, skipping objects already taken, until `k` are taken."""
    taken: list[ScoredObject] = []
    seen: set[str] = set()
    for position in range(max((len(r) for r in ranked_lists), default=0)):
        for ranked in ranked_lists:
            if position < len(ranked) and ranked[position].id not in seen:
                seen.add(ranked[position].id)
                taken.append(ranked[position])
                if len(taken) == k:
                    return taken
    return taken
