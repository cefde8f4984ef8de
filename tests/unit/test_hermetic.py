"""The hermetic guard of tests/unit (tests/unit/conftest.py), as it runs around these very tests:
what a unit test may not do fails at once, what it may do passes. (That the guard is wired into
collection, setup and teardown, and fails a test that swallows the violation, is
tests/integration/test_hermetic_guard.py, which needs a child pytest.)"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

import grpc
import psycopg
import pytest

from tests.conftest import FIXTURES, SHARED_DATA
from tests.unit.conftest import FORBIDDEN_FOLDERS, Guard, HermeticViolation, grpc_target_hosts, is_loopback

TATE_SUBJECTS = SHARED_DATA / "tate" / "subjects.jsonl.gz"


def test_a_subprocess_is_refused(hermetic: Guard) -> None:
    with hermetic.expect("starts a child process (subprocess.Popen"), pytest.raises(HermeticViolation):
        subprocess.run(["true"], check=False)


def test_posix_spawn_is_refused(hermetic: Guard) -> None:
    with hermetic.expect("os.posix_spawn"), pytest.raises(HermeticViolation):
        os.posix_spawn("/bin/true", ["true"], dict(os.environ))


async def test_an_asyncio_subprocess_is_refused(hermetic: Guard) -> None:
    with hermetic.expect("starts a child process"), pytest.raises(HermeticViolation):
        await asyncio.create_subprocess_exec("true")


def test_multiprocessing_is_refused(hermetic: Guard) -> None:
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process(target=print)
    with hermetic.expect("starts a child process"), pytest.raises(HermeticViolation):
        process.start()


@pytest.mark.parametrize(
    "read",
    [
        lambda: TATE_SUBJECTS.read_bytes(),
        lambda: open(TATE_SUBJECTS, "rb"),  # noqa: SIM115 - refused before anything is opened
        lambda: os.listdir(SHARED_DATA),
        lambda: list((SHARED_DATA / "paintings" / "images").glob("*.jpg")),
        lambda: os.open(str(TATE_SUBJECTS), os.O_RDONLY),
    ],
    ids=["read_bytes", "open", "listdir", "glob", "os.open"],
)
def test_the_shared_data_is_refused(hermetic: Guard, read) -> None:
    with hermetic.expect("(the shared data sets)"), pytest.raises(HermeticViolation, match="shared data"):
        read()


@pytest.mark.parametrize("what", ["the models folder (make models)", "the Hugging Face cache", "the torch cache"])
def test_model_weights_outside_the_repository_are_refused(hermetic: Guard, what: str) -> None:
    # Refused before the file system is asked, so the file need not exist.
    weights = FORBIDDEN_FOLDERS[what] / "all-mpnet-base-v2" / "model.safetensors"
    with hermetic.expect(what), pytest.raises(HermeticViolation):
        weights.read_bytes()


def test_the_running_systems_state_is_refused(hermetic: Guard) -> None:
    with hermetic.expect("var/"), pytest.raises(HermeticViolation):
        (FORBIDDEN_FOLDERS["the running system's state (var/)"] / "search" / "x").write_text("")


def test_postgresql_is_refused(hermetic: Guard) -> None:
    for connect in (psycopg.connect, psycopg.Connection.connect):
        with hermetic.expect("connects to PostgreSQL"), pytest.raises(HermeticViolation):
            connect("postgresql://vitrine@127.0.0.1:5432/postgres", connect_timeout=1)


async def test_async_postgresql_is_refused(hermetic: Guard) -> None:
    with hermetic.expect("connects to PostgreSQL"), pytest.raises(HermeticViolation):
        await psycopg.AsyncConnection.connect("postgresql://vitrine@127.0.0.1:5432/postgres")


def test_the_network_beyond_loopback_is_refused(hermetic: Guard) -> None:
    with hermetic.expect("looks up the host 'example.org'"), pytest.raises(HermeticViolation):
        socket.getaddrinfo("example.org", 443)
    with socket.socket() as sock:
        sock.settimeout(1)
        # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): refused before any packet could leave.
        with hermetic.expect("connects to 192.0.2.1:80"), pytest.raises(HermeticViolation):
            sock.connect(("192.0.2.1", 80))


def test_a_loopback_port_no_server_of_the_test_bound_is_refused(hermetic: Guard) -> None:
    # Port 9 (discard): nothing this process started; a `make run` service would be the same.
    with (
        socket.socket() as sock,
        hermetic.expect("a port no server of this test process bound"),
        pytest.raises(HermeticViolation),
    ):
        sock.connect(("127.0.0.1", 9))


def test_a_grpc_channel_to_another_host_is_refused(hermetic: Guard) -> None:
    with hermetic.expect("gRPC channel to 'dns:///search.example.org:443'"), pytest.raises(HermeticViolation):
        grpc.aio.insecure_channel("dns:///search.example.org:443")
    with hermetic.expect("gRPC channel"), pytest.raises(HermeticViolation):
        grpc.insecure_channel("10.1.2.3:50053")


async def test_loopback_servers_of_the_test_files_of_the_repository_and_tmp_path_are_allowed(
    tmp_path: Path,
) -> None:
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"http://127.0.0.1:{port}/", timeout=5
        ) as answer:
            assert answer.read() == b"hello"
    finally:
        server.shutdown()
        server.server_close()
    async with grpc.aio.insecure_channel("localhost:1"), grpc.aio.insecure_channel("ipv4:127.0.0.1:1,127.0.0.1:2"):
        pass
    assert (FIXTURES / "paintings" / "README.md").read_text()
    (tmp_path / "scratch.txt").write_text("ok")
    assert (tmp_path / "scratch.txt").read_text() == "ok"


def test_a_swallowed_violation_still_fails_the_phase(hermetic: Guard) -> None:
    """The hooks run each phase inside `guarding`: a violation the test caught itself is raised
    again when the phase ends."""
    with (
        pytest.raises(HermeticViolation, match=r"the inner phase is not hermetic; it:\n  - opens .*shared data"),
        hermetic.guarding("the inner phase"),
        contextlib.suppress(Exception),  # code under test that catches everything
    ):
        TATE_SUBJECTS.read_bytes()
    assert hermetic.where is not None  # the outer phase (this test) is still guarded


def test_the_guard_is_off_outside_a_phase(hermetic: Guard) -> None:
    outer, hermetic.where = hermetic.where, None
    try:
        hermetic.audit("subprocess.Popen", ("true", ["true"], None, None))
    finally:
        hermetic.where = outer


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        (b"localhost", True),
        (None, True),
        ("10.0.0.1", False),
        ("192.0.2.1", False),
        ("example.org", False),
        ("localhost.example.org", False),
    ],
)
def test_what_counts_as_loopback(host: str | bytes | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("target", "hosts"),
    [
        ("localhost:50053", ["localhost"]),
        ("127.0.0.1:1", ["127.0.0.1"]),
        ("[::1]:50053", ["::1"]),
        ("dns:///search.example.org:443", ["search.example.org"]),
        ("dns://8.8.8.8/search:443", ["search"]),
        ("ipv4:127.0.0.1:1,10.0.0.2:2", ["127.0.0.1", "10.0.0.2"]),
        ("ipv6:[::1]:5", ["::1"]),
        ("unix:/tmp/search.sock", []),
    ],
)
def test_grpc_targets_name_their_hosts(target: str, hosts: list[str]) -> None:
    assert grpc_target_hosts(target) == hosts
