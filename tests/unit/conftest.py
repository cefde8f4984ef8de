"""tests/unit is the hermetic loop (`make test-fast`), and this guard keeps it that way.

A unit test's result depends only on the checkout, the virtual environment and what the test
itself starts inside the pytest process. While a unit test is collected, set up, run or torn
down, the guard refuses, with a HermeticViolation naming the test and what it touched:

- a child process: subprocess (so asyncio's subprocesses too), os.posix_spawn, fork, exec,
  os.system, multiprocessing;
- reading the shared data sets (../shared/data), model weights outside the repository (the
  models folder `make models` fills, the Hugging Face and torch caches) or the state of a
  running system (var/);
- a PostgreSQL connection (psycopg);
- the network beyond loopback: a socket connected to another host, a name looked up that is not
  loopback, a gRPC channel to another host; and a loopback socket connected to a port that this
  process did not bind (a server started outside the test: `make run`, a database, a Qdrant).

In-process loopback servers stay allowed: a grpc.aio or aiohttp server on port 0 starts in
milliseconds, holds nothing outside the process and tests the real wire behaviour (status codes,
metadata, deadlines) that a fake servicer context would only imitate.

A violation is raised where it happens and also recorded, so a test that swallows the exception
(`except Exception`) still fails after the phase in which it happened. Such tests belong in
tests/integration.
"""

from __future__ import annotations

import _posixsubprocess
import contextlib
import ctypes.util
import ipaddress
import os
import socket
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import ROOT, SHARED_DATA


class HermeticViolation(Exception):
    """A unit test reached outside the process (deliberately not an OSError, which the code under
    test may catch and retry)."""


def _cache(env: str, default: Path) -> Path:
    return Path(os.environ.get(env) or default).expanduser()


_HOME_CACHE = Path("~/.cache").expanduser()
FORBIDDEN_FOLDERS: dict[str, Path] = {
    "the shared data sets": SHARED_DATA,
    "the models folder (make models)": _cache("VITRINE_EMBEDDER_MODEL_DIR", _HOME_CACHE / "vitrine" / "models"),
    "the Hugging Face cache": _cache("HF_HOME", _HOME_CACHE / "huggingface"),
    "the torch cache": _cache("TORCH_HOME", _HOME_CACHE / "torch"),
    "the running system's state (var/)": ROOT / "var",
}
# The folder as written and as resolved: a symlinked shared folder is still the shared folder.
_FORBIDDEN = [
    (what, prefix)
    for what, folder in FORBIDDEN_FOLDERS.items()
    for prefix in {os.path.abspath(folder), os.path.realpath(folder)}
]
_PATH_EVENTS = {"open": "opens", "os.listdir": "lists", "os.scandir": "lists", "glob.glob": "globs"}
_PROCESS_EVENTS = {
    "subprocess.Popen",
    "os.posix_spawn",
    "os.spawn",
    "os.exec",
    "os.fork",
    "os.forkpty",
    "os.system",
}
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def is_loopback(host: str | bytes | None) -> bool:
    if host is None:  # getaddrinfo(None, port): the local wildcard
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES or host == "":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def grpc_target_hosts(target: str) -> list[str]:
    """The hosts a gRPC target string names: `host:port`, `[::1]:port`, `dns:///host:port`,
    `ipv4:a:p,b:p`, `ipv6:[::1]:p`; unix: targets name none."""
    if target.startswith(("unix:", "unix-abstract:")):
        return []
    if target.startswith("dns:"):
        target = target[len("dns:") :]
        if target.startswith("//"):  # dns://[authority]/host:port: the authority is the DNS server
            target = target[2:].partition("/")[2]
    elif target.startswith(("ipv4:", "ipv6:")):
        target = target[len("ipv4:") :]
    hosts = []
    for address in target.split(","):
        host = address.rsplit(":", 1)[0] if address.count(":") == 1 or address.startswith("[") else address
        hosts.append(host.strip("[]"))
    return hosts


