"""vitrine.evaluation.metrics: one definition of each figure, the tagger's contract and the
search evaluation's built from the same nDCG, precision and recall; and the file loads by its
path alone, as scripts/compare_annif.py loads it in Annif's environment."""

from __future__ import annotations

import importlib.util
import math

import pytest

from tests.conftest import ROOT
from vitrine.evaluation.metrics import (
    TAGGER_METRICS,
    f1,
    ndcg_at,
    precision_at,
    recall_at,
    tagger_metrics,
)


def test_ranking_figures() -> None:
    ranked = ["a", "x", "b", "y", "z"]
    assert precision_at(ranked, {"a", "b"}, 5) == pytest.approx(2 / 5)
    assert precision_at(["a"], {"a"}, 5) == pytest.approx(1 / 5)  # empty places count as misses
    assert recall_at(ranked, {"a", "b", "c"}, 2) == pytest.approx(1 / 3)
    assert recall_at(ranked, set(), 5) == 0.0
    assert f1(0.4, 2 / 3) == pytest.approx(2 * 0.4 * (2 / 3) / (0.4 + 2 / 3))
    assert f1(0.0, 0.0) == 0.0
    # Ideal over min(|relevant|, k): one relevant item at rank 1 is a perfect nDCG@10.
    assert ndcg_at(["a", "x"], {"a"}, 10) == 1.0
    assert ndcg_at(["x", "a"], {"a", "b"}, 10) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_tagger_contract() -> None:
    ranked = [["a", "b", "c", "d", "e", "f"], ["x", "y"], ["a"]]
    gold = [["a", "f", "g"], ["y"], []]  # the third document has no subject: not scored
    figures = tagger_metrics(ranked, gold, seen_in_training={"a", "y"}, vocabulary_size=20)
    assert set(TAGGER_METRICS) < set(figures) and figures["documents"] == 2
    p = [1 / 5, 1 / 5]
    r = [1 / 3, 1.0]
    assert figures["p@5"] == pytest.approx(sum(p) / 2)
    assert figures["r@5"] == pytest.approx(sum(r) / 2)
    assert figures["f1@5"] == pytest.approx(sum(f1(pi, ri) for pi, ri in zip(p, r, strict=True)) / 2)
    d = [1 / math.log2(k + 2) for k in range(10)]
    assert figures["ndcg@10"] == pytest.approx(((d[0] + d[5]) / sum(d[:3]) + d[1] / d[0]) / 2)
    # Unseen gold tags: f (found at rank 6, inside the top 10) and g (not found).
    assert figures["unseen_recall@10"] == pytest.approx(1 / 2)
    # Suggested in a top 5: a b c d e x y (f is sixth).
    assert figures["coverage"] == pytest.approx(7 / 20)


def test_no_document_with_subjects_scores_zero() -> None:
    figures = tagger_metrics([["a"]], [[]], set(), 0)
    assert figures == {name: 0.0 for name in TAGGER_METRICS} | {"documents": 0}


def test_the_module_loads_by_its_path_alone() -> None:
    path = ROOT / "services" / "evaluation" / "metrics.py"
    spec = importlib.util.spec_from_file_location("metrics_by_path", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.tagger_metrics([["a", "b"]], [["b"]], {"b"}, 4)["ndcg@10"] == pytest.approx(1 / math.log2(3))
