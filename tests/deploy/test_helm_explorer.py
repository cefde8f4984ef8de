"""The explorer's part of the Helm chart (its Deployment, Service, Ingress, image files, the helm
test and the notes), rendered offline like test_helm_chart.py."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.deploy.chart import (
    COMPONENTS,
    EXPLORER_PORTS,
    KUBE_VERSIONS,
    NAMESPACE,
    PORTS,
    SCHEMAS,
    VALUE_SETS,
    component,
    container,
    env,
    find,
    one,
    render,
    render_files,
    workload,
)

# ---- explorer: the web page ------------------------------------------------------------------


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_explorer_listens_in_the_container_with_http_probes_and_graceful_shutdown(value_set: str) -> None:
    docs = render(VALUE_SETS[value_set])
    deployment = workload(docs, "explorer")
    assert deployment["kind"] == "Deployment", "the explorer is stateless"
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment, "explorer")
    variables = env(c)
    http_port, metrics_port = EXPLORER_PORTS
    assert variables["VITRINE_EXPLORER_HOST"] == "0.0.0.0"
    assert variables["VITRINE_EXPLORER_PORT"] == str(http_port)
    assert variables["VITRINE_EXPLORER_METRICS_PORT"] == str(metrics_port)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": http_port, "metrics": metrics_port}
    # Liveness and start-up: the process answers; readiness: the search service answers.
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    grace = float(variables["VITRINE_EXPLORER_GRACE_SECONDS"])
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert pod["terminationGracePeriodSeconds"] > grace + pre_stop
    # Stateless: a writable /tmp and, at most, the read-only image files.
    assert not [v for v in find(docs, "PersistentVolumeClaim") if "explorer" in v["metadata"]["name"]]
    for volume in pod["volumes"]:
        assert "emptyDir" in volume or volume["persistentVolumeClaim"]["readOnly"] is True, volume
    assert variables["VITRINE_EXPLORER_LOG_LEVEL"] == "INFO" and variables["VITRINE_EXPLORER_LOG_FORMAT"] == "json"


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_explorer_calls_this_releases_search_and_tagger_services(value_set: str) -> None:
    docs = render(VALUE_SETS[value_set])
    variables = env(container(workload(docs, "explorer")))
    for name in ("search", "tagger"):
        address = variables[f"VITRINE_EXPLORER_{name.upper()}_ADDRESS"]
        host, _, port = address.removeprefix("dns:///").rpartition(":")
        assert address.startswith("dns:///") and host == component(name) + "-headless"
        service = one(docs, "Service", host)
        assert service["spec"]["clusterIP"] == "None"
        grpc_ports = [p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"]
        assert grpc_ports == [int(port)] == [PORTS[name][0]]
    # The Service: port 80 to the page, and the metrics port.
    service = one(docs, "Service", component("explorer"))
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"http": (80, "http"), "metrics": (EXPLORER_PORTS[1], "metrics")}


def test_explorer_defaults_two_replicas_no_ingress_no_image_files() -> None:
    docs = render({})
    deployment = workload(docs, "explorer")
    assert deployment["spec"]["replicas"] == 2
    c = container(deployment)
    assert c["image"] == "vitrine/explorer:0.1.0"
    assert "VITRINE_EXPLORER_IMAGE_ROOTS" not in env(c)
    assert [v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]] == ["tmp"]
    assert not find(docs, "Ingress")
    assert component("explorer") not in {h["metadata"]["name"] for h in find(docs, "HorizontalPodAutoscaler")}
    one(docs, "PodDisruptionBudget", component("explorer"))
    # The GPU value set's registry and tag apply to the explorer image too.
    gpu = container(workload(render(VALUE_SETS["gpu"]), "explorer"))
    assert gpu["image"] == "registry.example.org/museum/vitrine/explorer:0.1.0"


def test_explorer_serves_image_files_from_a_read_only_claim() -> None:
    values = VALUE_SETS["external-qdrant"]
    deployment = workload(render(values), "explorer")
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    assert env(c)["VITRINE_EXPLORER_IMAGE_ROOTS"] == "/srv/images"
    assert {"name": "images", "mountPath": "/srv/images", "readOnly": True} in c["volumeMounts"]
    assert {"name": "images", "persistentVolumeClaim": {"claimName": "collection-images", "readOnly": True}} in pod[
        "volumes"
    ]
    assert deployment["spec"]["replicas"] == 3


def test_explorer_ingress_reaches_the_page() -> None:
    docs = render(VALUE_SETS["gpu"])
    ingress = one(docs, "Ingress", component("explorer"))
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["collection.example.org"], "secretName": "collection-tls"}]
    (rule,) = spec["rules"]
    assert rule["host"] == "collection.example.org"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/" and path["pathType"] == "Prefix"
    assert path["backend"]["service"] == {"name": component("explorer"), "port": {"name": "http"}}
    assert ingress["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/auth-type": "basic"}
    # Autoscaled: the HPA owns the replica count.
    hpa = one(docs, "HorizontalPodAutoscaler", component("explorer"))
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": component("explorer"),
    }
    assert "replicas" not in workload(docs, "explorer")["spec"]
    # Without a host or class: every host, the default IngressClass.
    docs = render({"explorer": {"ingress": {"enabled": True}}})
    spec = one(docs, "Ingress", component("explorer"))["spec"]
    assert "ingressClassName" not in spec and "tls" not in spec and "host" not in spec["rules"][0]


def test_explorer_can_be_left_out() -> None:
    values = {**VALUE_SETS["cpu-only"], "explorer": {"enabled": False}}
    docs = render(values)
    leftover = [
        (d["kind"], d["metadata"]["name"])
        for d in docs
        if "explorer" in d["metadata"]["name"]
        or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "explorer"
    ]
    assert not leftover
    files = render_files(values)
    # (The example scrape config the notes end with lists every job; one without pods finds nothing.)
    assert "explorer" not in files["vitrine/templates/NOTES.txt"].split("Prometheus without the Operator")[0]
    (test_pod,) = find(docs, "Pod")
    assert not [a for a in test_pod["spec"]["containers"][0]["command"][3:] if "explorer" in a]
    # The rest is unchanged: three gRPC services, their policies and monitors.
    assert {d["metadata"]["name"] for d in find(docs, "ServiceMonitor")} == {component(n) for n in COMPONENTS}
    assert {d["metadata"]["name"] for d in find(docs, "NetworkPolicy")} == {
        component(n) for n in (*COMPONENTS, "postgresql")
    }
    for doc in docs:
        if doc["kind"] not in SCHEMAS:
            kubernetes_validate.validate(doc, KUBE_VERSIONS[0], strict=True)


def test_helm_test_checks_the_explorer_page_too() -> None:
    docs = render(VALUE_SETS["cpu-only"])
    (pod,) = [d for d in docs if d["kind"] == "Pod"]
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["python", "-c"]
    compile(command[2], "helm-test", "exec")  # the script is valid Python
    assert command[3:] == [
        f"{component('embedder')}:50051",
        f"{component('tagger')}:50052/vitrine.v1.TaggerService",
        f"{component('search')}:50053",
        f"http://{component('explorer')}:80/readyz",
    ]


def test_notes_tell_how_to_open_the_page() -> None:
    notes = render_files(VALUE_SETS["cpu-only"])["vitrine/templates/NOTES.txt"]
    assert f"kubectl -n {NAMESPACE} port-forward svc/{component('explorer')} 8080:80" in notes
    assert "http://127.0.0.1:8080/" in notes
    assert "vitrine-explorer" in notes
    notes = render_files(VALUE_SETS["gpu"])["vitrine/templates/NOTES.txt"]
    assert "https://collection.example.org/" in notes
