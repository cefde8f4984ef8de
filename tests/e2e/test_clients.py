"""The client examples beyond Python, run against the running system: the JavaScript one
(clients/js, @grpc/grpc-js loading protos/ at run time) with node, and the Go one (clients/go,
stubs from buf.gen.yaml, built once per session against Debian's Go gRPC packages). Each does
Search, Recommend and SuggestTags and must answer exactly what the Python stubs answer for the
same requests. Also: the offline Java and C# generation the README shows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.e2e.conftest import DEMO_OBJECT, System
from tests.servers import ROOT
from vitrine.v1 import common_pb2, search_pb2, search_pb2_grpc, tagger_pb2, tagger_pb2_grpc

QUERY = "ship in a storm at sea"
LIKED = "met-247009"  # a painting of the session's collection (README's Recommend example)
SEA_TAGS = {"sea", "ship, sailing", "beach", "wave", "seascape", "shipping"}
JS_CLIENT = ROOT / "clients" / "js"

Client = Callable[..., subprocess.CompletedProcess[str]]


def require(tool: str) -> str:
    found = shutil.which(tool)
    assert found, f"{tool} is not installed: `make tools` installs it"
    return found


@pytest.fixture(scope="session")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("go", "protoc-gen-go", "protoc-gen-go-grpc"):
        require(tool)
    out = tmp_path_factory.mktemp("clients")
    built = subprocess.run(
        ["bash", str(ROOT / "clients" / "go" / "build.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, f"clients/go/build.sh failed:\n{built.stdout}{built.stderr}"
    return out / "go" / "bin" / "vitrine-client"


@pytest.fixture(scope="session")
def js_command() -> list[str]:
    node = require("node")
    assert (JS_CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir(), (
        "clients/js has no node_modules: `make tools` runs `npm ci` there"
    )
    return [node, str(JS_CLIENT / "index.mjs")]


@pytest.fixture(params=["js", "go"])
def client(request: pytest.FixtureRequest) -> Client:
    """Runs one example with the given arguments (both take the same flags)."""
    command = (
        request.getfixturevalue("js_command") if request.param == "js" else [str(request.getfixturevalue("go_binary"))]
    )

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})}
        )

    return run


def hit_ids(hits: list[Any]) -> list[str]:
    return [h["id"] if isinstance(h, dict) else h.object.id for h in hits]


def test_client_searches_recommends_and_suggests_like_the_python_stubs(system: System, client: Client) -> None:
    result = client(
        "--search", system.search.address, "--tagger", system.tagger.address,
        "--query", QUERY, "--page-size", "8", "--like", LIKED, "--object", DEMO_OBJECT, "--k", "6",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)

    search = search_pb2_grpc.SearchServiceStub(grpc.insecure_channel(system.search.address))
    tagger = tagger_pb2_grpc.TaggerServiceStub(grpc.insecure_channel(system.tagger.address))
    found = search.Search(search_pb2.SearchRequest(query=QUERY, page=common_pb2.PageRequest(page_size=8)), timeout=60)
    recommended = search.Recommend(search_pb2.RecommendRequest(liked_ids=[LIKED], k=6), timeout=60)
    stored = search.GetObject(search_pb2.GetObjectRequest(id=DEMO_OBJECT), timeout=30).object
    suggested = tagger.SuggestTags(tagger_pb2.SuggestTagsRequest(object=stored, k=6), timeout=60)

    assert answer["search"]["query"] == QUERY
    assert len(answer["search"]["hits"]) == 8
    assert hit_ids(answer["search"]["hits"]) == hit_ids(found.hits)
    assert [h["score"] for h in answer["search"]["hits"]] == pytest.approx([h.score for h in found.hits], rel=1e-5)
    assert answer["search"]["hits"][0]["title"] == found.hits[0].object.title

    assert answer["recommend"]["liked_ids"] == [LIKED]
    assert hit_ids(answer["recommend"]["hits"]) == hit_ids(recommended.hits)
    assert len(answer["recommend"]["hits"]) == 6 and LIKED not in hit_ids(answer["recommend"]["hits"])

    suggest = answer["suggest"]
    assert suggest["object_id"] == DEMO_OBJECT and suggest["model_version"] == "e2e-v1"
    assert [s["tag"] for s in suggest["suggestions"]] == [s.tag.id for s in suggested.suggestions]
    assert [s["score"] for s in suggest["suggestions"]] == pytest.approx(
        [s.score for s in suggested.suggestions], rel=1e-5
    )
    assert SEA_TAGS & {s["tag"] for s in suggest["suggestions"]}
    kinds = {tagger_pb2.SuggestionKind.Name(s.kind) for s in suggested.suggestions}
    assert {s["kind"] for s in suggest["suggestions"]} == kinds


def test_client_takes_addresses_from_the_environment_and_likes_the_first_hit(system: System, client: Client) -> None:
    result = client(
        "--query", QUERY, "--k", "3",
        env={"VITRINE_CLIENT_SEARCH": system.search.address, "VITRINE_CLIENT_TAGGER": system.tagger.address},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    first = answer["search"]["hits"][0]["id"]
    assert answer["recommend"]["liked_ids"] == [first] and answer["suggest"]["object_id"] == first
    assert first not in hit_ids(answer["recommend"]["hits"])


def test_client_reports_the_grpc_status_and_exits_non_zero(system: System, client: Client) -> None:
    result = client(
        "--search", system.search.address, "--tagger", system.tagger.address,
        "--like", LIKED, "--object", "NO-SUCH-ID",
    )  # fmt: skip
    assert result.returncode == 1
    assert "GetObject failed: NOT_FOUND" in result.stderr and "NO-SUCH-ID" in result.stderr
    assert result.stdout == ""


def test_java_and_csharp_messages_generate_offline_with_protoc(tmp_path: Path) -> None:
    """The README's protoc commands for Java and C#: the protos' java_package,
    java_multiple_files and csharp_namespace options give the documented packages."""
    protoc = require("protoc")
    protos = sorted(str(p.relative_to(ROOT / "protos")) for p in (ROOT / "protos" / "vitrine" / "v1").glob("*.proto"))
    (tmp_path / "java").mkdir()
    (tmp_path / "csharp").mkdir()
    generated = subprocess.run(
        [protoc, "-I", "protos", f"--java_out={tmp_path / 'java'}", f"--csharp_out={tmp_path / 'csharp'}", *protos],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stderr
    java = tmp_path / "java" / "org" / "vitrine" / "v1"
    assert (java / "SearchRequest.java").is_file() and (java / "TagSuggestion.java").is_file()  # one class a file
    assert "package org.vitrine.v1;" in (java / "SearchRequest.java").read_text()
    csharp = (tmp_path / "csharp" / "Search.cs").read_text()
    assert "namespace Vitrine.V1 {" in csharp
