"""The generated stubs in services/v1 must be exactly what protos/ generates now: a proto edited
without `make proto` (or a stub edited by hand) fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.conftest import ROOT

STUBS = ROOT / "services" / "v1"
IGNORED = {".generated", "__pycache__"}  # make's timestamp marker, Python's caches


def load_gen_protos():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not IGNORED.intersection(p.relative_to(folder).parts)
    }


def test_generated_stubs_match_the_protos(tmp_path: Path) -> None:
    fresh = tmp_path / "v1"
    load_gen_protos().generate(fresh)
    expected, committed = files(fresh), files(STUBS)
    assert expected, "gen_protos generated nothing"
    assert sorted(committed) == sorted(expected), "services/v1 has missing or extra files: run `make proto`"
    stale = [name for name in expected if committed[name] != expected[name]]
    assert not stale, f"stale stubs {stale}: run `make proto`"


def test_every_proto_has_its_stubs() -> None:
    protos = sorted(p.stem for p in (ROOT / "protos" / "vitrine" / "v1").glob("*.proto"))
    assert protos, "no protos found"
    for name in protos:
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert (STUBS / f"{name}{suffix}").is_file(), f"services/v1/{name}{suffix} missing: run `make proto`"
