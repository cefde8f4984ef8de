"""The alert rules (the chart's files/prometheus/vitrine-rules.yaml): `promtool check rules`,
`promtool test rules` with firing and non-firing series for every alert, the alerts the issues
ask for, a runbook section of deploy/README.md behind every alert's runbook_url (whose base the
chart can change), and the example scrape config for Prometheus without the Operator."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.chart import VALUE_SETS, find, render
from tests.deploy.observability import (
    ROOT,
    RULES_FILE,
    RULES_TEST_FILES,
    RUNBOOK_BASE,
    SCRAPE_EXAMPLE,
    alert_rules,
    analyse,
    annotation_labels,
    output_labels,
)

PROMTOOL = shutil.which("promtool")

REQUIRED_ALERTS = {
    "VitrineTargetDown",  # service down
    "VitrineServiceNotReady",  # not ready
    "VitrineHighErrorRate",  # error rate per service
    "VitrineExplorerErrors",  # the explorer's 5xx rate (issue #14)
    "VitrineHighLatency",  # p95 latency
    "VitrineEmbedderHighLatency",
    "VitrineEmbedderQueueBacklog",  # embedder queue saturation
    "VitrineEmbedderQueueNearlyFull",
    "VitrineTaggerAcceptanceDrop",  # tagger acceptance rate drop (issue #6)
    "VitrineTaggerDrift",  # tagger drift (issue #6)
    # issue #23: targets that vanish, the failure series exported at 0, a tagger without a model,
    # failed training Jobs
    "VitrineTargetMissing",
    "VitrineExplorerTargetMissing",
    "VitrineTargetsAbsent",
    "VitrineSearchIndexBuildFailed",
    "VitrineSearchDegraded",
    "VitrineSearchMachineTagsUnavailable",
    "VitrineSearchMachineTagsRejected",
    "VitrineTaggerNoModel",
    "VitrineTaggerTrainingFailed",
}
COMPONENTS = ("embedder", "tagger", "search", "explorer")


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool is missing: `make tools` installs it"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_test_rules() -> None:
    (folder,) = {path.parent for path in RULES_TEST_FILES}
    result = promtool("test", "rules", *(path.name for path in RULES_TEST_FILES), cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULES_TEST_FILES), result.stdout


def test_required_alerts_exist_with_severity_and_text() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert set(rules) == REQUIRED_ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert re.fullmatch(r"\d+m", rule["for"]), f"{name} fires on a blip"


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests: list[dict[str, Any]] = []
    for path in RULES_TEST_FILES:
        content = yaml.safe_load(path.read_text())
        assert content["rule_files"] == ["../helm/vitrine/files/prometheus/vitrine-rules.yaml"], path.name
        tests += content["tests"]
    firing: set[str] = set()
    silent: set[str] = set()
    for test in tests:
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else silent).add(case["alertname"])
    assert firing == REQUIRED_ALERTS, f"no firing case for {REQUIRED_ALERTS - firing}"
    assert silent == REQUIRED_ALERTS, f"no non-firing case for {REQUIRED_ALERTS - silent}"


def test_annotations_print_only_labels_the_alert_carries() -> None:
    for rule in alert_rules():
        kept = output_labels(analyse(rule["expr"], rule["alert"]), rule)
        if "*" not in kept:
            assert annotation_labels(rule) <= kept, f"{rule['alert']} prints labels its expression drops"


def _github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings (lower case, punctuation dropped, spaces to -)."""
    anchors = set()
    for line in markdown.splitlines():
        if match := re.match(r"^#{1,6} (.+)$", line):
            anchors.add(re.sub(r"[^\w\- ]", "", match[1].strip().lower()).replace(" ", "-"))
    return anchors


def test_every_alert_links_to_its_runbook_section() -> None:
    anchors = _github_anchors((ROOT / "deploy" / "README.md").read_text())
    for rule in alert_rules():
        url = rule["annotations"].get("runbook_url", "")
        assert url == f"{RUNBOOK_BASE}#{rule['alert'].lower()}", f"{rule['alert']}: runbook_url {url!r}"
        assert rule["alert"].lower() in anchors, f"deploy/README.md has no section for {rule['alert']}"


