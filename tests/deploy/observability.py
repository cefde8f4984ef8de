"""What the alert rules and the Grafana dashboard ask Prometheus for, read from the files the chart
ships: every PromQL expression, parsed (promql-parser), as the metric names and label names it
uses. Shared by the static deploy tests and the e2e metrics contract test."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "vitrine"
RULES_FILE = CHART / "files" / "prometheus" / "vitrine-rules.yaml"
# promtool tests of the rules: evaluated every minute, and (alerts over days of data) every hour.
RULES_TEST_FILES = (
    ROOT / "deploy" / "prometheus" / "vitrine-rules.test.yaml",
    ROOT / "deploy" / "prometheus" / "vitrine-rules.hourly.test.yaml",
)
SCRAPE_EXAMPLE = CHART / "files" / "prometheus" / "scrape-config.example.yaml"
DASHBOARD_FILE = CHART / "files" / "grafana" / "vitrine-dashboard.json"

# Labels Prometheus attaches to every scraped series (the ServiceMonitors and the example scrape
# config set job, vitrine_component, namespace and pod; instance is Prometheus' own). A query may
# use them on any metric.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "vitrine_component"})
# Series Prometheus makes itself for each target rather than scraping them.
SYNTHETIC_METRICS = {"up": frozenset()}
# kube-state-metrics series two optional alerts use (a typical kube-prometheus-stack has them), with
# the labels kube-state-metrics gives them: not exported by Vitrine, so the contract test cannot see them.
EXTERNAL_METRICS = {
    "kube_deployment_spec_replicas": frozenset({"deployment"}),
    "kube_job_failed": frozenset({"job_name", "condition"}),
}
# The base of every alert's runbook_url (deploy/README.md on the project's site); the chart's
# PrometheusRule replaces it with metrics.runbookBaseUrl.
RUNBOOK_BASE = "https://github.com/vitrine-museum/vitrine/blob/main/deploy/README.md"
# Grafana's built-in interval variables, replaced by a concrete range so the expression parses.
GRAFANA_RANGES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


@dataclass(frozen=True)
class Selector:
    """One vector selector: `metric{label op "value", ...}`."""

    metric: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value), op one of = != =~ !~

    @property
    def label_names(self) -> set[str]:
        return {name for name, _, _ in self.matchers}


@dataclass
class Usage:
    """What one expression uses: its selectors, and the labels it groups or matches by."""

    where: str
    expr: str
    selectors: list[Selector] = field(default_factory=list)
    # (labels, metrics of the selectors beneath the aggregation or binary operation)
    groupings: list[tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)


_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def _selectors_under(node: Any) -> list[Selector]:
    found: list[Selector] = []

    def visit(n: Any) -> None:
        if isinstance(n, promql_parser.VectorSelector):
            matchers = tuple(
                (m.name, _OPS[str(m.op).rsplit(".", 1)[-1]], m.value)
                for m in n.matchers.matchers
                if m.name != "__name__"
            )
            found.append(Selector(n.name, matchers))

    promql_parser.walk(node, visit)
    return found


def analyse(expr: str, where: str) -> Usage:
    """Parse `expr` (Grafana variables replaced) and list what it uses; raises on a syntax error."""
    text = expr
    for variable, value in GRAFANA_RANGES.items():
        text = text.replace(variable, value)
    usage = Usage(where, expr)
    tree = promql_parser.parse(text)
    usage.selectors = _selectors_under(tree)

    def visit(n: Any) -> None:
        labels: list[str] = []
        if isinstance(n, promql_parser.AggregateExpr) and n.modifier is not None:
            labels = list(n.modifier.labels)
        elif isinstance(n, promql_parser.BinaryExpr) and n.modifier is not None:
            if n.modifier.matching is not None:
                labels += list(n.modifier.matching.labels)
            labels += list(n.modifier.group_labels or [])
        if labels:
            metrics = tuple(sorted({s.metric for s in _selectors_under(n)}))
            usage.groupings.append((tuple(labels), metrics))

    promql_parser.walk(tree, visit)
    return usage


def load_rules() -> dict[str, Any]:
    return yaml.safe_load(RULES_FILE.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_rules()["groups"] for rule in group["rules"] if "alert" in rule]


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text())


def dashboard_panels(dashboard: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    dashboard = dashboard or load_dashboard()
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            panels.extend(panel.get("panels", []))
        else:
            panels.append(panel)
    return panels


_LABEL_VALUES = re.compile(r"^label_values\(\s*(?P<metric>[a-zA-Z_:][\w:]*)\s*,\s*(?P<label>\w+)\s*\)$")


def rule_usages() -> list[Usage]:
    return [analyse(rule["expr"], f"alert {rule['alert']}") for rule in alert_rules()]


def dashboard_usages(dashboard: dict[str, Any] | None = None) -> list[Usage]:
    """Every panel target and every query variable (label_values(metric, label)) of the dashboard."""
    dashboard = dashboard or load_dashboard()
    usages = [
        analyse(target["expr"], f"panel {panel['title']!r} target {target['refId']}")
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = _LABEL_VALUES.match(query.strip())
        assert match, f"variable {variable['name']}: only label_values(metric, label) queries are supported"
        usage = Usage(f"variable {variable['name']}", query, [Selector(match["metric"], ())])
        usage.groupings.append(((match["label"],), (match["metric"],)))
        usages.append(usage)
    return usages


_TEMPLATE_LABEL = re.compile(r"\$labels\.(\w+)")


def annotation_labels(rule: dict[str, Any]) -> set[str]:
    """Labels an alert's annotations print with {{ $labels.x }}."""
    return {m for text in rule.get("annotations", {}).values() for m in _TEMPLATE_LABEL.findall(text)}


def output_labels(usage: Usage, rule: dict[str, Any] | None = None) -> set[str]:
    """An upper bound of the labels an alert's result can carry: the labels its outermost
    aggregation keeps ("*": any, when there is none), plus the rule's own static labels."""
    static = set((rule or {}).get("labels", {}))
    tree = promql_parser.parse(usage.expr)
    while isinstance(tree, promql_parser.BinaryExpr | promql_parser.ParenExpr):
        tree = tree.expr if isinstance(tree, promql_parser.ParenExpr) else tree.lhs
    if isinstance(tree, promql_parser.Call) and tree.func.name == "histogram_quantile":
        tree = tree.args[1]
    by = isinstance(tree, promql_parser.AggregateExpr) and tree.modifier is not None
    if by and str(tree.modifier.type).endswith("By"):
        return set(tree.modifier.labels) | static
    if isinstance(tree, promql_parser.Call) and tree.func.name == "absent":
        # absent() has only the labels of its selector's equality matchers.
        return {name for s in _selectors_under(tree) for name, op, _ in s.matchers if op == "="} | static
    return {"*"}
