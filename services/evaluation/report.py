"""The evaluations' reports: the search evaluation's bars (issue #13) with their measured values,
and the markdown tables of metrics.md for the search and the tagger evaluations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vitrine.evaluation.metrics import SEARCH_METRICS

# Bars of issue #13.
FUSED_OVER_TFIDF = 1.3
TYPO_OVER_CLEAN = 0.8
EFFICIENTNET_FIGURES = {"image_artist": 0.064, "image_century_medium": 0.243}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def checks(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's bars, with the measured value and whether it is met."""
    out: list[dict[str, Any]] = []
    methods = metrics["methods"]
    fused, tfidf = methods.get("fused"), methods.get("tfidf")
    if fused and tfidf and fused["ndcg@12"] is not None and tfidf["ndcg@12"]:
        ratio = fused["ndcg@12"] / tfidf["ndcg@12"]
        out.append({"check": "fused nDCG@12 / tfidf nDCG@12", "value": ratio, "bar": f">= {FUSED_OVER_TFIDF}"})
        out[-1]["passed"] = ratio >= FUSED_OVER_TFIDF
    if fused and fused["ndcg@12"] and fused["ndcg@12_typo"] is not None:
        ratio = fused["ndcg@12_typo"] / fused["ndcg@12"]
        out.append(
            {
                "check": "fused nDCG@12 typo / clean",
                "value": ratio,
                "bar": f">= {TYPO_OVER_CLEAN}",
                "passed": ratio >= TYPO_OVER_CLEAN,
            }
        )
    rates = [fused[k] for k in ("zero_result_rate", "zero_result_rate_typo") if fused and fused[k] is not None]
    if rates:
        worst = max(rates)
        out.append(
            {"check": "fused zero-result rate (clean, typo)", "value": worst, "bar": "= 0", "passed": worst == 0}
        )
    for key, figure in EFFICIENTNET_FIGURES.items():
        part = metrics.get("recommend", {}).get(key)
        if part and part.get("best_score") is not None:
            out.append(
                {
                    "check": f"Recommend {key} (best-score)",
                    "value": part["best_score"],
                    "bar": f">= {figure} (EfficientNet-Lite0 figure)",
                    "passed": part["best_score"] >= figure,
                }
            )
    return out


def search_markdown(metrics: Mapping[str, Any]) -> str:
    info = metrics["info"]
    lines = [
        f"Search quality — {info['data']} ({info['index']['objects']} objects, subjects withheld), "
        f"text model {info['text_model']}; {info['queries']['clean']} queries, {info['queries']['typo']} typo variants",
        "",
        "| method | nDCG@12 | recall@100 | zero-result | nDCG@12 typo | zero-result typo |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in metrics["methods"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row[k]) for k in SEARCH_METRICS) + " |")
    recommend = metrics.get("recommend") or {}
    if recommend:
        # Every side ran the same protocol (vitrine.evaluation.protocols.recommend_quality).
        protocol = next(iter(recommend.values()))
        lines += [
            "",
            f"Recommend quality — share of the top {protocol['k']} in the liked objects' group "
            f"(like {protocol['likes']}, {protocol['trials']} seeded trials a group, macro-average)",
            "",
            "| side | groups | model | best-score (default) | mean vector | random |",
            "| --- | ---: | --- | ---: | ---: | ---: |",
        ]
        for name, part in recommend.items():
            lines.append(
                f"| {name} | {part['groups']} | {part.get('model', '')} | {_fmt(part['best_score'])} | "
                f"{_fmt(part['mean'])} | {_fmt(part['random'])} |"
            )
    if metrics.get("checks"):
        lines += ["", "| bar (issue #13) | value | bar | met |", "| --- | ---: | --- | --- |"]
        for check in metrics["checks"]:
            lines.append(
                f"| {check['check']} | {_fmt(check['value'])} | {check['bar']} | {'yes' if check['passed'] else 'NO'} |"
            )
    if metrics.get("notes"):
        lines += [""] + [f"- {note}" for note in metrics["notes"]]
    return "\n".join(lines) + "\n"


def tagger_table(methods: Mapping[str, Mapping[str, float]], without_turner: Mapping[str, Mapping[str, float]]) -> str:
    """The tagger evaluation's methods, best F1@5 first, with F1@5 on the objects not by Turner."""
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
