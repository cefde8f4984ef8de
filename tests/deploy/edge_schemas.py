"""JSON schemas of the custom resources the chart renders for the edge and for autoscaling:
Gateway API's GRPCRoute (gateway.networking.k8s.io/v1) and KEDA's ScaledObject (keda.sh/v1alpha1).

kubernetes-validate knows only built-in kinds and the CRDs cannot be downloaded here, so, like
crd_schemas.py, this is a structural check written from the two API references: the fields the
chart may use, their types, enums and required fields, unknown fields refused (like strict mode).
"""

from __future__ import annotations

from typing import Any

from tests.deploy.crd_schemas import METADATA

# RFC 1123 host names, optionally with a leading wildcard label (Gateway API's Hostname).
HOSTNAME = {"type": "string", "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"}
NAME = {"type": "string", "minLength": 1, "maxLength": 253, "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}

PARENT_REF: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "group": {"type": "string"},
        "kind": {"type": "string"},
        "namespace": NAME,
        "name": NAME,
        "sectionName": {"type": "string"},
        "port": PORT,
    },
    "additionalProperties": False,
}

GRPC_ROUTE: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
        "kind": {"const": "GRPCRoute"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "properties": {
                "parentRefs": {"type": "array", "minItems": 1, "maxItems": 32, "items": PARENT_REF},
                "hostnames": {"type": "array", "maxItems": 16, "items": HOSTNAME},
                "rules": {
                    "type": "array",
                    "maxItems": 16,
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "matches": {
                                "type": "array",
                                "maxItems": 64,
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "method": {
                                            "type": "object",
                                            "properties": {
                                                "type": {"enum": ["Exact", "RegularExpression"]},
                                                "service": {"type": "string", "maxLength": 1024},
                                                "method": {"type": "string", "maxLength": 1024},
                                            },
                                            "anyOf": [{"required": ["service"]}, {"required": ["method"]}],
                                            "additionalProperties": False,
                                        },
                                        "headers": {"type": "array"},
                                    },
                                    "additionalProperties": False,
                                },
                            },
                            "backendRefs": {
                                "type": "array",
                                "maxItems": 16,
                                "items": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {
                                        "group": {"type": "string"},
                                        "kind": {"type": "string"},
                                        "name": NAME,
                                        "namespace": NAME,
                                        "port": PORT,
                                        "weight": {"type": "integer", "minimum": 0, "maximum": 1000000},
                                    },
                                    "additionalProperties": False,
                                },
                            },
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

SCALED_OBJECT: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": NAME,
                        "envSourceContainerName": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            # KEDA's trigger metadata is a map of strings (numbers quoted).
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

SCHEMAS = {"GRPCRoute": GRPC_ROUTE, "ScaledObject": SCALED_OBJECT}