def test_the_chart_points_runbooks_at_the_configured_page() -> None:
    base = "https://wiki.museum.example/ops/vitrine-runbooks"
    values = {**VALUE_SETS["cpu-only"], "metrics": {**VALUE_SETS["cpu-only"]["metrics"], "runbookBaseUrl": base + "/"}}
    (rule,) = find(render(values), "PrometheusRule")
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert {r["annotations"]["runbook_url"] for r in alerts} == {f"{base}#{r['alert'].lower()}" for r in alerts}
    # Nothing else changed: the same rules as the file with the URL put back.
    shipped = [r for group in yaml.safe_load(RULES_FILE.read_text())["groups"] for r in group["rules"]]
    for r in alerts:
        r["annotations"]["runbook_url"] = r["annotations"]["runbook_url"].replace(base, RUNBOOK_BASE)
    assert alerts == shipped


def _static_copy(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The example jobs with kubernetes_sd_configs swapped for static targets: Debian's promtool is
    built without Kubernetes service discovery and rejects the field; the rest is checked as is."""
    copies = []
    for job in jobs:
        job = dict(job)
        assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
        job["static_configs"] = [{"targets": ["127.0.0.1:9101"]}]
        copies.append(job)
    return copies


def test_example_scrape_config_is_valid(tmp_path: Path) -> None:
    jobs = yaml.safe_load(SCRAPE_EXAMPLE.read_text())
    config = {
        "global": {"scrape_interval": "30s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": _static_copy(jobs),
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus' relabelling for the two actions the example uses (keep, replace); None: dropped."""
    labels = dict(labels)
    for rule in rules:
        value = rule.get("separator", ";").join(labels.get(name, "") for name in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep":
            if not match:
                return None
        elif action == "replace":
            if match:
                labels[rule["target_label"]] = match.expand(rule.get("replacement", "$1").replace("$1", r"\1"))
        else:
            raise AssertionError(f"unexpected action {action}")
    return labels


def test_example_scrape_config_labels_pods_like_the_service_monitors() -> None:
    (job,) = yaml.safe_load(SCRAPE_EXAMPLE.read_text())
    assert job["honor_labels"] is True, "vitrine_ready's own `service` label must win"
    rules = job["relabel_configs"]

    def pod(component: str, port: str = "metrics", kind: str = "ReplicaSet", release: str = "museum") -> dict[str, str]:
        controller = f"{release}-vitrine-{component}" + ("-5d8f9c7b6" if kind == "ReplicaSet" else "")
        return {
            "job": "vitrine",  # the job_name, before relabelling
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": "vitrine",
            "__meta_kubernetes_pod_label_app_kubernetes_io_component": component,
            "__meta_kubernetes_pod_container_port_name": port,
            "__meta_kubernetes_pod_controller_kind": kind,
            "__meta_kubernetes_pod_controller_name": controller,
            "__meta_kubernetes_namespace": "collections",
            "__meta_kubernetes_pod_name": f"{controller}-x2x7q" if kind == "ReplicaSet" else f"{controller}-0",
        }

    for component in COMPONENTS:
        kept = relabel(rules, pod(component))
        assert kept is not None, component
        # The rules' labels: the component, and the workload's name as a job unique per release.
        assert kept["vitrine_component"] == component
        assert kept["job"] == f"museum-vitrine-{component}"
        assert kept["namespace"] == "collections" and kept["pod"].startswith("museum-vitrine-")
        assert relabel(rules, pod(component, port="grpc")) is None, "only the metrics port"
        other = relabel(rules, pod(component, release="archive"))
        assert other is not None and other["job"] == f"archive-vitrine-{component}", "two releases, two jobs"
    search = relabel(rules, pod("search", kind="StatefulSet"))  # the embedded store's StatefulSet
    assert search is not None and search["job"] == "museum-vitrine-search"
    assert relabel(rules, pod("backup")) is None, "not a Vitrine service"
    assert relabel(rules, {**pod("search"), "__meta_kubernetes_pod_label_app_kubernetes_io_name": "qdrant"}) is None
