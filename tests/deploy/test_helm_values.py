"""The chart's values: values.schema.json refuses wrong values with a message naming the field,
accepts every value set and covers every value; the `fail` checks of templates/_feedback.tpl
refuse combinations across sections with what to change."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

from tests.deploy.chart import VALUE_SETS, render
from tests.deploy.observability import CHART


def _render_error(values: dict[str, Any]) -> str:
    with pytest.raises((helm.HelmRenderError, helm.HelmValuesError)) as caught:
        render(values)
    return str(caught.value)


SQLITE = {"tagger": {"feedbackStore": {"mode": "sqlite"}, "autoscaling": {"enabled": False}, "replicaCount": 1}}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # The chart's own checks (templates/_feedback.tpl): combinations across sections.
        ({"postgresql": {"enabled": False}}, "no database for curators' feedback"),
        (
            {"tagger": {"feedbackDatabaseUrl": "postgresql://u@db/feedback"}},
            "tagger.feedbackDatabaseUrl names an external database but postgresql.enabled=true",
        ),
        (
            {"tagger": {"modelStore": {"create": False}}},
            "tagger.modelStore needs a claim",
        ),
        (
            {"tagger": {"modelStore": {"accessModes": ["ReadWriteOnce"]}}},
            "tagger.modelStore.accessModes needs ReadWriteMany",
        ),
        (
            {"embedder": {"replicaCount": 2}},
            "several embedder pods share the model cache: set embedder.modelCache.accessModes",
        ),
        (
            {"tagger": {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}},
            "tagger.autoscaling.minReplicas (5) is above maxReplicas (3)",
        ),
    ],
)
def test_fail_checks_name_what_to_change(values: dict[str, Any], expected: str) -> None:
    assert expected in _render_error(values)


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"logLevel": "LOUD"}, "/logLevel", "must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR'"),
        ({"logFormat": "xml"}, "/logFormat", "must be one of 'json', 'text'"),
        ({"tagger": {"replicas": 3}}, "/tagger", "additional properties 'replicas' not allowed"),
        ({"tagger": {"feedbackStore": {"mode": "mysql"}}}, "/tagger/feedbackStore/mode", "'postgresql', 'sqlite'"),
        ({"tagger": {"feedbackStore": {"mode": "sqlite"}}}, "/tagger/replicaCount", "maximum"),
        ({"tagger": {"feedbackStore": {"mode": "sqlite"}}}, "/tagger/autoscaling/enabled", "must be false"),
        (SQLITE, "/postgresql/enabled", "must be false"),
        ({"tagger": {"feedbackDatabaseUrl": "mysql://db"}}, "/tagger/feedbackDatabaseUrl", "does not match pattern"),
        ({"tagger": {"training": {"enabled": True}}}, "/tagger/training/dataset/url", "does not match pattern"),
        (
            {"tagger": {"training": {"enabled": True, "dataset": {"kind": "configMap", "configMap": {"name": "d"}}}}},
            "/tagger/training/dataset/configMap/key",
            "minLength",
        ),
        ({"tagger": {"training": {"dataset": {"kind": "s3"}}}}, "/tagger/training/dataset/kind", "must be one of"),
        ({"tagger": {"retraining": {"enabled": True, "schedule": "weekly"}}}, "/tagger/retraining/schedule", "pattern"),
        ({"tagger": {"retraining": {"enabled": True}}}, "/tagger/training/evalDataset/kind", "minLength"),
        ({"embedder": {"modelSource": "s3"}}, "/embedder/modelSource", "'fetch', 'image', 'claim'"),
        ({"embedder": {"modelSource": "claim"}}, "/embedder/modelCache/existingClaim", "minLength"),
        ({"embedder": {"models": "mpnet,gpt"}}, "/embedder/models", "does not match pattern"),
        ({"embedder": {"autoscaling": {"kind": "vpa"}}}, "/embedder/autoscaling/kind", "'keda', 'hpa'"),
        ({"embedder": {"gpu": {"device": "gpu0"}}}, "/embedder/gpu/device", "pattern"),
        ({"embedder": {"replicaCount": "two"}}, "/embedder/replicaCount", "got string, want integer"),
        ({"search": {"service": {"port": 70000}}}, "/search/service/port", "maximum"),
        ({"search": {"embedded": {"size": "ten gigs"}}}, "/search/embedded/size", "pattern"),
        ({"tagger": {"modelStore": {"accessModes": ["ReadWriteAll"]}}}, "/tagger/modelStore/accessModes/0", "one of"),
        ({"metrics": {"serviceMonitor": {"enabled": "yes"}}}, "/metrics/serviceMonitor/enabled", "'auto', true, false"),
        ({"edge": {"ingress": {"enabled": True}}}, "/edge/ingress/tlsSecretName", "minLength"),
        ({"edge": {"grpcRoute": {"enabled": True}}}, "/edge/grpcRoute/parentRefs", "minItems"),
        ({"tracing": {"otlpEndpoint": "collector:4317"}}, "/tracing/otlpEndpoint", "pattern"),
        ({"explorer": {"images": {"mountPath": "images"}}}, "/explorer/images/mountPath", "pattern"),
    ],
)
def test_schema_refuses_wrong_values_naming_the_field(values: dict[str, Any], field: str, words: str) -> None:
    message = _render_error(values)
    assert "values don't meet the specifications of the schema" in message
    assert f"at '{field}'" in message and words in message, message


def test_schema_accepts_the_defaults_and_every_value_set() -> None:
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    with helm.Chart.load(CHART) as chart:
        for values in VALUE_SETS.values():
            chart.validate_schema(values)
        defaults = chart.values
    jsonschema.Draft7Validator(schema).validate(defaults)


def test_schema_covers_every_value() -> None:
    """Every key of values.yaml has a schema entry, so a new value cannot slip past unchecked
    (objects are closed: additionalProperties false, except free-form Kubernetes fields)."""
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    missing: list[str] = []

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        if not isinstance(value, dict) or "properties" not in node:
            return
        for key, child in value.items():
            if key not in node["properties"]:
                missing.append(f"{path}.{key}".lstrip("."))
            else:
                walk(child, node["properties"][key], f"{path}.{key}")

    walk(yaml.safe_load((CHART / "values.yaml").read_text()), schema, "")
    assert not missing, f"values without a schema entry: {missing}"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"tagger": {"replicaCount": 2}},
            "tagger.feedbackStore.mode=sqlite is one file on one pod, but tagger.replicaCount=2",
        ),
        (
            {"tagger": {"autoscaling": {"enabled": True}}},
            "set tagger.autoscaling.enabled=false and tagger.replicaCount=1",
        ),
        ({"postgresql": {"enabled": True}}, "set postgresql.enabled=false too"),
        ({"tagger": {"retraining": {"enabled": True}}}, "tagger.retraining reads the feedback from PostgreSQL"),
    ],
)
def test_sqlite_checks_hold_without_the_schema(values: dict[str, Any], expected: str, tmp_path: Path) -> None:
    """The schema refuses these first; the templates refuse them too, for `--skip-schema-validation`."""
    copy_dir = tmp_path / "vitrine"
    shutil.copytree(CHART, copy_dir)
    (copy_dir / "values.schema.json").unlink()
    sqlite = copy.deepcopy(VALUE_SETS["sqlite-on-claim"])
    for key, value in values.items():
        sqlite[key] = {**sqlite.get(key, {}), **value}
    with helm.Chart.load(copy_dir) as chart:
        assert chart.render(VALUE_SETS["sqlite-on-claim"], name="museum", namespace="collections")
        with pytest.raises(helm.HelmRenderError) as caught:
            chart.render(sqlite, name="museum", namespace="collections")
    assert expected in str(caught.value)