class Guard:
    """Process-wide: an audit hook cannot be removed, so it is installed once and does nothing
    outside a unit test's phases."""

    def __init__(self) -> None:
        self.where: str | None = None  # the unit test (and phase) being guarded, None: off
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._bound_ports: set[int] = set()
        self._bound_sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._depth = threading.local()

    # Switching on and off, per phase.

    @contextlib.contextmanager
    def guarding(self, where: str) -> Iterator[None]:
        outer, self.where, start = self.where, where, len(self.violations)
        failure: BaseException | None = None
        try:
            yield
        except BaseException as exc:  # also pytest's skip and fail outcomes
            failure = exc
        finally:
            self.where = outer
        new = self.violations[start:]
        del self.violations[start:]
        if new:  # whatever else happened, even when the test caught the violation itself
            raise HermeticViolation(self._report(where, new)) from failure
        if failure is not None:
            raise failure

    @staticmethod
    def _report(where: str, violations: list[str]) -> str:
        listed = "\n".join(f"  - {v}" for v in dict.fromkeys(violations))
        return (
            f"{where} is not hermetic; it:\n{listed}\n"
            "tests/unit runs only what the checkout and the test process hold (tests/unit/conftest.py): "
            "move this test to tests/integration, or give it its data from the repository (tests/fixtures, tmp_path)."
        )

    @contextlib.contextmanager
    def expect(self, fragment: str) -> Iterator[None]:
        """For the guard's own tests: the block must trip the guard with a message containing
        `fragment`; the violation is then consumed so that the test itself passes."""
        start = len(self.violations)
        yield
        new = self.violations[start:]
        del self.violations[start:]
        assert any(fragment in v for v in new), f"the guard let it pass (recorded: {new})"

    def violate(self, message: str) -> None:
        with self._lock:
            self.violations.append(message)
        raise HermeticViolation(f"{self.where}: {message} (tests/unit/conftest.py)")

    # What is refused.

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if self.where is None:
            return
        # The checks below call os.path functions that may be audited themselves.
        if getattr(self._depth, "inside", False):
            return
        self._depth.inside = True
        try:
            self._check(event, args)
        finally:
            self._depth.inside = False

    def _check(self, event: str, args: tuple[Any, ...]) -> None:
        if event in _PATH_EVENTS:
            path = args[0] if args else None
            if isinstance(path, (str, bytes, os.PathLike)):
                self._check_path(_PATH_EVENTS[event], os.fsdecode(path))
        elif event in _PROCESS_EVENTS:
            self.violate(f"starts a child process ({event} {self._command(args)})")
        elif event == "socket.bind":
            self._record_bind(args[0], args[1])
        elif event == "socket.connect":
            self._check_connect(args[0], args[1])
        elif event == "socket.getaddrinfo" and not is_loopback(args[0]):
            self.violate(f"looks up the host {args[0]!r} (network beyond loopback)")

    def _check_path(self, verb: str, path: str) -> None:
        absolute = os.path.abspath(path)
        for what, prefix in _FORBIDDEN:
            if absolute == prefix or absolute.startswith(prefix + os.sep):
                self.violate(f"{verb} {path} ({what})")

    @staticmethod
    def _command(args: tuple[Any, ...]) -> str:
        shown = " ".join(str(a) for a in args[:2] if a is not None)
        return shown[:200]

    def _record_bind(self, sock: socket.socket, address: Any) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        port = address[1] if isinstance(address, tuple) and len(address) > 1 else 0
        if port:
            self._bound_ports.add(int(port))
        else:  # port 0: the kernel picks it, known only once bound
            self._bound_sockets.add(sock)

    def _ports_bound_here(self) -> set[int]:
        ports = set(self._bound_ports)
        for sock in list(self._bound_sockets):
            with contextlib.suppress(OSError):
                ports.add(sock.getsockname()[1])
        return ports

    def _check_connect(self, sock: socket.socket, address: Any) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
            return
        host, port = address[0], int(address[1])
        if not is_loopback(host):
            self.violate(f"connects to {host}:{port} (network beyond loopback)")
        elif port not in self._ports_bound_here():
            self.violate(f"connects to {host}:{port}, a port no server of this test process bound")

    def check_grpc_target(self, target: str) -> None:
        if self.where is None:
            return
        others = [h for h in grpc_target_hosts(target) if not is_loopback(h)]
        if others:
            self.violate(f"opens a gRPC channel to {target!r} (network beyond loopback)")

    def refuse(self, what: str) -> None:
        if self.where is not None:
            self.violate(what)


