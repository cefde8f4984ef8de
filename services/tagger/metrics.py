"""The evaluation contract of the tagging issue, exactly: over documents with at least one
subject; P@5, R@5, F1@5 per document then averaged; NDCG@10 with binary relevance and the ideal
over min(|gold|, 10); unseen_recall@10 = share of (document, gold tag absent from training)
pairs found in the top 10; coverage = share of the vocabulary ever suggested in a top 5."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRIC_NAMES = ("p@5", "r@5", "f1@5", "ndcg@10", "unseen_recall@10", "coverage")
_DISCOUNTS = 1.0 / np.log2(np.arange(2, 12))


def evaluate(
    ranked: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], seen_in_training: set[str], vocabulary_size: int
) -> dict[str, float]:
    """`ranked[i]`: document i's suggestions, best first; `gold[i]`: its subjects."""
    p5, r5, f5, ndcg = [], [], [], []
    unseen_pairs = unseen_found = 0
    suggested: set[str] = set()
    for suggestions, subjects in zip(ranked, gold, strict=True):
        truth = set(subjects)
        if not truth:
            continue
        top5 = list(suggestions[:5])
        top10 = list(suggestions[:10])
        suggested.update(top5)
        hits5 = sum(t in truth for t in top5)
        precision, recall = hits5 / 5, hits5 / len(truth)
        p5.append(precision)
        r5.append(recall)
        f5.append(2 * precision * recall / (precision + recall) if hits5 else 0.0)
        gains = np.array([t in truth for t in top10], dtype=float)
        dcg = float((gains * _DISCOUNTS[: len(gains)]).sum())
        ideal = float(_DISCOUNTS[: min(len(truth), 10)].sum())
        ndcg.append(dcg / ideal)
        unseen = truth - seen_in_training
        unseen_pairs += len(unseen)
        unseen_found += len(unseen & set(top10))
    documents = len(p5)
    return {
        "p@5": mean(p5),
        "r@5": mean(r5),
        "f1@5": mean(f5),
        "ndcg@10": mean(ndcg),
        "unseen_recall@10": unseen_found / unseen_pairs if unseen_pairs else 0.0,
        "coverage": len(suggested) / vocabulary_size if vocabulary_size else 0.0,
        "documents": documents,
    }


def mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def markdown_table(methods: dict[str, dict[str, float]], without_turner: dict[str, dict[str, float]]) -> str:
    lines = [
        "| method | P@5 | R@5 | F1@5 | NDCG@10 | unseen R@10 | coverage | F1@5 without Turner |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in sorted(methods.items(), key=lambda kv: -kv[1]["f1@5"]):
        other = without_turner.get(name, {}).get("f1@5", float("nan"))
        lines.append(
            f"| {name} | {m['p@5']:.3f} | {m['r@5']:.3f} | {m['f1@5']:.3f} | {m['ndcg@10']:.3f} | "
            f"{m['unseen_recall@10']:.3f} | {m['coverage']:.3f} | {other:.3f} |"
        )
    return "\n".join(lines)
