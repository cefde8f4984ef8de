"""The Grafana dashboard (the chart's files/grafana/vitrine-dashboard.json): a well-formed
dashboard for the Grafana sidecar, every query valid PromQL, and the panels the issue asks for.
Whether each metric and label it uses is really exported is the e2e contract test's job
(tests/e2e/test_metrics_contract.py)."""

from __future__ import annotations

from tests.deploy.observability import DASHBOARD_FILE, dashboard_panels, dashboard_usages, load_dashboard

# Panel title -> what the issue asks it to show. Pending panels (no metric exported yet) are
# listed in deploy/README.md instead (GPU utilisation).
REQUIRED_PANELS = {
    "Request rate by service": "request rate per service",
    "Request rate by method": "request rate per method",
    "Server error ratio by service": "error rate per service",
    "Server error ratio by method": "error rate per method",
    "Latency p50 / p95 / p99 by service": "latency percentiles per service",
    "Latency p95 by method": "latency percentiles per method",
    "Batch size p50 / p95": "embedder batch sizes",
    "Queue depth": "embedder queue depth",
    "Throughput (items embedded per second)": "embedder throughput",
    "CPU usage by pod": "CPU utilisation",
    "Tagger suggestion distribution: score p10 / p50 / p90": "tagger suggestion distribution",
    "Tagger acceptance rate (curators' feedback)": "tagger acceptance rate",
    "Tagger drift score": "tagger drift against the training distribution (issue #6)",
}


def test_dashboard_is_well_formed_for_the_sidecar() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "vitrine-overview" and dashboard["title"] == "Vitrine"
    assert "id" not in dashboard, "a provisioned dashboard must not carry a database id"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    nested = [p for row in dashboard["panels"] if row["type"] == "row" for p in row.get("panels", [])]
    ids = [p["id"] for p in dashboard["panels"] + nested]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"panel {panel['title']!r} overlaps another"
        occupied |= cells
    for panel in dashboard_panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
    assert DASHBOARD_FILE.read_text().endswith("\n")


def test_every_query_is_valid_promql_filtered_by_namespace() -> None:
    usages = dashboard_usages()  # parses every expression; a syntax error raises here
    assert len(usages) >= len(REQUIRED_PANELS)
    for usage in usages:
        if usage.where.startswith("variable"):
            continue
        for selector in usage.selectors:
            assert ("namespace", "=~", "$namespace") in selector.matchers, f"{usage.where}: {selector.metric}"
            if not selector.metric.startswith("vitrine_"):
                # Generic process metrics exist in every Python process: only the Vitrine services'
                # count, selected by component (job names differ per release).
                assert ("vitrine_component", "=~", "embedder|tagger|search") in selector.matchers, usage.where


def test_the_issues_panels_are_there() -> None:
    titles = {p["title"] for p in dashboard_panels()}
    missing = {title: why for title, why in REQUIRED_PANELS.items() if title not in titles}
    assert not missing, f"missing panels: {missing}"
