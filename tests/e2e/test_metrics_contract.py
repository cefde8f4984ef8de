"""The metrics contract between the running services and what operators watch: every metric and
label that the alert rules and the Grafana dashboard use (the files the Helm chart ships) is really
exported by the running embedder, tagger, search and explorer, and each /metrics passes `promtool check
metrics`. A panel or alert on a metric nobody exports fails here.

The services are exercised first (every model and modality, successes and errors), because
prometheus_client only exports a labelled series once it has been observed."""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.observability import (
    EXTERNAL_METRICS,
    SYNTHETIC_METRICS,
    TARGET_LABELS,
    Usage,
    alert_rules,
    analyse,
    annotation_labels,
    dashboard_usages,
    rule_usages,
)
from tests.e2e.conftest import DEMO_OBJECT, SHARED_DATA, System
from tests.servers import ServiceProcess
from vitrine.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
    tagger_pb2,
    tagger_pb2_grpc,
)

SERVICES = ("embedder", "tagger", "search")
SCRAPED = (*SERVICES, "explorer")  # the explorer speaks HTTP: no gRPC metrics, its own HTTP ones
COMMON_METRICS = (
    "vitrine_grpc_requests_total",
    "vitrine_grpc_request_duration_seconds_bucket",
    "vitrine_grpc_in_flight_requests",
    "vitrine_ready",
)


@dataclass
class Exported:
    """Sample name -> label names, and label -> values seen, over one or more scrapes."""

    labels: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    values: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.labels[sample.name] |= set(sample.labels)
                for label, value in sample.labels.items():
                    self.values[(sample.name, label)].add(value)


def exercise(system: System) -> None:
    """One call of each kind, including failures, so every labelled series exists."""
    image = (SHARED_DATA / "paintings" / "images" / "artic-144969.jpg").read_bytes()
    with grpc.insecure_channel(system.embedder.address) as channel:
        stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
        stub.ListModels(embedder_pb2.ListModelsRequest(), timeout=60)
        stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="mpnet", texts=["a ship in a storm"]), timeout=120)
        images = [common_pb2.Image(data=image)]
        stub.EmbedImages(embedder_pb2.EmbedImagesRequest(model="efficientnet-lite0", images=images), timeout=120)
        with pytest.raises(grpc.RpcError):
            stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="no-such-model", texts=["x"]), timeout=60)
    with grpc.insecure_channel(system.tagger.address) as channel:
        stub = tagger_pb2_grpc.TaggerServiceStub(channel)
        stub.GetTaggerInfo(tagger_pb2.GetTaggerInfoRequest(), timeout=60)
        with pytest.raises(grpc.RpcError):  # bad input: an error code
            stub.SuggestTags(tagger_pb2.SuggestTagsRequest(object=common_pb2.CollectionObject(id="x")), timeout=60)
        ship = common_pb2.CollectionObject(id="x", title="A sailing ship at sea")
        assert stub.SuggestTags(tagger_pb2.SuggestTagsRequest(object=ship, threshold=0.01), timeout=60).suggestions
    with grpc.insecure_channel(system.search.address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        stub.Search(search_pb2.SearchRequest(query="ship in a storm at sea"), timeout=120)
        # A filter nothing matches: a zero-result answer, which the zero-result panel counts.
        nobody = search_pb2.Filter(artists=["No Such Artist"])
        assert not stub.Search(search_pb2.SearchRequest(query="ship", filter=nobody), timeout=120).hits
        stub.GetObject(search_pb2.GetObjectRequest(id=DEMO_OBJECT), timeout=60)
        with pytest.raises(grpc.RpcError):
            stub.GetObject(search_pb2.GetObjectRequest(id="NO-SUCH-ID"), timeout=60)


def exercise_explorer(explorer: ServiceProcess) -> None:
    with urllib.request.urlopen(explorer.url + "api/search?q=ship", timeout=120) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError):  # an error status too
        urllib.request.urlopen(explorer.url + "api/objects/NO-SUCH-ID", timeout=60)


@pytest.fixture(scope="module")
def scrapes(system: System, explorer: ServiceProcess) -> dict[str, str]:
    exercise(system)
    exercise_explorer(explorer)
    processes = {name: getattr(system, name) for name in SERVICES} | {"explorer": explorer}
    texts = {}
    for name, process in processes.items():
        with urllib.request.urlopen(process.metrics_url, timeout=30) as response:
            texts[name] = response.read().decode()
    return texts


@pytest.fixture(scope="module")
def exported(scrapes: dict[str, str]) -> Exported:
    union = Exported()
    for text in scrapes.values():
        union.add(text)
    return union


def usages() -> list[Usage]:
    return rule_usages() + dashboard_usages()


@pytest.mark.parametrize("name", SCRAPED)
def test_promtool_check_metrics_is_clean(scrapes: dict[str, str], name: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make tools` installs it"
    result = subprocess.run(
        [promtool, "check", "metrics"], input=scrapes[name], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        f"promtool check metrics on {name}:\n{result.stdout}{result.stderr}"
    )


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_exports_the_common_metrics(scrapes: dict[str, str], name: str) -> None:
    own = Exported()
    own.add(scrapes[name])
    missing = [m for m in COMMON_METRICS if m not in own.labels]
    assert not missing, f"{name} does not export {missing}"
    assert own.values[("vitrine_ready", "service")] == {name}
    assert "process_cpu_seconds_total" in own.labels and "process_resident_memory_bytes" in own.labels


def test_every_metric_and_label_used_is_exported(exported: Exported) -> None:
    problems = []
    not_scraped = SYNTHETIC_METRICS | EXTERNAL_METRICS
    for usage in usages():
        for selector in usage.selectors:
            if selector.metric in not_scraped:
                allowed = TARGET_LABELS | not_scraped[selector.metric]
                if selector.label_names - allowed:
                    problems.append(f"{usage.where}: {selector.metric} has no {selector.label_names - allowed}")
                continue
            if selector.metric not in exported.labels:
                problems.append(f"{usage.where}: metric {selector.metric} is not exported")
                continue
            labels = exported.labels[selector.metric]
            unknown = selector.label_names - labels - TARGET_LABELS
            if unknown:
                problems.append(f"{usage.where}: {selector.metric} has no label {sorted(unknown)} (it has {labels})")
            for label, op, value in selector.matchers:
                if op in ("=", "!=") and label in labels and label not in TARGET_LABELS:
                    seen = exported.values[(selector.metric, label)]
                    if value not in seen:
                        problems.append(f"{usage.where}: {selector.metric}{{{label}{op}{value!r}}} never occurs {seen}")
    assert not problems, "\n".join(problems)


def test_every_grouping_label_exists_on_the_metrics_grouped(exported: Exported) -> None:
    problems = []
    for usage in usages():
        for labels, metrics in usage.groupings:
            available = set(TARGET_LABELS)
            for metric in metrics:
                available |= exported.labels.get(metric, set()) | EXTERNAL_METRICS.get(metric, set())
            missing = set(labels) - available
            if missing:
                problems.append(f"{usage.where}: groups by {sorted(missing)}, which {list(metrics)} do not have")
    assert not problems, "\n".join(problems)


def test_alert_annotations_print_labels_that_exist(exported: Exported) -> None:
    for rule in alert_rules():
        usage = analyse(rule["expr"], rule["alert"])
        available = set(TARGET_LABELS) | set(rule.get("labels", {}))
        for selector in usage.selectors:
            available |= exported.labels.get(selector.metric, set()) | EXTERNAL_METRICS.get(selector.metric, set())
        assert annotation_labels(rule) <= available, f"{rule['alert']} prints {annotation_labels(rule) - available}"
