"""The tagger's model store for real (issue #23's done-when, issue #28's ReloadModel holes): a
tagger started on an EMPTY model folder is up ("" SERVING) but NOT_SERVING as
vitrine.v1.TaggerService, with vitrine_tagger_model_loaded 0; the training Job's container command,
rendered from the chart and run as a subprocess (only its in-cluster places mapped to this
machine's) on data it downloads from a local web server, writes a version into that folder, and
the running tagger takes it by itself (model_poll_s), without a restart. Then ReloadModel's bad
version names and 200 concurrent calls, and the retraining CronJob's command refused."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import ROOT, ServiceProcess, running_service
from tests.tagger_data import TaggerSlice, write_slice
from vitrine.v1 import common_pb2, tagger_pb2, tagger_pb2_grpc

SERVICE = "vitrine.v1.TaggerService"
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
VERSION = "job-v1"


@dataclass
class Store:
    tagger: ServiceProcess
    embedder: ServiceProcess
    models: Path
    data: TaggerSlice
    data_url: str
    work: Path


@contextlib.contextmanager
def web_server(directory: Path) -> Iterator[str]:
    """Serves `directory` over http on loopback: the dataset URL a training Job is given."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    work = tmp_path_factory.mktemp("model-store")
    data = write_slice(work / "data", train_size=600, dev_size=150, extra_tags=50)
    models = work / "models"
    models.mkdir()
    with (
        web_server(work / "data") as url,
        running_service("embedder", {"VITRINE_EMBEDDER_MODELS": "minilm"}) as embedder,
        running_service(
            "tagger",
            {
                "VITRINE_TAGGER_EMBEDDER_ADDRESS": embedder.address,
                "VITRINE_TAGGER_TEXT_MODEL": "minilm",
                "VITRINE_TAGGER_MODEL_DIR": str(models),
                "VITRINE_TAGGER_MODEL_POLL_S": "0.5",
                "VITRINE_TAGGER_VOCABULARY": str(data.vocabulary),
                "VITRINE_TAGGER_FEEDBACK_DB": str(work / "feedback.sqlite3"),
            },
        ) as tagger,
    ):
        yield Store(tagger, embedder, models, data, url, work)


def health(service: ServiceProcess, name: str) -> int:
    with grpc.insecure_channel(service.address) as channel:
        request = health_pb2.HealthCheckRequest(service=name)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


def model_loaded(service: ServiceProcess) -> float:
    """The gauge's value; it must be exported even before any version is loaded."""
    with urllib.request.urlopen(service.metrics_url, timeout=5) as page:
        text = page.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vitrine_tagger_model_loaded":
                return sample.value
    raise AssertionError("vitrine_tagger_model_loaded is not exported")


def stub(service: ServiceProcess) -> tagger_pb2_grpc.TaggerServiceStub:
    return tagger_pb2_grpc.TaggerServiceStub(grpc.insecure_channel(service.address))


@dataclass
class JobCommand:
    argv: list[str]  # the container's command and args, in-cluster paths mapped to this machine
    env: dict[str, str]

    @property
    def cli(self) -> list[str]:
        """The `python -m vitrine.tagger.cli train ...` part, without the chart's wrapper."""
        return self.argv[self.argv.index(sys.executable) :]


def training_job_command(store: Store) -> JobCommand:
    """What the chart's training Job runs: the Job rendered from deploy/helm/vitrine with a dataset
    and dev dataset by URL, its container command and args taken as they are, and only the
    in-cluster places mapped to this machine's (the model store claim, the image's vocabulary and
    python, the embedder's headless Service, the pod's /tmp cache)."""
    from tests.deploy.chart import find, render

    values = {
        "tagger": {
            "training": {
                "enabled": True,
                "version": VERSION,
                "textModel": "minilm",
                "dataset": {"kind": "url", "url": f"{store.data_url}/train.jsonl.gz"},
                "evalDataset": {"kind": "url", "url": f"{store.data_url}/dev.jsonl.gz"},
            }
        }
    }
    (job,) = find(render(values), "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    places = {
        "/var/lib/vitrine/tagger/models": str(store.models),
        "/app/data/subjects.jsonl.gz": str(store.data.vocabulary),
        "/tmp/embeddings.sqlite3": str(store.work / "embeddings.sqlite3"),
    }
    argv = []
    for arg in [*container.get("command", []), *container["args"]]:
        for in_pod, here in places.items():
            arg = arg.replace(in_pod, here)
        if arg.startswith("dns:///") and "embedder-headless" in arg:
            arg = store.embedder.address
        argv.append(sys.executable if arg == "python" else arg)
    unmapped = [a for a in argv if a.startswith(("/var/lib/vitrine", "/app/", "dns:///"))]
    assert not unmapped, f"the Job uses in-cluster places this test does not map: {unmapped}"
    env = {e["name"]: e["value"] for e in container["env"] if e["name"] != "HOME"}
    return JobCommand(argv, {**os.environ, **env})


