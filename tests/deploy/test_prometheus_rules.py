"""The alert rules (the chart's files/prometheus/vitrine-rules.yaml): `promtool check rules`,
`promtool test rules` with firing and non-firing series for every alert, the alerts the issue
asks for, and the example scrape config for Prometheus without the Operator."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.observability import (
    RULES_FILE,
    RULES_TEST_FILE,
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
}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool is missing: `make tools` installs it"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_test_rules() -> None:
    result = promtool("test", "rules", RULES_TEST_FILE.name, cwd=RULES_TEST_FILE.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_required_alerts_exist_with_severity_and_text() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert set(rules) == REQUIRED_ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert re.fullmatch(r"\d+m", rule["for"]), f"{name} fires on a blip"


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests: list[dict[str, Any]] = yaml.safe_load(RULES_TEST_FILE.read_text())["tests"]
    assert yaml.safe_load(RULES_TEST_FILE.read_text())["rule_files"] == [
        "../helm/vitrine/files/prometheus/vitrine-rules.yaml"
    ]
    firing: set[str] = set()
    silent: set[str] = set()
    for test in tests:
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else silent).add(case["alertname"])
    assert firing == REQUIRED_ALERTS, f"no firing case for {REQUIRED_ALERTS - firing}"
    assert silent == REQUIRED_ALERTS, f"no non-firing case for {REQUIRED_ALERTS - silent}"


def test_annotations_print_only_labels_the_alert_carries() -> None:
    for rule in alert_rules():
        kept = output_labels(analyse(rule["expr"], rule["alert"]))
        if "*" not in kept:
            assert annotation_labels(rule) <= kept, f"{rule['alert']} prints labels its expression drops"


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


def test_example_scrape_config_finds_the_charts_pods_with_the_rules_job_names() -> None:
    jobs = {job["job_name"]: job for job in yaml.safe_load(SCRAPE_EXAMPLE.read_text())}
    assert set(jobs) == {"vitrine-embedder", "vitrine-tagger", "vitrine-search", "vitrine-explorer"}

    def pod(component: str, port: str) -> dict[str, str]:
        return {
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": "vitrine",
            "__meta_kubernetes_pod_label_app_kubernetes_io_component": component,
            "__meta_kubernetes_pod_container_port_name": port,
            "__meta_kubernetes_namespace": "collections",
            "__meta_kubernetes_pod_name": f"museum-vitrine-{component}-0",
        }

    for name, job in jobs.items():
        assert job["honor_labels"] is True, "vitrine_ready's own `service` label must win"
        component = name.removeprefix("vitrine-")
        kept = relabel(job["relabel_configs"], pod(component, "metrics"))
        assert kept is not None and kept["namespace"] == "collections" and kept["pod"].startswith("museum-")
        assert relabel(job["relabel_configs"], pod(component, "grpc")) is None, "only the metrics port"
        other = "tagger" if component != "tagger" else "search"
        assert relabel(job["relabel_configs"], pod(other, "metrics")) is None, "one component per job"
