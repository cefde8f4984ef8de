"""`buf breaking` (run by `make lint`) against the last release of the contract,
protos/releases/v1.binpb: today's protos pass, and a copy of them with one v1 break each (a
renumbered, renamed or retyped field, a renamed enum value, a deleted RPC or service) fails with
the rule that names the break, while additive changes and generated-code options pass."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

BUF = ROOT / ".venv" / "bin" / "buf"
BASELINE = ROOT / "protos" / "releases" / "v1.binpb"


def breaking(workspace: Path) -> tuple[int, set[str], str]:
    """buf breaking of `workspace` (a buf.yaml and its protos) against the release image:
    exit code, the ids of the rules that failed, and the output."""
    result = subprocess.run(
        [str(BUF), "breaking", "--against", str(BASELINE), "--error-format", "json"],
        capture_output=True,
        text=True,
        cwd=workspace,
        timeout=120,
    )
    rules = {json.loads(line)["type"] for line in result.stdout.splitlines() if line.startswith("{")}
    return result.returncode, rules, result.stdout + result.stderr


def copy_of_the_protos(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "protos", tmp_path / "protos", ignore=shutil.ignore_patterns("releases"))
    return tmp_path


def edit_block(path: Path, block: str, old: str, new: str) -> None:
    """Replace the first `old` inside `block` (e.g. "message CollectionObject"), so that the
    same line in another message is left alone."""
    text = path.read_text()
    start = text.index(f"\n{block} {{\n")
    end = text.index("\n}\n", start)
    inside = text[start:end]
    assert old in inside, f"{old!r} not in {block} of {path.name}: update this test's edit"
    path.write_text(text[:start] + inside.replace(old, new, 1) + text[end:])


def delete_block(path: Path, block: str) -> None:
    text = path.read_text()
    updated = re.sub(rf"\n{re.escape(block)} \{{\n.*?\n\}}\n", "\n", text, count=1, flags=re.S)
    assert updated != text, f"{block} not in {path.name}"
    path.write_text(updated)


def test_the_baseline_is_the_v1_release_of_every_file() -> None:
    listed = subprocess.run([str(BUF), "ls-files", str(BASELINE)], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [f"vitrine/v1/{name}.proto" for name in ("common", "embedder", "search", "tagger")]


def test_todays_protos_keep_the_release_compatible() -> None:
    code, rules, output = breaking(ROOT)
    assert code == 0, f"the protos break v1 (add, never renumber or remove):\n{output}"
    assert not rules


V1 = "protos/vitrine/v1"
BREAKS = {
    "renumbered field": (
        lambda w: edit_block(
            w / V1 / "common.proto", "message CollectionObject", "string title = 2;", "string title = 42;"
        ),
        "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",
    ),
    "renamed field (JSON)": (
        lambda w: edit_block(
            w / V1 / "search.proto",
            "message RecommendRequest",
            "repeated string liked_ids = 1;",
            "repeated string liked = 1;",
        ),
        "FIELD_SAME_NAME",
    ),
    "retyped field": (
        lambda w: edit_block(w / V1 / "search.proto", "message SearchHit", "float score = 2;", "double score = 2;"),
        "FIELD_WIRE_JSON_COMPATIBLE_TYPE",
    ),
    "renamed enum value": (
        lambda w: edit_block(
            w / V1 / "search.proto",
            "enum RecommendStrategy",
            "RECOMMEND_STRATEGY_MEAN = 1;",
            "RECOMMEND_STRATEGY_AVG = 1;",
        ),
        "ENUM_VALUE_SAME_NAME",
    ),
    "deleted rpc": (
        lambda w: edit_block(
            w / V1 / "search.proto",
            "service SearchService",
            "rpc Recommend(RecommendRequest) returns (RecommendResponse);",
            "",
        ),
        "RPC_NO_DELETE",
    ),
    "deleted service": (
        lambda w: delete_block(w / V1 / "embedder.proto", "service EmbedderService"),
        "PACKAGE_SERVICE_NO_DELETE",
    ),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_a_v1_break_fails(tmp_path: Path, name: str) -> None:
    change, rule = BREAKS[name]
    workspace = copy_of_the_protos(tmp_path)
    change(workspace)
    code, rules, output = breaking(workspace)
    assert code != 0, f"{name} passed buf breaking"
    assert rule in rules, output


def test_additive_changes_and_generated_code_options_pass(tmp_path: Path) -> None:
    workspace = copy_of_the_protos(tmp_path)
    common = workspace / V1 / "common.proto"
    edit_block(common, "message CollectionObject", "string title = 2;", "string title = 2;\n  string subtitle = 900;")
    common.write_text(
        common.read_text().replace('option java_package = "org.vitrine.v1";', 'option java_package = "org.example.v1";')
    )
    with (workspace / V1 / "search.proto").open("a") as f:
        f.write("\nmessage AddedForTheTest {\n  string id = 1;\n}\n")
    code, rules, output = breaking(workspace)
    assert code == 0 and not rules, output
