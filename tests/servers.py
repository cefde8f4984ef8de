"""Real Vitrine servers for tests: subprocesses on free loopback ports, logs in test-output/logs.

with running_service("embedder", {"VITRINE_EMBEDDER_MODELS": "minilm"}) as embedder:
    channel = grpc.insecure_channel(embedder.address)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from vitrine.launcher import ServiceProcess, free_port
from vitrine.launcher import start_service as _start

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "test-output" / "logs"

__all__ = [
    "LOG_DIR",
    "ROOT",
    "ServiceProcess",
    "free_port",
    "running_service",
    "start_service",
    "wait_until_answering",
]


def start_service(name: str, env: Mapping[str, str] | None = None, args: list[str] | None = None) -> ServiceProcess:
    return _start(name, LOG_DIR, {**os.environ, **(env or {})}, args=args, cwd=ROOT)


@contextlib.contextmanager
def running_service(
    name: str, env: Mapping[str, str] | None = None, args: list[str] | None = None, ready_timeout_s: float = 180
) -> Iterator[ServiceProcess]:
    service = start_service(name, env, args)
    try:
        service.wait_serving(ready_timeout_s)
        yield service
    finally:
        service.stop()


def wait_until_answering(service: ServiceProcess, timeout_s: float = 60) -> None:
    """Until an HTTP service (the explorer) answers /healthz, ready or not: for a service whose
    backends are down, which never becomes ready."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(service.url + "healthz", timeout=5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{service.name} at {service.url} did not answer /healthz in {timeout_s} s")


def minilm_search_env(embedder: ServiceProcess, data_dir: Path) -> dict[str, str]:
    """A search service on the small MiniLM text model of `embedder`, its store in `data_dir`."""
    return {
        "VITRINE_SEARCH_EMBEDDER_ADDRESS": embedder.address,
        "VITRINE_SEARCH_TEXT_MODEL": "minilm",
        "VITRINE_SEARCH_DATA_DIR": str(data_dir),
    }


def search_cli(search: ServiceProcess, *args: str, timeout_s: float = 180) -> str:
    """`vitrine-search --address <search> ARGS`, which must succeed; what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "vitrine.search.cli", "--address", search.address, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
