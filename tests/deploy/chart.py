"""Rendering and linting the Helm chart with the Helm SDK from PyPI (helm-python-sdk: Helm 4's Go
SDK through ctypes, no helm binary), and the value sets the tests render it with."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from tests.deploy.crd_schemas import SCHEMAS as OPERATOR_SCHEMAS
from tests.deploy.edge_schemas import SCHEMAS as EDGE_SCHEMAS
from tests.deploy.observability import CHART

RELEASE = "museum"
NAMESPACE = "collections"
# Kubernetes versions the manifests are validated against: the newest kubernetes-validate knows
# and the oldest the chart supports (Chart.yaml kubeVersion).
KUBE_VERSIONS = ("1.37.0", "1.30.0")
# The gRPC services; the explorer (an HTTP server) is checked on its own.
COMPONENTS = ("embedder", "tagger", "search")
PORTS = {"embedder": (50051, 9101), "tagger": (50052, 9102), "search": (50053, 9103)}
PREFIX = {"embedder": "VITRINE_EMBEDDER_", "tagger": "VITRINE_TAGGER_", "search": "VITRINE_SEARCH_"}
EXPLORER_PORTS = (8080, 9104)  # HTTP, metrics: the explorer's own defaults (vitrine.explorer.settings)
# Custom resources kubernetes-validate cannot check: hand-written schemas of their APIs.
SCHEMAS = {**OPERATOR_SCHEMAS, **EDGE_SCHEMAS}

# The Prometheus Operator resources are rendered with enabled=true: offline, Helm's capabilities
# never include monitoring.coreos.com/v1, so "auto" would render nothing.
_MONITORING_ON = {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}

VALUE_SETS: dict[str, dict[str, Any]] = {
    # Defaults: CPU embedder, embedded store (single-replica StatefulSet with a claim), the chart's
    # PostgreSQL for feedback, the model store claim (no training: the tagger waits for a version).
    "cpu-only": {**_MONITORING_ON},
    # GPU embedder on NVIDIA nodes with a runtime class, external Qdrant with an API key, an external
    # PostgreSQL by URL.
    "gpu": {
        **_MONITORING_ON,
        "embedder": {
            "gpu": {"enabled": True, "runtimeClassName": "nvidia"},
            "replicaCount": 2,
            "modelCache": {"accessModes": ["ReadWriteMany"], "storageClassName": "shared-fs"},
            "clip": {"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"},
            "huggingfaceToken": "hf_example_token",
        },
        "search": {"qdrant": {"url": "http://qdrant.databases:6333", "apiKey": "example-qdrant-key"}},
        "tagger": {"feedbackDatabaseUrl": "postgresql://vitrine:example-password@db:5432/feedback"},
        "postgresql": {"enabled": False},
        # The explorer behind an Ingress with TLS, autoscaled.
        "explorer": {
            "autoscaling": {"enabled": True},
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "host": "collection.example.org",
                "tls": [{"hosts": ["collection.example.org"], "secretName": "collection-tls"}],
                "annotations": {"nginx.ingress.kubernetes.io/auth-type": "basic"},
            },
        },
        "networkPolicy": {
            "apiClients": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cms"}}}],
            "explorerClients": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
            ],
            "metricsScrapers": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        },
        "image": {"registry": "registry.example.org/museum", "tag": "0.1.0"},
        "imagePullSecrets": ["registry-credentials"],
    },
    # External Qdrant and an external PostgreSQL whose key and URL live in a Secret managed
    # elsewhere; no autoscaling, no monitoring CRs.
    "external-qdrant": {
        "search": {"qdrant": {"url": "https://qdrant.example.org:6333"}, "autoscaling": {"enabled": False}},
        "tagger": {"autoscaling": {"enabled": False}},
        "postgresql": {"enabled": False},
        "secrets": {"existingSecret": "vitrine-credentials"},
        "metrics": {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}},
        "embedder": {"modelCache": {"persistence": False}, "modelFetch": {"enabled": True}},
        # The explorer serves image files from a claim, at the path the collection was ingested with.
        "explorer": {"replicaCount": 3, "images": {"existingClaim": "collection-images", "mountPath": "/srv/images"}},
    },
    # External PostgreSQL by URL (a managed database), the chart's own switched off.
    "external-postgresql": {
        "tagger": {"feedbackDatabaseUrl": "postgresql://vitrine:example-password@feedback.db.example.org:5432/vitrine"},
        "postgresql": {"enabled": False},
    },
    # The official Qdrant chart as a subchart (its own manifests are absent: it is not fetched here).
    "qdrant-subchart": {**_MONITORING_ON, "qdrant": {"enabled": True}},
    # No internet at pod start, models baked into the image; the embedder scaled by KEDA on its queue.
    "models-in-image": {
        **_MONITORING_ON,
        "embedder": {
            "modelSource": "image",
            "models": "mpnet,efficientnet-lite0,clip",
            "clip": {"model": "ViT-B-32", "pretrained": "/opt/vitrine/models/clip/vit-b-32.pt"},
            "autoscaling": {"enabled": True, "kind": "keda", "maxReplicas": 3},
        },
    },
    # No internet at pod start, models on a claim the operator filled; the embedder scaled by an
    # HPA on the External metric prometheus-adapter serves.
    "models-on-claim": {
        "embedder": {
            "modelSource": "claim",
            "modelCache": {"existingClaim": "museum-models"},
            "models": "mpnet,efficientnet-lite0,clip",
            "clip": {"model": "ViT-B-32", "pretrained": "/models/clip/vit-b-32.pt"},
            "autoscaling": {"enabled": True, "kind": "hpa"},
        },
    },
    # Feedback in SQLite on a claim: one tagger pod, no autoscaling, no PostgreSQL.
    "sqlite-on-claim": {
        "tagger": {"feedbackStore": {"mode": "sqlite"}, "autoscaling": {"enabled": False}, "replicaCount": 1},
        "postgresql": {"enabled": False},
    },
    # A model on a fresh install: the training Job on a dataset URL evaluated on a ConfigMap, and
    # the weekly retraining from feedback.
    "training": {
        **_MONITORING_ON,
        "tagger": {
            "training": {
                "enabled": True,
                "dataset": {"kind": "url", "url": "https://data.example.org/tate/tate_train.jsonl.gz"},
                "evalDataset": {"kind": "configMap", "configMap": {"name": "tate-dev", "key": "tate_dev.jsonl.gz"}},
                "limit": 4000,
            },
            "retraining": {"enabled": True, "timeZone": "Europe/London"},
        },
    },
    # Callers outside the cluster: a GRPCRoute and a gRPC Ingress, tracing to a collector; training
    # from a file on a claim.
    "edge": {
        "edge": {
            "grpcRoute": {
                "enabled": True,
                "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
                "hostnames": ["api.collection.example.org"],
            },
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "host": "grpc.collection.example.org",
                "tlsSecretName": "grpc-tls",
            },
        },
        "tracing": {"otlpEndpoint": "http://otel-collector.observability:4317"},
        "accessLog": False,
        "tagger": {
            "training": {
                "enabled": True,
                "dataset": {
                    "kind": "existingClaim",
                    "existingClaim": {"claimName": "datasets", "path": "tate/train.jsonl.gz"},
                },
                "evalDataset": {
                    "kind": "existingClaim",
                    "existingClaim": {"claimName": "datasets", "path": "tate/dev.jsonl.gz"},
                },
            }
        },
    },
    # Everything optional switched off (the explorer's own options too; explorer.enabled=false,
    # which removes it whole, has its own test).
    "minimal": {
        "networkPolicy": {"enabled": False},
        "metrics": {
            "serviceMonitor": {"enabled": False},
            "prometheusRule": {"enabled": False},
            "grafanaDashboard": {"enabled": False},
        },
        "tagger": {"pdb": {"enabled": False}, "autoscaling": {"enabled": False}},
        "search": {"pdb": {"enabled": False}},
        "embedder": {"pdb": {"enabled": False}, "modelFetch": {"enabled": False}},
        "explorer": {"pdb": {"enabled": False}, "preStopSleepSeconds": 0},
        "serviceAccount": {"create": False},
        "tests": {"enabled": False},
        "defaultTopologySpread": False,
    },
}
# The profiles deploy/README.md documents (the others exercise options).
PROFILES = (
    "cpu-only",
    "gpu",
    "external-qdrant",
    "external-postgresql",
    "qdrant-subchart",
    "models-in-image",
    "models-on-claim",
    "sqlite-on-claim",
    "training",
    "edge",
)


@functools.cache
def _render(values_json: str) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(json.loads(values_json), name=RELEASE, namespace=NAMESPACE, is_install=True)


def render_files(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included)."""
    return _render(json.dumps(values or {}, sort_keys=True))


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every rendered Kubernetes object (NOTES.txt and empty documents left out)."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render_files(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, got {[d['metadata']['name'] for d in find(docs, kind)]}"
    return found[0]


