"""Start real Vitrine servers as subprocesses on free loopback ports, for tests.

with running_service("embedder", {"VITRINE_EMBEDDER_MODELS": "minilm"}) as embedder:
    channel = grpc.insecure_channel(embedder.address)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "test-output" / "logs"
MODULES = {
    "embedder": "vitrine.embedder.server",
    "tagger": "vitrine.tagger.server",
    "search": "vitrine.search.server",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServiceProcess:
    name: str
    port: int
    metrics_port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def health(self) -> int | None:
        with grpc.insecure_channel(self.address) as channel:
            try:
                return (
                    health_pb2_grpc.HealthStub(channel)
                    .Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                    .status
                )
            except grpc.RpcError:
                return None

    def wait_serving(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; log:\n{self.log_tail()}")
            if self.health() == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.3)
        raise TimeoutError(f"{self.name} not SERVING after {timeout_s} s; log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_service(name: str, env: Mapping[str, str] | None = None, args: list[str] | None = None) -> ServiceProcess:
    port, metrics_port = free_port(), free_port()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{name}-{port}.log"
    prefix = f"VITRINE_{name.upper()}_"
    full_env = {**os.environ, f"{prefix}PORT": str(port), f"{prefix}METRICS_PORT": str(metrics_port), **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", MODULES[name], *(args or [])],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    return ServiceProcess(name, port, metrics_port, process, log_path)


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
