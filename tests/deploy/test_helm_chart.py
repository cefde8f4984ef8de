"""The Helm chart (deploy/helm/vitrine), rendered offline with the Helm SDK (helm-python-sdk) for
every value set of tests/deploy/chart.py (the documented profiles and a minimal one): helm lint,
every manifest validated by kubernetes-validate in strict mode, and what the manifests must say (GPU
scheduling, probes, security, store modes, secrets, the explorer's page, monitoring, documented
values). test_helm_profiles.py holds the durability, training and balancing promises and the
values schema."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.chart import (
    COMPONENTS,
    KUBE_VERSIONS,
    NAMESPACE,
    PORTS,
    PREFIX,
    RELEASE,
    SCHEMAS,
    VALUE_SETS,
    chart_without_dependencies,
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
from tests.deploy.observability import CHART, DASHBOARD_FILE, RULES_FILE

# Environment variables the chart sets that no service reads yet, each with the issue that adds it.
PENDING_SETTINGS: dict[str, str] = {}


# ---- Chart.yaml, lint -----------------------------------------------------------------------


def test_qdrant_is_a_conditional_dependency_and_not_vendored() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    (qdrant,) = meta["dependencies"]
    assert qdrant["name"] == "qdrant"
    assert qdrant["repository"] == "https://qdrant.github.io/qdrant-helm"
    assert qdrant["condition"] == "qdrant.enabled"
    assert yaml.safe_load((CHART / "values.yaml").read_text())["qdrant"]["enabled"] is False
    assert not (CHART / "charts").exists(), "the Qdrant chart's code must not be committed (helm dependency build)"


def test_lint_of_the_real_chart_reports_only_the_unfetched_dependency() -> None:
    report = helm.lint(str(CHART), VALUE_SETS["cpu-only"], strict=True, kube_version="v" + KUBE_VERSIONS[0])
    findings = [m["error"] for m in report["messages"] if m["severity"] >= 2]
    assert findings == ["chart directory is missing these dependencies: qdrant"], report


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_strict_lint_is_clean(value_set: str, tmp_path: Path) -> None:
    # On a copy without the dependency declaration (see chart_without_dependencies).
    copy = chart_without_dependencies(tmp_path)
    for kube_version in KUBE_VERSIONS:
        report = helm.lint(str(copy), VALUE_SETS[value_set], strict=True, kube_version="v" + kube_version)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], report


# ---- every manifest is valid Kubernetes ------------------------------------------------------


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_every_manifest_validates_strictly(value_set: str) -> None:
    docs = render(VALUE_SETS[value_set])
    assert docs
    for doc in docs:
        where = f"{doc['kind']} {doc['metadata']['name']}"
        if doc["kind"] in SCHEMAS:
            jsonschema.validate(doc, SCHEMAS[doc["kind"]])
            continue
        for kube_version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, kube_version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{where} is invalid for Kubernetes {kube_version}: {path}: {exc.message}")


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_names_labels_and_selectors_fit_together(value_set: str) -> None:
    docs = render(VALUE_SETS[value_set])
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "two objects share a kind and name"
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")}
    for d in docs:
        assert len(d["metadata"]["name"]) <= 63
        assert d["metadata"].get("labels", {}).get("app.kubernetes.io/instance", RELEASE) == RELEASE
    for d in docs:
        kind = d["kind"]
        if kind in ("Deployment", "StatefulSet"):
            labels = d["spec"]["template"]["metadata"]["labels"]
            assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()
        if kind == "Service":
            selector = d["spec"]["selector"]
            (target,) = [p for p in pods.values() if selector.items() <= p["metadata"]["labels"].items()]
            ports = {p["name"] for c in target["spec"]["containers"] for p in c["ports"]}
            assert {p["targetPort"] for p in d["spec"]["ports"]} <= ports
        if kind in ("PodDisruptionBudget", "NetworkPolicy"):
            selector = d["spec"].get("selector", d["spec"].get("podSelector"))["matchLabels"]
            assert any(selector.items() <= p["metadata"]["labels"].items() for p in pods.values()), d
        if kind == "HorizontalPodAutoscaler":
            ref = d["spec"]["scaleTargetRef"]
            assert ref["name"] in pods and ref["kind"] == "Deployment"
            assert one(docs, "Deployment", ref["name"])["spec"].get("replicas") is None, "HPA and replicas fight"


# ---- the three services ----------------------------------------------------------------------


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_services_listen_in_the_container_with_grpc_probes_and_graceful_shutdown(value_set: str) -> None:
    docs = render(VALUE_SETS[value_set])
    for name in COMPONENTS:
        pod = workload(docs, name)["spec"]["template"]["spec"]
        c = container(workload(docs, name), name)
        variables = env(c)
        grpc_port, metrics_port = PORTS[name]
        assert variables[PREFIX[name] + "HOST"] == "0.0.0.0"
        assert variables[PREFIX[name] + "PORT"] == str(grpc_port)
        assert variables[PREFIX[name] + "METRICS_PORT"] == str(metrics_port)
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": grpc_port, "metrics": metrics_port}
        for probe in ("startupProbe", "livenessProbe"):
            assert c[probe]["grpc"] == {"port": grpc_port}, f"{name} {probe} must be a native gRPC probe"
        # The tagger is ready only while it serves a model version; the others once started.
        readiness = {"port": grpc_port, **({"service": "vitrine.v1.TaggerService"} if name == "tagger" else {})}
        assert c["readinessProbe"]["grpc"] == readiness
        startup = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
        assert startup >= 600, f"{name}: start-up may wait 600 s for the embedder or its models"
        grace = float(variables[PREFIX[name] + "GRACE_SECONDS"])
        pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["terminationGracePeriodSeconds"] > grace + pre_stop


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_pods_run_non_root_read_only_without_capabilities_or_api_token(value_set: str) -> None:
    docs = render(VALUE_SETS[value_set])
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet", "Pod", "Job", "CronJob"):
            continue
        pod = pod_spec(d)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
            if d["kind"] != "Pod":
                mounts = {m["mountPath"] for m in c["volumeMounts"]}
                assert "/tmp" in mounts, f"{c['name']}: a read-only root needs a writable /tmp"


def test_sqlite_feedback_file_is_on_a_writable_claim() -> None:
    sqlite = VALUE_SETS["sqlite-on-claim"]
    given = {
        **sqlite,
        "tagger": {**sqlite["tagger"], "feedbackStore": {"mode": "sqlite", "sqlite": {"existingClaim": "feedback"}}},
    }
    for values, claim in ((sqlite, component("tagger") + "-feedback"), (given, "feedback")):
        docs = render(values)
        tagger = workload(docs, "tagger")
        variables = env(container(tagger))
        assert "VITRINE_TAGGER_FEEDBACK_DATABASE_URL" not in variables
        path = Path(variables["VITRINE_TAGGER_FEEDBACK_DB"])
        mount = next(m for m in container(tagger)["volumeMounts"] if path.is_relative_to(m["mountPath"]))
        assert not mount.get("readOnly")
        volume = next(v for v in tagger["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
        assert volume["persistentVolumeClaim"]["claimName"] == claim
        # One writer on a ReadWriteOnce claim: no surge, exactly one pod.
        assert tagger["spec"]["strategy"] == {"type": "Recreate"} and tagger["spec"]["replicas"] == 1
        created = [
            c["metadata"]["name"] for c in find(docs, "PersistentVolumeClaim") if "feedback" in c["metadata"]["name"]
        ]
        assert created == ([claim] if claim != "feedback" else [])
        assert not find(docs, "StatefulSet", component("postgresql"))


def test_every_vitrine_variable_is_a_real_setting() -> None:
    from vitrine.common.settings import describe
    from vitrine.embedder import settings as embedder
    from vitrine.explorer import settings as explorer
    from vitrine.search import settings as search
    from vitrine.tagger import settings as tagger

    classes = [
        (embedder.EmbedderSettings, embedder.ENV_PREFIX),
        (tagger.TaggerSettings, tagger.ENV_PREFIX),
        (search.SearchSettings, search.ENV_PREFIX),
        (explorer.ExplorerSettings, explorer.ENV_PREFIX),
    ]
    known = {row[0] for cls, prefix in classes for row in describe(cls, prefix)}
    # The explorer's options that set variables, and the write token, switched on too.
    with_options = {
        "secrets": {"authToken": "example-write-token"},
        "explorer": {"images": {"existingClaim": "collection-images"}},
    }
    for value_set in [*VALUE_SETS.values(), with_options]:
        for d in render(value_set):
            if d["kind"] not in ("Deployment", "StatefulSet"):
                continue
            pod = d["spec"]["template"]["spec"]
            for c in pod["containers"] + pod.get("initContainers", []):
                unknown = {n for n in env(c) if n.startswith("VITRINE_")} - known - set(PENDING_SETTINGS)
                assert not unknown, f"{c['name']} sets variables no service reads: {unknown}"


def test_tagger_and_search_reach_every_embedder_pod_through_the_headless_service() -> None:
    docs = render(VALUE_SETS["cpu-only"])
    headless = one(docs, "Service", component("embedder") + "-headless")
    assert headless["spec"]["clusterIP"] == "None"
    for name in ("tagger", "search"):
        address = env(container(workload(docs, name)))[PREFIX[name] + "EMBEDDER_ADDRESS"]
        assert address == f"dns:///{component('embedder')}-headless:50051"


# ---- embedder: GPU and CPU profiles, model cache ---------------------------------------------


def test_cpu_profile_has_no_gpu_anything() -> None:
    docs = render(VALUE_SETS["cpu-only"])
    deployment = workload(docs, "embedder")
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment, "embedder")
    assert c["image"] == "vitrine/embedder:0.1.0"
    assert env(c)["VITRINE_EMBEDDER_DEVICE"] == "cpu"
    assert env(c)["VITRINE_EMBEDDER_TORCH_THREADS"] == "4"
    assert "nvidia.com/gpu" not in json.dumps(pod)
    assert "runtimeClassName" not in pod
    assert deployment["spec"]["template"]["metadata"]["labels"]["vitrine.io/profile"] == "cpu"


def test_gpu_profile_requests_a_gpu_on_gpu_nodes_with_the_cuda_image() -> None:
    docs = render(VALUE_SETS["gpu"])
    deployment = workload(docs, "embedder")
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment, "embedder")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["runtimeClassName"] == "nvidia"
    assert c["image"] == "registry.example.org/museum/vitrine/embedder:0.1.0-cuda"
    assert pod["initContainers"][0]["image"] == c["image"]
    assert env(c)["VITRINE_EMBEDDER_DEVICE"] == "cuda"
    assert "VITRINE_EMBEDDER_TORCH_THREADS" not in env(c)
    assert env(c)["VITRINE_EMBEDDER_CLIP_MODEL"] == "ViT-B-32"
    # Two replicas share a ReadWriteMany cache, so pods may surge during an update.
    assert deployment["spec"]["replicas"] == 2 and "strategy" not in deployment["spec"]
    assert one(docs, "PersistentVolumeClaim", component("embedder") + "-models")["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]


def test_gpu_profile_options_are_configurable() -> None:
    # Helm merges maps with the defaults: null removes the default GPU node label.
    selector = {"gpu": "a100", "nvidia.com/gpu.present": None}
    gpu = {"enabled": True, "count": 2, "resourceName": "nvidia.com/mig-1g.10gb", "nodeSelector": selector}
    gpu["tolerations"] = []
    extra = {"nodeSelector": {"zone": "a"}, "tolerations": [{"key": "dedicated", "operator": "Exists"}]}
    values = {"embedder": {"gpu": gpu, **extra}}
    pod = workload(render(values), "embedder")["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/mig-1g.10gb"] == 2
    assert pod["nodeSelector"] == {"gpu": "a100", "zone": "a"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert "runtimeClassName" not in pod


def test_model_cache_is_a_claim_filled_by_an_init_step_not_the_image() -> None:
    docs = render(VALUE_SETS["cpu-only"])
    claim = one(docs, "PersistentVolumeClaim", component("embedder") + "-models")
    deployment = workload(docs, "embedder")
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert deployment["spec"]["strategy"]["type"] == "Recreate", "a ReadWriteOnce cache cannot surge"
    (init,) = pod["initContainers"]
    assert init["command"] == ["python", "/app/scripts/fetch_models.py", "/models"]
    assert {"name": "models", "mountPath": "/models"} in init["volumeMounts"]
    assert env(container(deployment))["VITRINE_EMBEDDER_MODEL_DIR"] == "/models"
    # Without persistence: an emptyDir; without mpnet: nothing to fetch.
    docs = render({"embedder": {"modelCache": {"persistence": False}, "models": "efficientnet-lite0"}})
    pod = workload(docs, "embedder")["spec"]["template"]["spec"]
    assert {"name": "models", "emptyDir": {}} in pod["volumes"] and "initContainers" not in pod
    assert not find(docs, "PersistentVolumeClaim", component("embedder") + "-models")
    # An existing claim is used as it is.
    docs = render({"embedder": {"modelCache": {"existingClaim": "museum-models"}}})
    pod = workload(docs, "embedder")["spec"]["template"]["spec"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "museum-models"}} in pod["volumes"]
    assert not find(docs, "PersistentVolumeClaim", component("embedder") + "-models")


# ---- search: store modes -----------------------------------------------------------------------


def test_embedded_store_is_a_single_replica_statefulset_with_a_claim_and_no_autoscaler() -> None:
    docs = render(VALUE_SETS["cpu-only"])
    search = workload(docs, "search")
    assert search["kind"] == "StatefulSet" and search["spec"]["replicas"] == 1
    assert search["spec"]["serviceName"] == component("search") + "-headless"
    one(docs, "Service", component("search") + "-headless")
    (claim,) = search["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    variables = env(container(search))
    assert variables["VITRINE_SEARCH_DATA_DIR"] == "/var/lib/vitrine/search"
    assert "VITRINE_SEARCH_QDRANT_URL" not in variables
    assert [h["metadata"]["name"] for h in find(docs, "HorizontalPodAutoscaler")] == [component("tagger")]


def test_external_qdrant_makes_search_a_scalable_deployment_with_the_key_from_the_secret() -> None:
    docs = render(VALUE_SETS["gpu"])
    search = workload(docs, "search")
    assert search["kind"] == "Deployment" and "volumeClaimTemplates" not in search["spec"]
    variables = env(container(search))
    assert variables["VITRINE_SEARCH_QDRANT_URL"] == "http://qdrant.databases:6333"
    secret = one(docs, "Secret", f"{RELEASE}-vitrine")
    assert variables["VITRINE_SEARCH_QDRANT_API_KEY"] == {
        "secretKeyRef": {"name": secret["metadata"]["name"], "key": "qdrant-api-key"}
    }
    assert base64.b64decode(secret["data"]["qdrant-api-key"]).decode() == "example-qdrant-key"
    hpa = one(docs, "HorizontalPodAutoscaler", component("search"))
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 8


def test_qdrant_subchart_is_reached_at_its_service() -> None:
    search = workload(render(VALUE_SETS["qdrant-subchart"]), "search")
    assert search["kind"] == "Deployment"
    assert env(container(search))["VITRINE_SEARCH_QDRANT_URL"] == f"http://{RELEASE}-qdrant:6333"
    override = {"qdrant": {"enabled": True, "fullnameOverride": "vectors"}}
    assert env(container(workload(render(override), "search")))["VITRINE_SEARCH_QDRANT_URL"] == "http://vectors:6333"


# ---- secrets ---------------------------------------------------------------------------------


def test_secret_values_reach_the_services_only_through_the_secret() -> None:
    values = VALUE_SETS["gpu"]
    docs = render(values)
    secret = one(docs, "Secret", f"{RELEASE}-vitrine")
    assert set(secret["data"]) == {"qdrant-api-key", "feedback-database-url", "huggingface-token"}
    tagger = env(container(workload(docs, "tagger")))
    assert tagger["VITRINE_TAGGER_FEEDBACK_DATABASE_URL"]["secretKeyRef"]["key"] == "feedback-database-url"
    assert env(container(workload(docs, "embedder")))["HF_TOKEN"]["secretKeyRef"]["key"] == "huggingface-token"
    plain = "\n".join(text for path, text in render_files(values).items() if not path.endswith("secret.yaml"))
    for value in ("example-qdrant-key", "example-password", "hf_example_token"):
        assert value not in plain, f"{value} appears outside the Secret"
    # Pods restart when the Secret changes.
    annotations = workload(docs, "tagger")["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/secret"])


def test_an_existing_secret_replaces_the_charts_own() -> None:
    docs = render(VALUE_SETS["external-qdrant"])
    assert not find(docs, "Secret")
    key = env(container(workload(docs, "search")))["VITRINE_SEARCH_QDRANT_API_KEY"]
    assert key == {"secretKeyRef": {"name": "vitrine-credentials", "key": "qdrant-api-key", "optional": True}}
    # The feedback database's URL is required: without it the tagger must not start at all.
    url = env(container(workload(docs, "tagger")))["VITRINE_TAGGER_FEEDBACK_DATABASE_URL"]
    assert url == {"secretKeyRef": {"name": "vitrine-credentials", "key": "feedback-database-url"}}
    # No secret values and no existing Secret: only the generated PostgreSQL password's Secret.
    docs = render({})
    assert [s["metadata"]["name"] for s in find(docs, "Secret")] == [component("postgresql")]
    assert "VITRINE_SEARCH_QDRANT_API_KEY" not in env(container(workload(docs, "search")))


def test_the_write_token_reaches_every_service_from_the_secret() -> None:
    values = {"secrets": {"authToken": "example-write-token"}}
    docs = render(values)
    secret = one(docs, "Secret", f"{RELEASE}-vitrine")
    assert base64.b64decode(secret["data"]["auth-token"]).decode() == "example-write-token"
    for name in ("search", "tagger", "embedder"):
        variable = env(container(workload(docs, name)))[f"VITRINE_{name.upper()}_AUTH_TOKEN"]
        assert variable["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "auth-token"}
    # The explorer is a client of the tagger: it sends the token with feedback (its WRITE_TOKEN).
    explorer = env(container(workload(docs, "explorer")))
    assert explorer["VITRINE_EXPLORER_WRITE_TOKEN"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "auth-token",
    }
    assert "VITRINE_EXPLORER_AUTH_TOKEN" not in explorer
    plain = "\n".join(text for path, text in render_files(values).items() if not path.endswith("secret.yaml"))
    assert "example-write-token" not in plain
    assert "VITRINE_SEARCH_AUTH_TOKEN" not in env(container(workload(render({}), "search")))
    assert "VITRINE_EXPLORER_WRITE_TOKEN" not in env(container(workload(render({}), "explorer")))
    # From an existing Secret: optional, like every other key.
    token = env(container(workload(render(VALUE_SETS["external-qdrant"]), "explorer")))["VITRINE_EXPLORER_WRITE_TOKEN"]
    assert token == {"secretKeyRef": {"name": "vitrine-credentials", "key": "auth-token", "optional": True}}


# ---- availability: autoscaling, disruption budgets, network policies -------------------------


def test_autoscalers_disruption_budgets_and_network_policies() -> None:
    docs = render(VALUE_SETS["gpu"])
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in find(docs, "HorizontalPodAutoscaler")}
    assert set(hpas) == {component("tagger"), component("search"), component("explorer")}
    for hpa in hpas.values():
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["averageUtilization"] == 70
    pdbs = {p["metadata"]["name"]: p["spec"] for p in find(docs, "PodDisruptionBudget")}
    assert pdbs == {component(n): pdbs[component(n)] for n in (*COMPONENTS, "explorer")}
    assert all(spec["maxUnavailable"] == 1 for spec in pdbs.values())

    policies = {p["metadata"]["name"]: p["spec"] for p in find(docs, "NetworkPolicy")}
    assert set(policies) == {component(n) for n in (*COMPONENTS, "explorer")}
    release = {"app.kubernetes.io/name": "vitrine", "app.kubernetes.io/instance": RELEASE}
    release_pods = {"podSelector": {"matchLabels": release}}
    monitoring = VALUE_SETS["gpu"]["networkPolicy"]["metricsScrapers"]
    grpc_rule, metrics_rule = policies[component("embedder")]["ingress"]
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    assert grpc_rule["from"] == [release_pods], "only this release's pods may call the embedder"
    assert metrics_rule == {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": monitoring}
    for name in ("tagger", "search"):
        grpc_rule, _ = policies[component(name)]["ingress"]
        assert grpc_rule["from"] == [release_pods, *VALUE_SETS["gpu"]["networkPolicy"]["apiClients"]]
    # The explorer's page: from this release's pods (helm test) and explorerClients (the Ingress
    # controller); it calls search and tagger as one of this release's pods.
    http_rule, metrics_rule = policies[component("explorer")]["ingress"]
    assert http_rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert http_rule["from"] == [release_pods, *VALUE_SETS["gpu"]["networkPolicy"]["explorerClients"]]
    assert metrics_rule == {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": monitoring}
    explorer_pod = workload(docs, "explorer")["spec"]["template"]["metadata"]["labels"]
    assert release.items() <= explorer_pod.items()
    # Without apiClients, tagger and search take gRPC from anywhere (museum systems call them);
    # without explorerClients, the page is open to any client.
    policies = {p["metadata"]["name"]: p["spec"] for p in find(render({}), "NetworkPolicy")}
    assert "from" not in policies[component("search")]["ingress"][0]
    assert "from" not in policies[component("explorer")]["ingress"][0]


# ---- monitoring ------------------------------------------------------------------------------


def test_service_monitors_scrape_each_metrics_port_with_the_rules_job_names() -> None:
    docs = render(VALUE_SETS["cpu-only"])
    monitors = find(docs, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {component(n) for n in (*COMPONENTS, "explorer")}
    services = find(docs, "Service")
    for monitor in monitors:
        name = monitor["metadata"]["name"].removeprefix(f"{RELEASE}-vitrine-")
        spec = monitor["spec"]
        assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        selected = [
            s
            for s in services
            if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
            and "vitrine.io/headless" not in s["metadata"]["labels"]
        ]
        assert [s["metadata"]["name"] for s in selected] == [component(name)]
        assert "metrics" in {p["name"] for p in selected[0]["spec"]["ports"]}
        (endpoint,) = spec["endpoints"]
        assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
        assert endpoint["honorLabels"] is True, "vitrine_ready's own `service` label must win"
        # job is the workload's name (two releases stay apart); vitrine_component is what rules select.
        assert {"action": "replace", "targetLabel": "job", "replacement": component(name)} in endpoint["relabelings"]
        assert {"action": "replace", "targetLabel": "vitrine_component", "replacement": name} in endpoint["relabelings"]


def test_prometheus_rule_and_dashboard_ship_the_files_unchanged() -> None:
    docs = render(VALUE_SETS["cpu-only"])
    (rule,) = find(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())
    (dashboard,) = find(docs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["vitrine-dashboard.json"]) == json.loads(DASHBOARD_FILE.read_text())
    templates = {t["name"]: t["data"] for t in _templates()}
    assert '.Files.Get "files/prometheus/vitrine-rules.yaml"' in templates["templates/prometheusrule.yaml"]
    assert '.Files.Get "files/grafana/vitrine-dashboard.json"' in templates["templates/grafana-dashboard.yaml"]


def _templates() -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        return chart.templates


@pytest.mark.parametrize("enabled", ["auto", False])
def test_operator_resources_need_the_crds_or_an_explicit_true(enabled: str | bool) -> None:
    # Rendered offline, the cluster has no monitoring.coreos.com/v1: "auto" renders nothing.
    values = {"metrics": {"serviceMonitor": {"enabled": enabled}, "prometheusRule": {"enabled": enabled}}}
    docs = render(values)
    assert not find(docs, "ServiceMonitor") and not find(docs, "PrometheusRule")
    assert find(docs, "ConfigMap"), "the dashboard ConfigMap needs no CRD"


def test_notes_carry_the_example_scrape_config() -> None:
    notes = render_files(VALUE_SETS["external-qdrant"])["vitrine/templates/NOTES.txt"]
    example = (CHART / "files" / "prometheus" / "scrape-config.example.yaml").read_text()
    assert example in notes
    assert "https://qdrant.example.org:6333" in notes and "CPU profile" in notes


# ---- values.yaml is documented -----------------------------------------------------------------


def test_every_value_is_documented() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    list_indent: int | None = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if list_indent is not None and indent > list_indent:
            continue  # inside a list item (e.g. a toleration): documented by the key above the list
        list_indent = None
        if stripped.startswith("- "):
            list_indent = indent
            continue
        if not re.match(r"^[\w./-]+:", stripped):
            continue
        above = lines[i - 1].strip() if i else ""
        if not above.startswith("#") and " # " not in line:
            undocumented.append(f"line {i + 1}: {stripped}")
    assert not undocumented, "values without a comment:\n" + "\n".join(undocumented)
