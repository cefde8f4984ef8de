"""Evaluating a trained model version on a file of tagged objects (the dev split by default):
the ensemble, each base model and the two baselines, overall and without Turner, with the
issue's metric definitions (vitrine.evaluation.metrics); plus the combiner's reliability curve
(calibration)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.evaluation.metrics import TAGGER_METRICS, tagger_metrics
from vitrine.evaluation.report import tagger_table
from vitrine.tagger.data import TURNER, Document
from vitrine.tagger.embeddings import EmbeddingCache, Encoders, embed_objects
from vitrine.tagger.model import TaggerModel

TOP = 10
RELIABILITY_BINS = 10


class EvaluationError(ValueError):
    pass


def training_ids(model: TaggerModel) -> set[str]:
    path = model.directory / model.meta.get("training_ids_file", "training_ids.txt")
    return set(path.read_text().split()) if path.exists() else set()


def evaluate_model(
    model: TaggerModel,
    docs: Sequence[Document],
    encoders: Encoders,
    cache: EmbeddingCache | None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    overlap = training_ids(model) & {d.id for d in docs}
    if overlap:
        raise EvaluationError(
            f"{len(overlap)} of the objects to evaluate were in this model's training data "
            f"(e.g. {sorted(overlap)[:3]}): evaluate on objects the model never saw"
        )
    objects = [d.obj for d in docs]
    dimension = model.context.tag_vectors.shape[1]
    inputs = model.inputs(objects, embed_objects(objects, model.text_model, dimension, encoders, cache))
    ranked = model.rank(inputs)
    names = model.vocabulary.terms
    rankings: dict[str, list[list[str]]] = {"ensemble": []}
    for doc in range(len(docs)):
        order, _ = ranked.ranking(doc)
        rankings["ensemble"].append([names[t].subject for t in ranked.candidates.tags[order[:TOP]]])
    outputs = {**ranked.outputs, **model.base_outputs(inputs, ("most_frequent",))}
    for name, scores in outputs.items():
        rows = []
        for doc in range(len(docs)):
            start, end = scores.indptr[doc], scores.indptr[doc + 1]
            order = np.argsort(-scores.data[start:end], kind="stable")[:TOP]
            rows.append([names[t].subject for t in scores.indices[start:end][order]])
        rankings[name] = rows
    seen = {names[t].subject for t in np.flatnonzero(model.tag_counts > 0)}
    gold = [d.subjects for d in docs]
    not_turner = [i for i, d in enumerate(docs) if d.obj.artist != TURNER]
    size = len(model.vocabulary)
    metrics: dict[str, Any] = {"methods": {}, "without_turner": {"methods": {}}}
    for name, rows in rankings.items():
        metrics["methods"][name] = tagger_metrics(rows, gold, seen, size)
        metrics["without_turner"]["methods"][name] = tagger_metrics(
            [rows[i] for i in not_turner], [gold[i] for i in not_turner], seen, size
        )
    metrics["reliability"] = reliability(ranked, docs, model)
    metrics["model_version"] = model.version
    metrics["documents"] = len(docs)
    return metrics


def reliability(ranked: Any, docs: Sequence[Document], model: TaggerModel) -> dict[str, Any]:
    """Mean predicted probability vs observed share of true tags, in probability bins, over
    every candidate the combiner scored; and the expected calibration error."""
    gold = [set(d.subjects) for d in docs]
    names = model.vocabulary.terms
    truth = np.array(
        [names[t].subject in gold[d] for d, t in zip(ranked.candidates.docs, ranked.candidates.tags, strict=True)]
    )
    tagged = np.array([bool(gold[d]) for d in ranked.candidates.docs])
    p, y = ranked.probabilities[tagged], truth[tagged]
    bins = np.minimum((p * RELIABILITY_BINS).astype(int), RELIABILITY_BINS - 1)
    rows, ece = [], 0.0
    for b in range(RELIABILITY_BINS):
        mask = bins == b
        if not mask.any():
            continue
        predicted, observed = float(p[mask].mean()), float(y[mask].mean())
        rows.append(
            {
                "bin": f"{b / RELIABILITY_BINS:.1f}-{(b + 1) / RELIABILITY_BINS:.1f}",
                "count": int(mask.sum()),
                "predicted": round(predicted, 4),
                "observed": round(observed, 4),
            }
        )
        ece += mask.sum() / len(p) * abs(predicted - observed)
    return {"bins": rows, "expected_calibration_error": round(float(ece), 4)}


def write_report(metrics: dict[str, Any], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    table = tagger_table(metrics["methods"], metrics["without_turner"]["methods"])
    lines = [table, "", f"expected calibration error: {metrics['reliability']['expected_calibration_error']}"]
    (out / "metrics.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def summary_for_meta(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        name: {k: round(v, 4) for k, v in m.items() if k in TAGGER_METRICS} for name, m in metrics["methods"].items()
    }
