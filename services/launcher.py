"""Start Vitrine services as child processes, wait until they report SERVING, stop them cleanly.

Used by `vitrine run` (the whole system on one machine) and by the tests (real servers on
loopback ports).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

MODULES = {
    "embedder": "vitrine.embedder.server",
    "tagger": "vitrine.tagger.server",
    "search": "vitrine.search.server",
    "explorer": "vitrine.explorer.server",
}
# Services that answer HTTP (their health is GET /readyz) rather than gRPC health checks.
HTTP_SERVICES = {"explorer"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_health_status(address: str, timeout_s: float = 2.0) -> int | None:
    """SERVING when http://address/readyz answers 200, NOT_SERVING on another status, None when
    nothing answers: the same scale as `health_status`."""
    try:
        with urllib.request.urlopen(f"http://{address}/readyz", timeout=timeout_s):
            return health_pb2.HealthCheckResponse.SERVING
    except urllib.error.HTTPError:
        return health_pb2.HealthCheckResponse.NOT_SERVING
    except OSError:
        return None


def health_status(address: str, timeout_s: float = 2.0) -> int | None:
    """The grpc.health.v1 status of the whole server, or None when it does not answer."""
    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.RpcError:
            return None
    return answer.status


@dataclass
class ServiceProcess:
    name: str
    port: int
    metrics_port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def url(self) -> str:
        return f"http://{self.address}/"

    def health(self) -> int | None:
        return http_health_status(self.address) if self.name in HTTP_SERVICES else health_status(self.address)

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
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM (graceful drain), then SIGKILL after `timeout_s`."""
        self.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.returncode


def start_service(
    name: str,
    log_dir: Path,
    env: Mapping[str, str],
    port: int | None = None,
    metrics_port: int | None = None,
    args: list[str] | None = None,
    cwd: Path | None = None,
) -> ServiceProcess:
    """Start one service; `env` is the whole environment of the child plus its settings."""
    port = port or free_port()
    metrics_port = metrics_port if metrics_port is not None else free_port()
    prefix = f"VITRINE_{name.upper()}_"
    child_env = {**env, f"{prefix}PORT": str(port), f"{prefix}METRICS_PORT": str(metrics_port)}
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", MODULES[name], *(args or [])],
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            # Own session: a Ctrl-C in the terminal reaches only the parent, which then drains the
            # services in order with SIGTERM instead of all of them racing to exit at once.
            start_new_session=True,
        )
    return ServiceProcess(name, port, metrics_port, process, log_path, child_env)
