"""What every documented profile of the chart promises (tests/deploy/chart.py PROFILES: default, GPU
embedder, external Qdrant, external PostgreSQL, Qdrant subchart, models in the image or on a claim,
SQLite on a claim, training, edge): no durable data on an emptyDir, no tagger replicas sharing
nothing on SQLite, the model store claim wired to the tagger and the training Jobs, every gRPC
caller balanced over headless Services, soft spreading; the training Jobs, the chart's PostgreSQL,
the edge, autoscaling, model sources, tracing and the helm test. test_helm_values.py holds the
values schema and the `fail` checks."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.deploy.chart import (
    PROFILES,
    VALUE_SETS,
    component,
    container,
    env,
    find,
    one,
    pod_spec,
    render,
    render_files,
    workload,
)
from tests.deploy.edge_schemas import SCHEMAS as EDGE_SCHEMAS
from tests.deploy.observability import CHART

MODELS = "/var/lib/vitrine/tagger/models"
FEEDBACK = "/var/lib/vitrine/tagger/feedback"
# Mounts an emptyDir may back: scratch space, sockets, shared memory; and two caches that are
# refilled by themselves (the embedder's model cache without persistence, search's folder when
# the collection lives in a Qdrant server).
SCRATCH = {"/tmp", "/var/run/postgresql", "/dev/shm"}
CACHES = {"embedder": "/models", "search": "/var/lib/vitrine/search"}
GRPC_SERVERS = {"embedder": 50051, "tagger": 50052, "search": 50053}


def pods(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, pod spec) of every workload, Job and CronJob (the helm test pod left out)."""
    kinds = ("Deployment", "StatefulSet", "Job", "CronJob")
    return [(d, pod_spec(d)) for d in docs if d["kind"] in kinds]