def run_job(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@dataclass
class Before:
    server: int
    service: int
    gauge: float
    info: tagger_pb2.GetTaggerInfoResponse


@dataclass
class Trained:
    before: Before  # what the tagger reported before the Job ran
    job: subprocess.CompletedProcess[str]
    wait_s: float  # from the Job's end until the tagger served its version


@pytest.fixture(scope="module")
def trained(store: Store) -> Trained:
    before = Before(
        health(store.tagger, ""),
        health(store.tagger, SERVICE),
        model_loaded(store.tagger),
        stub(store.tagger).GetTaggerInfo(tagger_pb2.GetTaggerInfoRequest(), timeout=10),
    )
    command = training_job_command(store)
    job = run_job(command.argv, command.env, timeout=300)
    assert job.returncode == 0, job.stderr[-3000:]
    finished = time.monotonic()
    while health(store.tagger, SERVICE) != SERVING and time.monotonic() < finished + 30:
        time.sleep(0.1)
    return Trained(before, job, time.monotonic() - finished)


def test_without_a_model_the_process_is_up_but_the_tagger_service_is_not(store: Store, trained: Trained) -> None:
    before = trained.before
    assert before.server == SERVING  # start-up and liveness probes: the process is fine
    assert before.service == NOT_SERVING  # readiness: keep this pod out of the Service
    assert before.gauge == 0
    assert not before.info.model_loaded and "vitrine-tagger train" in before.info.status_message
    log = store.tagger.log_path.read_text()
    assert '"msg": "no trained model"' in log and str(store.models) in log


def test_a_training_jobs_version_is_taken_without_a_restart(store: Store, trained: Trained) -> None:
    pid = store.tagger.process.pid
    assert health(store.tagger, SERVICE) == SERVING, store.tagger.log_tail()
    assert trained.wait_s < 10  # a few polls (0.5 s) and one load
    assert health(store.tagger, "") == SERVING
    assert model_loaded(store.tagger) == 1
    ship = common_pb2.CollectionObject(id="store-1", title="A sailing ship in a storm at sea")
    answer = stub(store.tagger).SuggestTags(tagger_pb2.SuggestTagsRequest(object=ship, k=5), timeout=60)
    assert answer.model_version == VERSION and answer.suggestions
    assert store.tagger.process.poll() is None and store.tagger.process.pid == pid  # the same process
    # Published whole: the version folder, no partial folder or lock left behind.
    assert sorted(p.name for p in store.models.iterdir()) == [VERSION]
    assert f"version {VERSION!r} published" in trained.job.stdout
    assert '"by": "model_poll_s"' in store.tagger.log_path.read_text()


def test_the_job_refuses_a_version_name_that_is_taken(store: Store, trained: Trained) -> None:
    command = training_job_command(store)
    # The Job again (Helm re-created it): its version is in the store, so it ends at once.
    again = run_job(command.argv, command.env, timeout=60)
    assert again.returncode == 0 and "already in the model store" in again.stdout, again.stderr[-2000:]
    # The training command itself never overwrites a version.
    direct = run_job(command.cli, command.env, timeout=120)
    assert direct.returncode == 2 and "already exists" in direct.stderr


@pytest.mark.parametrize(
    ("version", "words"),
    [
        ("v" * (1 << 20), "version is 1048576 bytes long"),
        ("v1\x00", "control characters"),
        ("v1\n", "control characters"),
        ("../data", "path separator"),
        ("/etc", "path separator"),
        (".partial-job-v1", "starts with '.'"),
        ("..", "starts with '.'"),
    ],
)
def test_reload_refuses_names_that_cannot_be_versions(store: Store, version: str, words: str) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        stub(store.tagger).ReloadModel(tagger_pb2.ReloadModelRequest(version=version), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("version ") and words in refused.value.details()


def test_200_concurrent_reloads_share_one_load(store: Store, trained: Trained) -> None:
    loads_before = store.tagger.log_path.read_text().count('"msg": "model reloaded"')

    async def reload_all() -> list[tagger_pb2.ReloadModelResponse | BaseException]:
        async with grpc.aio.insecure_channel(store.tagger.address) as channel:
            client = tagger_pb2_grpc.TaggerServiceStub(channel)
            calls = [client.ReloadModel(tagger_pb2.ReloadModelRequest(), timeout=10) for _ in range(200)]
            return await asyncio.gather(*calls, return_exceptions=True)

    answers = asyncio.run(reload_all())
    failed = [a for a in answers if isinstance(a, BaseException)]
    assert not failed, failed[:3]
    assert {a.model_version for a in answers if not isinstance(a, BaseException)} == {VERSION}
    loads = store.tagger.log_path.read_text().count('"msg": "model reloaded"') - loads_before
    assert 1 <= loads <= 3, loads  # 200 before the fix


def test_retraining_on_the_newest_version_is_refused_when_worse_and_never_served(
    store: Store, trained: Trained
) -> None:
    """The CronJob's `retrain --base newest --out-dir`: the base is the newest version in the
    store; a new version scoring below it is published as a folder without meta.json (exit 3), so
    no tagger loads it. The serving version's recorded score is raised out of reach first."""
    meta_path = store.models / VERSION / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["evaluation"]["ensemble"]["f1@5"] = 0.99
    meta_path.write_text(json.dumps(meta))
    feedback = store.work / "no-feedback.sqlite3"
    command = [
        sys.executable, "-m", "vitrine.tagger.cli", "retrain",
        "--data", f"{store.data_url}/train.jsonl.gz", "--eval-data", f"{store.data_url}/dev.jsonl.gz",
        "--base", "newest", "--out-dir", str(store.models), "--version", "retrained",
        "--vocabulary", str(store.data.vocabulary), "--embedder", store.embedder.address,
        "--cache", str(store.work / "embeddings.sqlite3"), "--feedback", str(feedback),
    ]  # fmt: skip
    refused = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 3, refused.stderr[-3000:]
    assert f"base version: {VERSION}" in refused.stdout and "scores below" in refused.stderr
    assert (store.models / "retrained" / "meta.refused.json").is_file()
    assert sorted(p.name for p in store.models.iterdir()) == [VERSION, "retrained"]
    time.sleep(1.5)  # three polls
    ship = common_pb2.CollectionObject(id="store-2", title="A ship")
    answer = stub(store.tagger).SuggestTags(tagger_pb2.SuggestTagsRequest(object=ship), timeout=60)
    assert answer.model_version == VERSION