GUARD = Guard()
sys.addaudithook(GUARD.audit)
_getsockname = socket.socket.getsockname


def _getsockname_recorded(self: socket.socket) -> Any:
    # A port picked by the kernel (bind to port 0) becomes known here: `free_port()`, servers.
    name = _getsockname(self)
    if GUARD.where is not None and self.family in (socket.AF_INET, socket.AF_INET6):
        GUARD._bound_ports.add(int(name[1]))
    return name


socket.socket.getsockname = _getsockname_recorded  # type: ignore[method-assign]


def _wrap(owner: Any, name: str, before: Callable[..., None], *, is_classmethod: bool = False) -> None:
    original = getattr(owner, name)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        before(*args, **kwargs)
        return original(*args, **kwargs)

    guarded.__wrapped__ = original  # type: ignore[attr-defined]
    if is_classmethod:
        func = original.__func__

        def guarded_classmethod(cls: Any, *args: Any, **kwargs: Any) -> Any:
            before(*args, **kwargs)
            return func(cls, *args, **kwargs)

        setattr(owner, name, classmethod(guarded_classmethod))
    else:
        setattr(owner, name, guarded)


def _library_lookup(find_library: Callable[[str], str | None]) -> Callable[[str], str | None]:
    # ctypes asks ldconfig (or gcc) where a shared library is: torch does on import. That is how
    # the environment loads, not something a test does, so the guard looks away.
    def find(name: str) -> str | None:
        outer = getattr(GUARD._depth, "inside", False)
        GUARD._depth.inside = True
        try:
            return find_library(name)
        finally:
            GUARD._depth.inside = outer

    return find


ctypes.util.find_library = _library_lookup(ctypes.util.find_library)

# multiprocessing's spawn and forkserver start children with fork_exec directly (no audit event).
_wrap(_posixsubprocess, "fork_exec", lambda *a, **k: GUARD.refuse("starts a child process (fork_exec)"))
for _module in (grpc, grpc.aio):
    for _name in ("insecure_channel", "secure_channel"):
        _wrap(_module, _name, lambda target, *a, **k: GUARD.check_grpc_target(str(target)))
try:
    import psycopg
except ImportError:  # pragma: no cover - the lock installs it
    psycopg = None  # type: ignore[assignment]
if psycopg is not None:

    def _no_postgres(*args: Any, **kwargs: Any) -> None:
        GUARD.refuse("connects to PostgreSQL")

    _wrap(psycopg, "connect", _no_postgres)
    _wrap(psycopg.Connection, "connect", _no_postgres, is_classmethod=True)
    _wrap(psycopg.AsyncConnection, "connect", _no_postgres, is_classmethod=True)


# The phases, for tests under tests/unit only (pytest calls a directory's conftest hooks for its
# own items and collectors).


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    outer, start = GUARD.where, len(GUARD.violations)
    GUARD.where = f"collecting {collector.nodeid}"
    try:
        report = yield
    finally:
        GUARD.where = outer
    new = GUARD.violations[start:]
    if new:
        del GUARD.violations[start:]
        report.outcome = "failed"
        report.longrepr = Guard._report(f"collecting {collector.nodeid}", new)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    with GUARD.guarding(f"{item.nodeid} (setup)"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    with GUARD.guarding(item.nodeid):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    if nextitem is None:
        # The session's last teardown also finalizes every directory's session fixtures (in
        # `make test`, tests/unit runs last: the e2e system is stopped here), so it is not guarded.
        return (yield)
    with GUARD.guarding(f"{item.nodeid} (teardown)"):
        return (yield)


@pytest.fixture
def hermetic() -> Guard:
    """The guard itself, for its own tests (tests/unit/test_hermetic.py)."""
    return GUARD