def mounts(pod: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(mount path, volume) of every container's mounts; volumeClaimTemplates count as claims."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    found = []
    for c in pod["containers"] + pod.get("initContainers", []):
        for m in c.get("volumeMounts", []):
            found.append((m["mountPath"], volumes.get(m["name"], {"persistentVolumeClaim": {"template": m["name"]}})))
    return found


@pytest.fixture(scope="module", params=PROFILES)
def profile(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(VALUE_SETS[request.param])


# ---- durability ------------------------------------------------------------------------------


def test_no_durable_data_on_an_emptydir(profile: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = profile
    embedded_store = workload(docs, "search")["kind"] == "StatefulSet"
    for doc, pod in pods(docs):
        owner = doc["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")
        for path, volume in mounts(pod):
            if "emptyDir" not in volume or path in SCRATCH:
                continue
            cache = CACHES.get(owner) == path and not (owner == "search" and embedded_store)
            assert cache, f"{name}: {doc['kind']} {doc['metadata']['name']} keeps {path} on an emptyDir"
    # The durable folders themselves are claims.
    tagger = pod_spec(workload(docs, "tagger"))
    assert dict(mounts(tagger))[MODELS]["persistentVolumeClaim"]["readOnly"] is True
    if embedded_store:
        assert workload(docs, "search")["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_feedback_is_shared_by_every_replica_or_kept_by_one(profile: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = profile
    tagger = workload(docs, "tagger")
    variables = env(container(tagger, "tagger"))
    hpa = find(docs, "HorizontalPodAutoscaler", component("tagger"))
    url = variables.get("VITRINE_TAGGER_FEEDBACK_DATABASE_URL")
    if url is None:
        # SQLite: one file, one pod, on a claim.
        assert not hpa and tagger["spec"]["replicas"] == 1, f"{name}: several tagger pods on SQLite"
        path = variables["VITRINE_TAGGER_FEEDBACK_DB"]
        volume = dict(mounts(pod_spec(tagger)))[str(Path(path).parent)]
        assert "persistentVolumeClaim" in volume, f"{name}: SQLite feedback on {volume}"
        return
    # PostgreSQL: a plain URL without a password, or a Secret key the pod cannot start without.
    if isinstance(url, str):
        assert url.startswith("postgresql://") and "@" in url and ":" not in url.split("//")[1].split("@")[0]
        assert variables["PGPASSWORD"]["secretKeyRef"]["key"] == "postgres-password"
        one(docs, "StatefulSet", component("postgresql"))
    else:
        assert url["secretKeyRef"]["key"] == "feedback-database-url" and not url["secretKeyRef"].get("optional")
        assert not find(docs, "StatefulSet", component("postgresql"))
    assert "VITRINE_TAGGER_FEEDBACK_DB" not in variables


def test_the_charts_postgresql_keeps_its_data_on_a_claim_with_a_stable_password() -> None:
    docs = render(VALUE_SETS["cpu-only"])
    statefulset = one(docs, "StatefulSet", component("postgresql"))
    spec = statefulset["spec"]
    assert spec["replicas"] == 1 and spec["serviceName"] == component("postgresql")
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    pod = spec["template"]["spec"]
    c = container(statefulset, "postgresql")
    repository, tag = c["image"].rsplit(":", 1)
    assert repository == "docker.io/library/postgres" and tag[0].isdigit(), "a pinned official image"
    variables = env(c)
    data = next(m for m in c["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    assert variables["PGDATA"].startswith(data["mountPath"] + "/"), "a sub-folder: the claim may hold lost+found"
    assert variables["POSTGRES_PASSWORD"]["secretKeyRef"] == {
        "name": component("postgresql"),
        "key": "postgres-password",
    }
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["exec"]["command"][0] == "pg_isready"
    assert pod["securityContext"]["runAsUser"] == 999 and pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    service = one(docs, "Service", component("postgresql"))
    assert service["spec"]["ports"][0]["port"] == 5432
    # The password is generated once and read back on upgrades; it outlives the release like the data.
    secret = one(docs, "Secret", component("postgresql"))
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(secret["data"]["postgres-password"]) >= 32
    template = (CHART / "templates" / "postgresql.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in template
    # Only the tagger and its retraining Jobs may connect.
    policy = one(docs, "NetworkPolicy", component("postgresql"))["spec"]
    (rule,) = policy["ingress"]
    assert rule["from"][0]["podSelector"]["matchExpressions"] == [
        {"key": "app.kubernetes.io/component", "operator": "In", "values": ["tagger", "tagger-retrain"]}
    ]
    # With an existing Secret, its postgres-password key; no password is generated.
    docs = render({"secrets": {"existingSecret": "vitrine-credentials"}})
    assert not find(docs, "Secret")
    tagger = env(container(workload(docs, "tagger"), "tagger"))
    assert tagger["PGPASSWORD"]["secretKeyRef"] == {"name": "vitrine-credentials", "key": "postgres-password"}


def test_the_tagger_waits_for_the_charts_postgresql() -> None:
    pod = pod_spec(workload(render(VALUE_SETS["cpu-only"]), "tagger"))
    (wait,) = pod["initContainers"]
    assert wait["name"] == "wait-for-postgresql"
    compile(wait["command"][2], "wait-for-postgresql", "exec")
    assert (
        env(wait)["VITRINE_TAGGER_FEEDBACK_DATABASE_URL"]
        == env(container({"spec": {"template": {"spec": pod}}}, "tagger"))["VITRINE_TAGGER_FEEDBACK_DATABASE_URL"]
    )
    assert "initContainers" not in pod_spec(workload(render(VALUE_SETS["external-postgresql"]), "tagger"))


# ---- the model store and training ------------------------------------------------------------


def test_model_store_claim_is_read_by_the_tagger_and_written_by_the_training_jobs(
    profile: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = profile
    tagger = workload(docs, "tagger")
    claim = dict(mounts(pod_spec(tagger)))[MODELS]["persistentVolumeClaim"]["claimName"]
    created = one(docs, "PersistentVolumeClaim", claim)
    assert "ReadWriteMany" in created["spec"]["accessModes"], "every tagger pod and the Jobs mount it"
    variables = env(container(tagger, "tagger"))
    assert variables["VITRINE_TAGGER_MODEL_DIR"] == MODELS
    assert float(variables["VITRINE_TAGGER_MODEL_POLL_S"]) > 0, "new versions are picked up without a restart"
    jobs = find(docs, "Job") + find(docs, "CronJob")
    assert bool(jobs) == bool(VALUE_SETS[name].get("tagger", {}).get("training", {}).get("enabled"))
    for job in jobs:
        pod = pod_spec(job)
        volume = dict(mounts(pod))[MODELS]
        assert volume["persistentVolumeClaim"] == {"claimName": claim}, "the Jobs write where the tagger reads"
        (c,) = pod["containers"]
        assert c["image"].endswith("-train"), "training needs the image with torch"
        assert pod["restartPolicy"] == "Never"


def _job(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (job,) = find(docs, "Job")
    return job


def test_training_job_runs_vitrine_tagger_train_on_the_dataset() -> None:
    docs = render(VALUE_SETS["training"])
    job = _job(docs)
    assert job["metadata"]["name"].startswith(component("tagger") + "-train-")
    spec = job["spec"]
    assert spec["backoffLimit"] == 2 and spec["activeDeadlineSeconds"] == 14400 and spec["ttlSecondsAfterFinished"]
    assert {"action": "FailJob", "onExitCodes": {"containerName": "train", "operator": "In", "values": [2]}} in spec[
        "podFailurePolicy"
    ]["rules"]
    pod = pod_spec(job)
    (c,) = pod["containers"]
    args = c["args"]
    assert args[:4] == ["python", "-m", "vitrine.tagger.cli", "train"]
    flags = dict(zip(args[4::2], args[5::2], strict=False))
    assert flags["--data"] == "https://data.example.org/tate/tate_train.jsonl.gz"
    assert flags["--eval-data"] == "/var/lib/vitrine/datasets/eval-data/tate_dev.jsonl.gz"
    assert flags["--out-dir"] == MODELS and flags["--limit"] == "4000"
    assert flags["--embedder"] == f"dns:///{component('embedder')}-headless:50051"
    assert flags["--version"] == env(c)["TRAINING_VERSION"] == job["metadata"]["labels"]["vitrine.io/model-version"]
    # The ConfigMap key is mounted read-only where --eval-data points.
    assert {"name": "dataset-eval-data", "mountPath": "/var/lib/vitrine/datasets/eval-data", "readOnly": True} in c[
        "volumeMounts"
    ]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dataset-eval-data"]["configMap"] == {
        "name": "tate-dev",
        "items": [{"key": "tate_dev.jsonl.gz", "path": "tate_dev.jsonl.gz"}],
    }
    # A re-created Job whose version is already complete exits at once.
    assert c["command"][:2] == ["sh", "-c"] and "$TRAINING_VERSION/meta.json" in c["command"][2]
    assert 'exec "$@"' in c["command"][2]
    # It waits for the embedder, which may still be loading its models on a fresh install.
    (wait,) = pod["initContainers"]
    assert wait["command"][-1] == flags["--embedder"]
    compile(wait["command"][2], "wait-for-embedder", "exec")


def test_training_job_name_follows_its_settings() -> None:
    values = VALUE_SETS["training"]
    name = _job(render(values))["metadata"]["name"]
    assert _job(render(copy.deepcopy(values)))["metadata"]["name"] == name, "an unchanged render is the same Job"
    changed = copy.deepcopy(values)
    changed["tagger"]["training"]["dataset"]["url"] = "https://data.example.org/tate/v2.jsonl.gz"
    assert _job(render(changed))["metadata"]["name"] != name
    # Resources do not decide what is trained.
    resized = copy.deepcopy(values)
    resized["tagger"]["training"]["resources"] = {
        "requests": {"cpu": "4", "memory": "8Gi"},
        "limits": {"memory": "16Gi"},
    }
    assert _job(render(resized))["metadata"]["name"] == name
    assert len(name) <= 63
    named = copy.deepcopy(values)
    named["tagger"]["training"]["version"] = "tate-v4"
    assert env(container(_job(render(named)), "train"))["TRAINING_VERSION"] == "tate-v4"


def test_datasets_on_a_claim_are_mounted_read_only() -> None:
    job = _job(render(VALUE_SETS["edge"]))
    pod = pod_spec(job)
    args = pod["containers"][0]["args"]
    assert args[args.index("--data") + 1] == "/var/lib/vitrine/datasets/data/tate/train.jsonl.gz"
    assert args[args.index("--eval-data") + 1] == "/var/lib/vitrine/datasets/eval-data/tate/dev.jsonl.gz"
    volumes = {v["name"]: v for v in pod["volumes"]}
    for name in ("dataset-data", "dataset-eval-data"):
        assert volumes[name]["persistentVolumeClaim"] == {"claimName": "datasets", "readOnly": True}


def test_retraining_cronjob_folds_in_feedback_and_does_not_retry_a_refusal() -> None:
    docs = render(VALUE_SETS["training"])
    (cron,) = find(docs, "CronJob")
    spec = cron["spec"]
    assert spec["schedule"] == "0 3 * * 0" and spec["timeZone"] == "Europe/London"
    assert spec["concurrencyPolicy"] == "Forbid"
    rules = spec["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    assert {
        "action": "FailJob",
        "onExitCodes": {"containerName": "retrain", "operator": "In", "values": [2, 3]},
    } in rules
    (c,) = pod_spec(cron)["containers"]
    args = c["args"]
    assert args[:4] == ["python", "-m", "vitrine.tagger.cli", "retrain"]
    flags = dict(zip(args[4::2], args[5::2], strict=False))
    assert flags["--base"] == "newest" and flags["--out-dir"] == MODELS and "--eval-data" in flags
    # Kubernetes expands $(VAR) from the container's own env: the same database the tagger uses.
    assert flags["--feedback"] == "$(VITRINE_TAGGER_FEEDBACK_DATABASE_URL)"
    tagger = env(container(workload(docs, "tagger"), "tagger"))
    assert env(c)["VITRINE_TAGGER_FEEDBACK_DATABASE_URL"] == tagger["VITRINE_TAGGER_FEEDBACK_DATABASE_URL"]
    assert env(c)["PGPASSWORD"] == tagger["PGPASSWORD"]


@pytest.mark.parametrize("kind", ["Job", "CronJob"])
def test_training_arguments_are_what_vitrine_tagger_accepts(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from vitrine.tagger import cli

    (doc,) = find(render(VALUE_SETS["training"]), kind)
    args = pod_spec(doc)["containers"][0]["args"]
    assert args[:3] == ["python", "-m", "vitrine.tagger.cli"]
    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(cli, "local_copy", lambda source, *_: source)
    monkeypatch.setattr(cli, "_run", lambda parsed: seen.append(parsed) or 0)
    assert cli.main(args[3:]) == 0
    (parsed,) = seen
    assert parsed.out_dir == MODELS and parsed.data.startswith("https://")


# ---- balanced gRPC ---------------------------------------------------------------------------


def test_every_grpc_caller_is_balanced_over_a_headless_service(profile: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = profile
    headless = {s["metadata"]["name"]: s for s in find(docs, "Service") if s["spec"].get("clusterIP") == "None"}
    callers = {
        ("tagger", "VITRINE_TAGGER_EMBEDDER_ADDRESS"): "embedder",
        ("search", "VITRINE_SEARCH_EMBEDDER_ADDRESS"): "embedder",
        ("search", "VITRINE_SEARCH_TAGGER_ADDRESS"): "tagger",
        ("explorer", "VITRINE_EXPLORER_SEARCH_ADDRESS"): "search",
        ("explorer", "VITRINE_EXPLORER_TAGGER_ADDRESS"): "tagger",
    }
    for (caller, variable), target in callers.items():
        address = env(container(workload(docs, caller), caller))[variable]
        service = f"{component(target)}-headless"
        assert address == f"dns:///{service}:{GRPC_SERVERS[target]}", f"{name}: {caller} {variable}={address}"
        spec = headless[service]["spec"]
        assert spec["publishNotReadyAddresses"] is False, "only ready pods take calls"
        assert spec["selector"] == workload(docs, target)["spec"]["selector"]["matchLabels"]
        assert headless[service]["metadata"]["labels"]["vitrine.io/headless"] == "true"
    for job in find(docs, "Job") + find(docs, "CronJob"):
        args = pod_spec(job)["containers"][0]["args"]
        assert args[args.index("--embedder") + 1] == f"dns:///{component('embedder')}-headless:50051"
    # Servers end connections after a while, so callers from outside the cluster spread too.
    for server in GRPC_SERVERS:
        variables = env(container(workload(docs, server), server))
        assert float(variables[f"VITRINE_{server.upper()}_MAX_CONNECTION_AGE_S"]) == 300


def test_edge_routes_grpc_by_service_with_tls() -> None:
    docs = render(VALUE_SETS["edge"])
    (route,) = find(docs, "GRPCRoute")
    jsonschema.validate(route, EDGE_SCHEMAS["GRPCRoute"])
    spec = route["spec"]
    assert spec["parentRefs"] == [{"name": "public", "namespace": "gateways", "sectionName": "https"}]
    assert spec["hostnames"] == ["api.collection.example.org"]
    backends = {r["matches"][0]["method"]["service"]: r["backendRefs"] for r in spec["rules"]}
    assert backends == {
        "vitrine.v1.SearchService": [{"name": component("search"), "port": 50053}],
        "vitrine.v1.TaggerService": [{"name": component("tagger"), "port": 50052}],
    }
    ingress = one(docs, "Ingress", component("grpc"))
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    assert ingress["spec"]["tls"] == [{"hosts": ["grpc.collection.example.org"], "secretName": "grpc-tls"}]
    paths = {p["path"]: p["backend"]["service"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {
        "/vitrine.v1.SearchService": {"name": component("search"), "port": {"name": "grpc"}},
        "/vitrine.v1.TaggerService": {"name": component("tagger"), "port": {"name": "grpc"}},
    }
    assert not find(render({}), "GRPCRoute") and not find(render({}), "Ingress")


# ---- spreading, autoscaling, models without internet, tracing ---------------------------------


def test_pods_spread_softly_over_zones_and_nodes(profile: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = profile
    for target in ("embedder", "tagger", "search", "explorer"):
        w = workload(docs, target)
        constraints = w["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert [c["topologyKey"] for c in constraints] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        for c in constraints:
            assert c["whenUnsatisfiable"] == "ScheduleAnyway" and c["maxSkew"] == 1
            assert c["labelSelector"]["matchLabels"] == w["spec"]["selector"]["matchLabels"]
    # A component's own list replaces the default; defaultTopologySpread=false drops it.
    own = [{"maxSkew": 2, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {}}]
    pod = pod_spec(workload(render({"search": {"topologySpreadConstraints": own}}), "search"))
    assert pod["topologySpreadConstraints"] == own
    assert "topologySpreadConstraints" not in pod_spec(workload(render(VALUE_SETS["minimal"]), "tagger"))


def test_embedder_scales_on_its_queue_with_keda_or_an_external_metric() -> None:
    docs = render(VALUE_SETS["models-in-image"])
    (scaled,) = find(docs, "ScaledObject")
    jsonschema.validate(scaled, EDGE_SCHEMAS["ScaledObject"])
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == component("embedder")
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 3)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    assert query == f'sum(vitrine_embedder_queue_depth{{job="{component("embedder")}",namespace="collections"}})'
    assert trigger["metadata"]["threshold"] == "64" and trigger["metadata"]["serverAddress"].startswith("http")
    assert "replicas" not in workload(docs, "embedder")["spec"], "the autoscaler owns the replica count"
    docs = render(VALUE_SETS["models-on-claim"])
    hpa = one(docs, "HorizontalPodAutoscaler", component("embedder"))
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External" and metric["external"]["metric"]["name"] == "vitrine_embedder_queue_depth"
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "64"}
    assert not find(docs, "ScaledObject") and not find(render({}), "ScaledObject")


def test_models_come_from_the_image_or_a_claim_without_internet() -> None:
    docs = render(VALUE_SETS["models-in-image"])
    w = workload(docs, "embedder")
    pod = pod_spec(w)
    c = container(w, "embedder")
    variables = env(c)
    assert "initContainers" not in pod and c["image"] == "vitrine/embedder:0.1.0-models"
    assert variables["VITRINE_EMBEDDER_MODEL_DIR"] == "/opt/vitrine/models"
    assert variables["HF_HUB_OFFLINE"] == "1" and variables["HF_HOME"] == "/opt/vitrine/models/huggingface"
    assert variables["VITRINE_EMBEDDER_CLIP_PRETRAINED"].startswith("/opt/vitrine/models/clip/")
    assert "models" not in {v["name"] for v in pod["volumes"]}
    assert not find(docs, "PersistentVolumeClaim", component("embedder") + "-models")
    assert "strategy" not in w["spec"], "no claim to wait for: pods may surge"
    gpu = render({"embedder": {"modelSource": "image", "gpu": {"enabled": True}}})
    assert container(workload(gpu, "embedder"), "embedder")["image"] == "vitrine/embedder:0.1.0-cuda-models"

    docs = render(VALUE_SETS["models-on-claim"])
    pod = pod_spec(workload(docs, "embedder"))
    c = pod["containers"][0]
    assert "initContainers" not in pod and env(c)["HF_HUB_OFFLINE"] == "1"
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
    volume = next(v for v in pod["volumes"] if v["name"] == "models")
    assert volume["persistentVolumeClaim"] == {"claimName": "museum-models", "readOnly": True}
    assert env(c)["VITRINE_EMBEDDER_CLIP_PRETRAINED"] == "/models/clip/vit-b-32.pt"
    # fetch (the default) keeps today's init container and the Hub.
    pod = pod_spec(workload(render({}), "embedder"))
    assert pod["initContainers"][0]["name"] == "fetch-models" and "HF_HUB_OFFLINE" not in env(pod["containers"][0])


def test_tracing_and_access_log_reach_every_vitrine_pod() -> None:
    docs = render(VALUE_SETS["edge"])
    for doc, pod in pods(docs):
        if doc["metadata"]["name"] == component("postgresql"):
            continue
        for c in pod["containers"]:
            variables = env(c)
            assert variables["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317", c["name"]
            assert variables["OTEL_SERVICE_NAME"].startswith("vitrine-")
    for target in ("embedder", "tagger", "search", "explorer"):
        variables = env(container(workload(docs, target), target))
        assert variables[f"VITRINE_{target.upper()}_ACCESS_LOG"] == "false"
        assert variables["OTEL_SERVICE_NAME"] == f"vitrine-{target}"
    for _, pod in pods(render({})):
        assert not [c for c in pod["containers"] if "OTEL_EXPORTER_OTLP_ENDPOINT" in env(c)], (
            "tracing is off by default"
        )


def test_helm_test_needs_the_tagger_to_serve_a_model() -> None:
    """The helm test pod's script, run against a real grpc.health.v1 server: a tagger that is up
    but has no model version fails the test, one serving a model passes."""
    import subprocess
    import sys
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    (pod,) = find(render(VALUE_SETS["cpu-only"]), "Pod")
    script = pod["spec"]["containers"][0]["command"][2]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        servicer.set("vitrine.v1.TaggerService", health_pb2.HealthCheckResponse.NOT_SERVING)
        target = f"127.0.0.1:{port}/vitrine.v1.TaggerService"

        def run(*targets: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-c", script, *targets], capture_output=True, text=True, timeout=60)

        assert run(f"127.0.0.1:{port}").returncode == 0, "the server itself is up"
        refused = run(target)
        assert refused.returncode == 1 and target in refused.stdout
        servicer.set("vitrine.v1.TaggerService", health_pb2.HealthCheckResponse.SERVING)
        assert run(target).returncode == 0
    finally:
        server.stop(None)


def test_notes_say_where_feedback_and_models_are_and_how_to_follow_training() -> None:
    notes = render_files(VALUE_SETS["training"])["vitrine/templates/NOTES.txt"]
    job = _job(render(VALUE_SETS["training"]))["metadata"]["name"]
    assert f"kubectl -n collections logs -f job/{job} -c train" in notes
    assert f"PostgreSQL in this release ({component('postgresql')}" in notes
    assert f"claim {component('tagger')}-models" in notes
    notes = render_files(VALUE_SETS["sqlite-on-claim"])["vitrine/templates/NOTES.txt"]
    assert f"SQLite on claim {component('tagger')}-feedback (one tagger pod)" in notes
    assert "No training Job" in notes
