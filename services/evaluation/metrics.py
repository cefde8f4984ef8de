"""Every figure the evaluations report, in one place: binary-relevance nDCG@k, recall@k,
precision@k and F1, and the two contracts built from them, the search evaluation's per-method
figures (issue #13) and the tagger's (the tagging issue).

Only the standard library and numpy: scripts/compare_annif.py loads this file by its path in
Annif's virtual environment, where the vitrine package is not installed, so that Annif's
suggestions are scored by exactly these definitions. A ranking lists each item once (the
services' answers and the tagger's suggestions do)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

# The search evaluation: nDCG over the first 12 hits (a page of the explorer), recall over 100.
NDCG_K = 12
RECALL_K = 100
SEARCH_METRICS = ("ndcg@12", "recall@100", "zero_result_rate", "ndcg@12_typo", "zero_result_rate_typo")
# The tagger's contract: over documents with at least one subject; P@5, R@5, F1@5 per document
# then averaged; nDCG@10; unseen_recall@10 = share of (document, gold tag absent from training)
# pairs found in the top 10; coverage = share of the vocabulary ever suggested in a top 5.
TAGGER_METRICS = ("p@5", "r@5", "f1@5", "ndcg@10", "unseen_recall@10", "coverage")
TAGGER_TOP = 5
TAGGER_NDCG_K = 10


def ndcg_at(ranked: Sequence[str], relevant: Iterable[str], k: int = NDCG_K) -> float:
    """Binary-relevance nDCG@k; the ideal ranking has min(|relevant|, k) relevant results."""
    relevant = set(relevant)
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return dcg / ideal


def found_at(ranked: Sequence[str], relevant: Iterable[str], k: int) -> int:
    """How many of the relevant items are in the top k."""
    return len(set(relevant).intersection(ranked[:k]))


def recall_at(ranked: Sequence[str], relevant: Iterable[str], k: int = RECALL_K) -> float:
    relevant = set(relevant)
    if not relevant:
        return 0.0
    return found_at(ranked, relevant, k) / len(relevant)


def precision_at(ranked: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """Share of the k places holding a relevant item (a shorter ranking loses the empty places)."""
    return found_at(ranked, relevant, k) / k


def f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def mean(values: Sequence[float], empty: float | None = None) -> float | None:
    """The mean; `empty` when there is nothing to average."""
    return float(np.mean(values)) if values else empty


class JudgedQuery(Protocol):
    """A search evaluation query as the figures need it (vitrine.evaluation.queries.Query)."""

    @property
    def relevant(self) -> tuple[str, ...]: ...

    @property
    def typo_of(self) -> str | None: ...


def method_metrics(queries: Sequence[JudgedQuery], results: Sequence[Sequence[str]]) -> dict[str, float | None]:
    """The five figures of one search method: clean queries (no `typo_of`) and typo queries apart.
    A figure is None when there is no query of its kind."""
    clean = [(q, r) for q, r in zip(queries, results, strict=True) if q.typo_of is None]
    typo = [(q, r) for q, r in zip(queries, results, strict=True) if q.typo_of is not None]
    return {
        "ndcg@12": mean([ndcg_at(r, q.relevant) for q, r in clean]),
        "recall@100": mean([recall_at(r, q.relevant) for q, r in clean]),
        "zero_result_rate": mean([float(not r) for _, r in clean]),
        "ndcg@12_typo": mean([ndcg_at(r, q.relevant) for q, r in typo]),
        "zero_result_rate_typo": mean([float(not r) for _, r in typo]),
    }


def tagger_metrics(
    ranked: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], seen_in_training: set[str], vocabulary_size: int
) -> dict[str, float]:
    """The tagger's contract (TAGGER_METRICS, and the number of documents scored). `ranked[i]`:
    document i's suggestions, best first; `gold[i]`: its subjects."""
    p5: list[float] = []
    r5: list[float] = []
    f5: list[float] = []
    ndcg: list[float] = []
    unseen_pairs = unseen_found = 0
    suggested: set[str] = set()
    for suggestions, subjects in zip(ranked, gold, strict=True):
        truth = set(subjects)
        if not truth:
            continue
        suggested.update(suggestions[:TAGGER_TOP])
        precision = precision_at(suggestions, truth, TAGGER_TOP)
        recall = recall_at(suggestions, truth, TAGGER_TOP)
        p5.append(precision)
        r5.append(recall)
        f5.append(f1(precision, recall))
        ndcg.append(ndcg_at(suggestions, truth, TAGGER_NDCG_K))
        unseen = truth - seen_in_training
        unseen_pairs += len(unseen)
        unseen_found += found_at(suggestions, unseen, TAGGER_NDCG_K)
    return {
        "p@5": mean(p5, 0.0),
        "r@5": mean(r5, 0.0),
        "f1@5": mean(f5, 0.0),
        "ndcg@10": mean(ndcg, 0.0),
        "unseen_recall@10": unseen_found / unseen_pairs if unseen_pairs else 0.0,
        "coverage": len(suggested) / vocabulary_size if vocabulary_size else 0.0,
        "documents": len(p5),
    }