def component(name: str) -> str:
    return f"{RELEASE}-vitrine-{name}"


def workload(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The Deployment or StatefulSet of a component."""
    found = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet") and d["metadata"]["name"] == component(name)]
    assert len(found) == 1, f"expected one workload for {name}"
    return found[0]


def container(doc: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = doc["spec"]["template"]["spec"]["containers"]
    return containers[0] if name is None else next(c for c in containers if c["name"] == name)


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Pod, a workload, a Job or a CronJob."""
    if doc["kind"] == "Pod":
        return doc["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def env(c: dict[str, Any]) -> dict[str, Any]:
    """name -> value, or the valueFrom mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def chart_without_dependencies(tmp: Path) -> Path:
    """A copy of the chart whose Chart.yaml declares no dependencies.

    Helm lint reports a declared dependency that is not under charts/ ("chart directory is
    missing these dependencies: qdrant"), and the official Qdrant chart cannot be downloaded
    here (nor is its code committed). The strict lint runs on this copy; a separate test
    checks the declaration itself and that it is the only finding on the real chart.
    """
    copy = tmp / "vitrine"
    shutil.copytree(CHART, copy)
    meta = yaml.safe_load((copy / "Chart.yaml").read_text())
    meta.pop("dependencies")
    (copy / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return copy
