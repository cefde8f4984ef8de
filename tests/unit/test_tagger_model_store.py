"""The tagger's model store and lifecycle without servers: which names may be versions, which
folders are served, atomic writes, data downloads, one load at a time, the watcher's decisions,
and health gated per service."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from vitrine.common.errors import ServiceError, failed_precondition, unavailable
from vitrine.common.server import Health
from vitrine.tagger.data import DownloadError, download, local_copy
from vitrine.tagger.lifecycle import Busy, ModelWatcher, SingleFlight
from vitrine.tagger.model_store import (
    VersionExists,
    default_version_name,
    newest_version,
    stamp,
    version_problem,
    versions,
    writing_version,
)
from vitrine.tagger.server import Tagger
from vitrine.tagger.settings import TaggerSettings

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("v" * (1 << 20), "1048576 bytes"),
        ("é" * 128, "256 bytes"),
        ("v1\x00", "control characters"),
        ("v1\n", "control characters"),
        ("v\u202e1", "control characters"),
        ("../tagger-data", "path separator"),
        ("/etc", "path separator"),
        ("a\\b", "path separator"),
        (".partial-v1", "starts with '.'"),
        ("..", "starts with '.'"),
        ("", "is empty"),
    ],
)
def test_names_that_cannot_be_versions(name: str, words: str) -> None:
    assert words in version_problem(name)
    assert len(version_problem(name)) < 300  # a 1 MB name is not echoed back


@pytest.mark.parametrize("name", ["v1", "tate-v3", "v-20261202-141000", "e2e_v1.2", "é" * 127])
def test_names_that_can(name: str) -> None:
    assert version_problem(name) == ""


def test_default_names_are_dated_versions() -> None:
    name = default_version_name()
    assert name.startswith("v-") and len(name) == len("v-20261202-141000") and version_problem(name) == ""


def make_version(model_dir: Path, name: str, mtime: float) -> Path:
    folder = model_dir / name
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"version": name}))
    os.utime(folder / "meta.json", (mtime, mtime))
    return folder


def test_only_complete_visible_versions_are_served(tmp_path: Path) -> None:
    assert newest_version(tmp_path) is None and newest_version(tmp_path / "missing") is None
    make_version(tmp_path, "old", 1000)
    make_version(tmp_path, "new", 2000)
    make_version(tmp_path, ".partial-newer", 3000)  # unfinished training
    make_version(tmp_path, ".hidden", 4000)
    (tmp_path / "no-meta").mkdir()
    (tmp_path / "refused").mkdir()
    (tmp_path / "refused" / "meta.refused.json").write_text("{}")
    assert [p.name for p in versions(tmp_path)] == ["old", "new"]
    assert newest_version(tmp_path) == tmp_path / "new"


def test_a_version_appears_whole_under_its_name_or_not_at_all(tmp_path: Path) -> None:
    with writing_version(tmp_path, "v1") as partial:
        assert partial == tmp_path / ".partial-v1"
        (partial / "weights.npy").write_text("x")
        (partial / "meta.json").write_text("{}")
        assert newest_version(tmp_path) is None  # a tagger polling now sees nothing
    assert newest_version(tmp_path) == tmp_path / "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]  # no partial, no lock file left
    with pytest.raises(VersionExists, match="already exists"), writing_version(tmp_path, "v1"):
        pass
    with pytest.raises(RuntimeError), writing_version(tmp_path, "v2") as partial:
        (partial / "meta.json").write_text("{}")
        raise RuntimeError("training failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]
    with (
        pytest.raises(ValueError, match=r"--version '\.\./v3' contains a path separator"),
        writing_version(tmp_path, "../v3"),
    ):
        pass


def test_a_killed_trainings_leftover_is_started_afresh_but_a_running_one_is_not_disturbed(tmp_path: Path) -> None:
    leftover = tmp_path / ".partial-v1"
    leftover.mkdir()
    (leftover / "stale.npy").write_text("x")
    with writing_version(tmp_path, "v1") as partial:
        assert not (partial / "stale.npy").exists()
        with pytest.raises(VersionExists, match="another training is writing"), writing_version(tmp_path, "v1"):
            pass
        assert partial.is_dir()  # the refused second training left the first one's folder alone
        (partial / "meta.json").write_text("{}")
    assert newest_version(tmp_path) == tmp_path / "v1"


@contextlib.contextmanager
def serving_files(directory: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if not self.path.startswith("/unsized/"):
                return super().do_GET()
            # No Content-Length: only counting the bytes can stop an over-large file.
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"x" * 5000)
            self.close_connection = True

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_data_urls_are_downloaded_with_their_extension_and_bounds(tmp_path: Path) -> None:
    served = tmp_path / "served"
    (served / "dev").mkdir(parents=True)
    (served / "objects.jsonl.gz").write_bytes(b"a" * 5000)
    (served / "dev" / "objects.jsonl.gz").write_bytes(b"b" * 10)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with serving_files(served) as base:
        first = local_copy(f"{base}/objects.jsonl.gz?token=x", downloads, 10, 1 << 20)
        second = local_copy(f"{base}/dev/objects.jsonl.gz", downloads, 10, 1 << 20)
        assert Path(first).name == Path(second).name == "objects.jsonl.gz" and first != second
        assert Path(first).read_bytes() == b"a" * 5000 and Path(second).read_bytes() == b"b" * 10
        with pytest.raises(DownloadError, match="more than the 1000 bytes allowed"):
            download(f"{base}/objects.jsonl.gz", tmp_path, 10, 1000)
        with pytest.raises(DownloadError, match="more than the 1000 bytes allowed"):
            download(f"{base}/unsized/objects.jsonl", tmp_path, 10, 1000)
        with pytest.raises(DownloadError, match="HTTP 404"):
            download(f"{base}/missing.jsonl", tmp_path, 10, 1000)
        with pytest.raises(DownloadError, match="must end in a file name"):
            download(f"{base}/", tmp_path, 10, 1000)
    assert local_copy("relative/objects.jsonl", downloads, 10, 10) == "relative/objects.jsonl"


def test_concurrent_calls_for_one_job_share_it_and_others_are_refused() -> None:
    async def scenario() -> None:
        flight: SingleFlight[str, str] = SingleFlight()
        runs: list[str] = []
        release = asyncio.Event()

        async def job(name: str) -> str:
            runs.append(name)
            await release.wait()
            return f"loaded {name}"

        callers = [asyncio.create_task(flight.run("v1", functools.partial(job, "v1"))) for _ in range(200)]
        await asyncio.sleep(0.01)
        with pytest.raises(Busy) as busy:
            await flight.run("v2", functools.partial(job, "v2"))
        assert busy.value.key == "v1"
        # A caller that gives up (its deadline) does not stop the load the others wait for.
        callers[0].cancel()
        release.set()
        results = await asyncio.gather(*callers[1:])
        assert runs == ["v1"] and set(results) == {"loaded v1"}
        assert await flight.run("v2", functools.partial(job, "v2")) == "loaded v2"  # one at a time, then the next
        assert runs == ["v1", "v2"]

        async def failing() -> str:
            raise failed_precondition("worse on dev")

        with pytest.raises(ServiceError, match="worse on dev"):
            await flight.run("v3", failing)
        assert flight.in_progress() is None

    asyncio.run(scenario())


def test_the_watcher_loads_new_versions_once_and_leaves_refused_and_rolled_back_ones(tmp_path: Path) -> None:
    async def scenario() -> None:
        loaded: list[str] = []
        answers: dict[str, ServiceError | None] = {}
        serving: list[Path] = []

        async def load(folder: Path) -> None:
            loaded.append(folder.name)
            error = answers.get(folder.name)
            if error is not None:
                raise error
            serving.append(folder)

        watcher = ModelWatcher(
            tmp_path,
            poll_s=0.01,
            load=load,
            has_model=lambda: bool(serving),
            no_model_message=lambda: "no trained model",
            seen=None,
            serving=lambda: serving[-1] if serving else None,
        )
        await watcher.check()
        assert loaded == []
        make_version(tmp_path, "v1", 1000)
        await watcher.check()
        await watcher.check()
        assert loaded == ["v1"]  # loaded once, not again on every poll
        answers["v2"] = failed_precondition("version 'v2' scores F1@5 0.1 on dev, below 'v1'")
        make_version(tmp_path, "v2", 2000)
        await watcher.check()
        await watcher.check()
        assert loaded == ["v1", "v2"]  # refused: not retried
        answers["v3"] = unavailable("the embedder is unavailable")
        make_version(tmp_path, "v3", 3000)
        await watcher.check()
        answers["v3"] = None
        await watcher.check()
        assert loaded == ["v1", "v2", "v3", "v3"]  # a passing outage is retried
        # An operator rolls back to v1 with ReloadModel: polling does not undo it.
        serving.append(tmp_path / "v1")
        await watcher.check()
        assert loaded == ["v1", "v2", "v3", "v3"]
        # A version ReloadModel already loaded is not loaded again.
        make_version(tmp_path, "v4", 4000)
        serving.append(tmp_path / "v4")
        await watcher.check()
        assert loaded == ["v1", "v2", "v3", "v3"] and watcher.seen == stamp(tmp_path / "v4")

    asyncio.run(scenario())


def test_the_watcher_says_there_is_no_model_at_start_and_then_rarely(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = ModelWatcher(
        tmp_path, 0.01, load=lambda _: asyncio.sleep(0), has_model=lambda: False,
        no_model_message=lambda: f"no trained model in {tmp_path}: train one", seen=None, serving=lambda: None,
    )  # fmt: skip
    with caplog.at_level("WARNING", logger="vitrine.tagger"):
        for _ in range(5):
            watcher.remind()
    warnings = [r for r in caplog.records if r.getMessage() == "no trained model"]
    assert len(warnings) == 1
    assert warnings[0].model_dir == str(tmp_path) and "train one" in warnings[0].hint  # type: ignore[attr-defined]
    watcher.warned_at = time.monotonic() - 301
    with caplog.at_level("WARNING", logger="vitrine.tagger"):
        watcher.remind()
    assert len([r for r in caplog.records if r.getMessage() == "no trained model"]) == 2


def test_a_gated_service_is_serving_only_while_its_service_says_so() -> None:
    async def scenario() -> None:
        health = Health(gated=("vitrine.v1.TaggerService",))
        health.names = ["vitrine.v1.TaggerService", "other.Service"]

        async def statuses() -> list[int]:
            await health.publish()
            answers = []
            for name in ("", "vitrine.v1.TaggerService", "other.Service"):
                request = health_pb2.HealthCheckRequest(service=name)
                answers.append((await health.servicer.Check(request, None)).status)  # type: ignore[arg-type]
            return answers

        assert await statuses() == [NOT_SERVING] * 3  # starting
        await health.set_gate("vitrine.v1.TaggerService", True)  # a model loaded during start-up
        assert await statuses() == [NOT_SERVING] * 3
        health.started = True
        assert await statuses() == [SERVING] * 3
        await health.set_gate("vitrine.v1.TaggerService", False)
        assert await statuses() == [SERVING, NOT_SERVING, SERVING]
        with pytest.raises(KeyError):
            await health.set_gate("other.Service", False)
        await health.servicer.enter_graceful_shutdown()
        await health.set_gate("vitrine.v1.TaggerService", True)  # draining wins
        request = health_pb2.HealthCheckRequest(service="vitrine.v1.TaggerService")
        assert (await health.servicer.Check(request, None)).status == NOT_SERVING  # type: ignore[arg-type]

    asyncio.run(scenario())


def test_reload_of_another_version_while_one_loads_is_aborted_with_a_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        tagger = Tagger(TaggerSettings(model_dir=str(tmp_path)))
        tagger.vocabulary, tagger.feedback = object(), object()  # type: ignore[assignment]
        release = asyncio.Event()

        async def slow_load(path: Path, force: bool, vocabulary: object, by: str) -> tuple[str, str]:
            await release.wait()
            return "", path.name

        tagger._load = slow_load  # type: ignore[method-assign]
        first = asyncio.create_task(tagger.load(tmp_path / "v1", False, by="test"))
        joined = asyncio.create_task(tagger.load(tmp_path / "v1", False, by="test"))
        await asyncio.sleep(0.01)
        with pytest.raises(ServiceError) as refused:
            await tagger.load(tmp_path / "v2", True, by="test")
        assert refused.value.code == grpc.StatusCode.ABORTED
        assert "'v1' is being loaded" in refused.value.message and "retry" in refused.value.message
        release.set()
        assert await first == await joined == ("", "v1")
        await tagger.embedder.close()

    asyncio.run(scenario())
