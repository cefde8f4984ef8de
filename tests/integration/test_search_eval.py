"""`vitrine-search eval` end to end on small slices: a real embedder (minilm + efficientnet-lite0),
the command starting search services of its own, metrics through the service's RPCs.

The figures here come from the small test text model on 300 objects: they check the command,
not the system's quality (the reported figures come from the full run, see README)."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ServiceProcess, running_service
from vitrine.evaluation.metrics import SEARCH_METRICS as METRIC_KEYS
from vitrine.evaluation.metrics import method_metrics, ndcg_at
from vitrine.evaluation.queries import Query, generate_queries, make_typo, read_collection
from vitrine.launcher import health_status

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
TATE_DEV = DATA / "tate" / "tate_dev.jsonl.gz"
PAINTINGS = DATA / "paintings" / "metadata.jsonl"
N_OBJECTS = 300
N_QUERIES = 60
N_PAINTINGS = 200


@pytest.fixture(scope="module")
def embedder() -> Iterator[ServiceProcess]:
    with running_service("embedder", {"VITRINE_EMBEDDER_MODELS": "minilm,efficientnet-lite0"}) as service:
        yield service


def _paintings_subset(folder: Path) -> Path:
    """200 paintings: every painting of the first ten artists with 4 to 8 paintings (so that the
    artist groups exist), the rest spread over the file; image paths made absolute."""
    rows = [json.loads(line) for line in PAINTINGS.read_text().splitlines() if line.strip()]
    by_artist: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_artist[row["artist"]].append(row)
    artists = sorted(a for a, rs in by_artist.items() if 4 <= len(rs) <= 8 and not a.startswith("Unknown"))[:10]
    chosen = [r for a in artists for r in by_artist[a]]
    others = [r for r in rows if r["artist"] not in artists]
    chosen += others[:: len(others) // (N_PAINTINGS - len(chosen))][: N_PAINTINGS - len(chosen)]
    path = folder / "metadata.jsonl"
    with path.open("w") as handle:
        for row in chosen:
            handle.write(json.dumps({**row, "file": str(PAINTINGS.parent / row["file"])}) + "\n")
    return path


def run_eval(embedder: ServiceProcess, out: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vitrine.search.cli",
            "eval",
            "--embedder",
            embedder.address,
            "--text-model",
            "minilm",
            "--out",
            str(out),
            "--quiet",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "| method | nDCG@12 |" in done.stdout  # the table is printed
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def generated(embedder: ServiceProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("eval-generated")
    paintings = _paintings_subset(tmp_path_factory.mktemp("paintings"))
    metrics = run_eval(
        embedder,
        out,
        "--data",
        str(TATE_DEV),
        "--limit",
        str(N_OBJECTS),
        "--max-queries",
        str(N_QUERIES),
        "--max-groups",
        "20",
        "--paintings",
        str(paintings),
    )
    return out, metrics


def test_metrics_have_the_contract_shape(generated: tuple[Path, dict[str, Any]]) -> None:
    out, metrics = generated
    # No CLIP weights on this embedder: `image` is left out, and a note says why.
    assert set(metrics["methods"]) == {"fused", "text", "keyword", "tfidf"}
    assert any(note.startswith("image: skipped") for note in metrics["notes"])
    for name, row in metrics["methods"].items():
        assert tuple(row) == METRIC_KEYS, name
        for key, value in row.items():
            assert isinstance(value, float) and 0.0 <= value <= 1.0, (name, key, value)
    # The dense signal always answers; the prototype's TF-IDF finds nothing for many typos.
    assert metrics["methods"]["text"]["zero_result_rate"] == 0.0
    assert metrics["methods"]["tfidf"]["zero_result_rate_typo"] > 0.0
    assert metrics["methods"]["tfidf"]["zero_result_rate_typo"] > metrics["methods"]["tfidf"]["zero_result_rate"]
    assert (out / "metrics.md").read_text().startswith("Search quality")
    assert metrics["info"]["text_model"] == "minilm"
    assert metrics["info"]["queries"]["clean"] <= N_QUERIES


def test_generated_queries_are_written_for_reuse(generated: tuple[Path, dict[str, Any]]) -> None:
    out, metrics = generated
    rows = [json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines()]
    clean = {r["query"]: r for r in rows if "typo_of" not in r}
    typos = [r for r in rows if "typo_of" in r]
    assert len(clean) == metrics["info"]["queries"]["clean"] and len(typos) == metrics["info"]["queries"]["typo"]
    assert typos and all(r["typo_of"] in clean and r["relevant"] == clean[r["typo_of"]]["relevant"] for r in typos)
    assert all(len(r["relevant"]) >= 3 for r in rows)
    per_query = [json.loads(line) for line in (out / "per_query.jsonl").read_text().splitlines()]
    assert [p["query"] for p in per_query] == [r["query"] for r in rows]


def test_objects_are_indexed_without_subjects(generated: tuple[Path, dict[str, Any]]) -> None:
    _, metrics = generated
    # The command read every stored object back through GetObject before stopping the service.
    index = metrics["info"]["index"]
    assert index["objects"] == N_OBJECTS and index["objects_with_subjects"] == 0
    collection = read_collection(TATE_DEV, N_OBJECTS)
    assert all("subjects" not in row and "subject_paths" not in row for _, row in collection.rows)
    assert sum(bool(s) for s in collection.subjects.values()) > N_OBJECTS // 2  # kept here, as ground truth


def test_recommend_section(generated: tuple[Path, dict[str, Any]]) -> None:
    _, metrics = generated
    recommend = metrics["recommend"]
    assert set(recommend) == {"text_subject", "image_artist", "image_century_medium"}
    for name, part in recommend.items():
        assert part["groups"] > 0 and part["trials"] == 5 and part["k"] == 12 and part["likes"] == 3, name
        for key in ("best_score", "mean", "random"):
            assert 0.0 <= part[key] <= 1.0, (name, key)
    assert recommend["image_artist"]["model"] == "efficientnet-lite0"
    assert recommend["text_subject"]["space"] == "text"
    assert metrics["info"]["paintings"]["objects_with_image"] == N_PAINTINGS
    # Liking three of a group finds more of it than chance does.
    assert recommend["image_century_medium"]["best_score"] > recommend["image_century_medium"]["random"]
    assert recommend["text_subject"]["best_score"] > recommend["text_subject"]["random"]


def test_services_are_stopped(generated: tuple[Path, dict[str, Any]]) -> None:
    out, _ = generated
    logs = sorted((out / "logs").glob("search-*.log"))
    assert len(logs) == 2  # one store for the objects, one for the paintings
    for log in logs:
        port = log.stem.split("-")[1]
        assert health_status(f"127.0.0.1:{port}", timeout_s=1) is None


def test_a_queries_file_is_honoured(embedder: ServiceProcess, tmp_path: Path) -> None:
    with gzip.open(TATE_DEV, "rt") as handle:
        records = [json.loads(line) for _, line in zip(range(100), handle, strict=False)]
    data = tmp_path / "objects.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    a, b = records[10], records[60]
    queries = [
        {"query": a["title"], "relevant": [a["id"]], "note": "other fields are ignored"},
        {"query": b["title"], "relevant": [b["id"], "no-such-id"]},
        {"query": "zzqx vvwk", "relevant": [a["id"]]},
        {"query": make_typo(a["title"], random.Random(1)), "relevant": [a["id"]], "typo_of": a["title"]},
    ]
    path = tmp_path / "queries.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in queries))
    out = tmp_path / "out"
    metrics = run_eval(embedder, out, "--data", str(data), "--queries", str(path), "--no-paintings")
    assert metrics["info"]["queries"] == {"clean": 3, "typo": 1}
    assert metrics["recommend"].keys() == {"text_subject"}
    assert not (out / "queries.jsonl").exists()
    per_query = [json.loads(line) for line in (out / "per_query.jsonl").read_text().splitlines()]
    assert [p["query"] for p in per_query] == [q["query"] for q in queries]
    assert per_query[3]["typo_of"] == a["title"]
    assert per_query[1]["relevant"] == [b["id"], "no-such-id"]
    # A title finds its own object by its words; nonsense finds nothing by keyword.
    tfidf = [p["methods"]["tfidf"] for p in per_query]
    assert tfidf[0]["ndcg@12"] > 0.5 and tfidf[2]["hits"] == 0
    assert metrics["methods"]["tfidf"]["zero_result_rate"] == pytest.approx(1 / 3)


def test_metrics_arithmetic() -> None:
    assert ndcg_at(["a", "x", "b"], ["a", "b"]) == pytest.approx((1 + 1 / 2) / (1 + 1 / 1.584962500721156))
    assert ndcg_at([], ["a"]) == 0.0
    assert ndcg_at(["x"] * 11 + ["a"], ["a"]) == pytest.approx(1 / 3.700439718141092)  # rank 12 counts
    assert ndcg_at(["x"] * 12 + ["a"], ["a"]) == 0.0  # rank 13 does not
    queries = [Query("sea", ("a",)), Query("sae", ("a",), typo_of="sea"), Query("ship", ("b",))]
    figures = method_metrics(queries, [["a"], [], ["x"]])
    assert figures == {
        "ndcg@12": 0.5,
        "recall@100": 0.5,
        "zero_result_rate": 0.0,
        "ndcg@12_typo": 0.0,
        "zero_result_rate_typo": 1.0,
    }


def test_query_generation_is_seeded() -> None:
    subjects = {f"o{i}": ["sea", "ship"] if i % 2 else ["sea", "cliff", "ship"] for i in range(12)}
    subjects.update({f"p{i}": ["cliff", "tree"] for i in range(4)})
    first = generate_queries(subjects, max_queries=10, seed=3)
    assert first == generate_queries(subjects, max_queries=10, seed=3)
    clean = {q.query: set(q.relevant) for q in first if q.typo_of is None}
    assert clean["sea"] == {f"o{i}" for i in range(12)}
    assert clean["cliff ship"] == {f"o{i}" for i in range(0, 12, 2)}
    assert "sea ship" not in clean  # always together: the same query as either term
    for typo in (q for q in first if q.typo_of is not None):
        assert typo.query != typo.typo_of and sorted(typo.query) == sorted(typo.typo_of)
        assert set(typo.relevant) == clean[typo.typo_of]
