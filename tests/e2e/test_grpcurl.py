"""grpcurl, the real binary a developer debugs with, against the three running services:
reflection lists the services, health answers SERVING, one RPC of each answers, and the
README's grpcurl examples work as printed."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import DEMO_OBJECT, System
from tests.servers import ROOT

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
SERVICE_NAMES = {
    "embedder": "vitrine.v1.EmbedderService",
    "tagger": "vitrine.v1.TaggerService",
    "search": "vitrine.v1.SearchService",
}
DEFAULT_ADDRESSES = {"127.0.0.1:50051": "embedder", "127.0.0.1:50052": "tagger", "127.0.0.1:50053": "search"}


def grpcurl(*args: str) -> str:
    result = subprocess.run([GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"grpcurl {' '.join(args)} failed: {result.stderr}"
    return result.stdout


@pytest.mark.parametrize("name", list(SERVICE_NAMES))
def test_reflection_lists_the_service_health_and_reflection(system: System, name: str) -> None:
    listed = grpcurl(getattr(system, name).address, "list").split()
    assert SERVICE_NAMES[name] in listed
    assert "grpc.health.v1.Health" in listed
    assert "grpc.reflection.v1alpha.ServerReflection" in listed


@pytest.mark.parametrize("name", list(SERVICE_NAMES))
def test_health_check_answers_serving(system: System, name: str) -> None:
    for service in ("", SERVICE_NAMES[name]):
        answer = json.loads(
            grpcurl(
                "-d", json.dumps({"service": service}), getattr(system, name).address, "grpc.health.v1.Health/Check"
            )
        )
        assert answer == {"status": "SERVING"}


def test_embedder_list_models(system: System) -> None:
    # grpcurl prints the proto field names; -emit-defaults shows false/0 values too.
    answer = json.loads(grpcurl("-emit-defaults", system.embedder.address, "vitrine.v1.EmbedderService/ListModels"))
    models = {m["name"]: m for m in answer["models"]}
    assert models["mpnet"]["dimension"] == 768
    assert models["efficientnet-lite0"]["dimension"] == 1360
    assert not models["mpnet"]["test_model"] and not models["efficientnet-lite0"]["test_model"]
    assert answer["text_to_image_available"] is False  # no CLIP weights here


def test_tagger_info(system: System) -> None:
    answer = json.loads(grpcurl(system.tagger.address, "vitrine.v1.TaggerService/GetTaggerInfo"))
    assert answer["model_loaded"] is True
    assert answer["model_version"] == "e2e-v1"
    assert int(answer["training_objects"]) == 1500
    assert {"knn", "omikuji", "semantic_text", "linear"} <= set(answer["components"])
    ensemble = answer["evaluation"]["ensemble"]
    assert ensemble["f1_at_5"] > answer["evaluation"]["most_frequent"]["f1_at_5"]


def test_tagger_suggests_with_explanations(system: System) -> None:
    """The README's SuggestTags example, checked in depth: a demo object, its suggestions, and
    evidence that names real training objects carrying the tag."""
    request = {
        "object": {
            "id": DEMO_OBJECT,
            "title": "A Two-Masted Sailing Ship Seen from the Shore",
            "artist": "Joseph Mallord William Turner",
            "medium": "Gouache, graphite and watercolour on paper",
            "subjects": ["sea"],
        },
        "k": 5,
        "threshold": 0.01,
    }
    answer = json.loads(
        grpcurl("-d", json.dumps(request), system.tagger.address, "vitrine.v1.TaggerService/SuggestTags")
    )
    assert answer["object_id"] == DEMO_OBJECT and answer["model_version"] == "e2e-v1"
    suggestions = answer["suggestions"]
    assert 1 <= len(suggestions) <= 5
    assert any(s["tag"]["id"] in {"sea", "ship, sailing", "beach", "wave", "seascape", "shipping"} for s in suggestions)
    sea = [s for s in suggestions if s["tag"]["id"] == "sea"]
    assert all(s["already_present"] for s in sea)
    for s in suggestions:
        explanation = s["explanation"]
        assert explanation["summary"] and explanation["tag_paths"]
        assert {c["component"] for c in explanation["components"]} >= {"knn", "omikuji", "semantic_text"}
        assert s["kind"] in ("SUGGESTION_KIND_MIMIC", "SUGGESTION_KIND_RECOMMEND")
    assert any(s["explanation"].get("similar_objects") for s in suggestions)


def test_search_get_object(system: System) -> None:
    answer = json.loads(
        grpcurl("-d", json.dumps({"id": DEMO_OBJECT}), system.search.address, "vitrine.v1.SearchService/GetObject")
    )
    assert answer["object"]["id"] == DEMO_OBJECT
    assert "Sailing Ship" in answer["object"]["title"]


def test_unknown_object_is_not_found(system: System) -> None:
    result = subprocess.run(
        [
            GRPCURL,
            "-plaintext",
            "-d",
            '{"id": "NO-SUCH-ID"}',
            system.search.address,
            "vitrine.v1.SearchService/GetObject",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "NotFound" in result.stderr and "NO-SUCH-ID" in result.stderr


def readme_grpcurl_commands() -> list[str]:
    """The one-line grpcurl commands inside the README's code blocks."""
    commands, in_code = [], False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif in_code and line.startswith("grpcurl "):
            commands.append(line.strip())
    return commands


def test_readme_examples_work(system: System) -> None:
    commands = readme_grpcurl_commands()
    assert len(commands) >= 6, "the README should show grpcurl examples for every service"
    by_name = {"embedder": system.embedder.address, "tagger": system.tagger.address, "search": system.search.address}
    for command in commands:
        argv = shlex.split(command, comments=True)  # as a shell reads it
        for i, arg in enumerate(argv):
            if arg in DEFAULT_ADDRESSES:
                argv[i] = by_name[DEFAULT_ADDRESSES[arg]]
        assert any(a in by_name.values() for a in argv), f"README example without a default address: {command}"
        result = subprocess.run([GRPCURL, *argv[1:]], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert result.returncode == 0, f"README example failed: {command}\n{result.stderr}"
        assert not re.search(r"ERROR|Code:", result.stdout), result.stdout
