"""Backups of the embedded store (issue #23): a snapshot taken by a serving search service while
writes keep coming, saved and restored through the CLI into a fresh data folder, and a second
search service on it that finds every object acknowledged before the snapshot. Then the archive
checks (tampered, truncated, damaged, occupied target) and the Qdrant server path's mapping.

The server tests share one embedder and one search service and run in file order."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest

from tests.servers import ROOT, ServiceProcess, minilm_search_env, running_service
from vitrine.common.errors import ServiceError
from vitrine.search import snapshot, snapshot_restore
from vitrine.search.snapshot_service import SnapshotService
from vitrine.search.store import AsyncStore, EmbeddedStore, ServerStore, SparseVector, StoredPoint
from vitrine.v1 import common_pb2, search_pb2, search_pb2_grpc

TOKEN = "backup-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
N_BEFORE = 80
WORDS = ["harbour", "orchard", "glacier", "lantern", "meadow", "violin", "citadel", "falcon"]


def _object(n: int, prefix: str = "obj") -> common_pb2.CollectionObject:
    word = WORDS[n % len(WORDS)]
    return common_pb2.CollectionObject(
        id=f"{prefix}-{n}",
        title=f"A {word} study number {n}",
        artist=f"Artist {n % 7}",
        medium="Oil paint on canvas",
        subjects=[word],
    )


def cli(*args: str, address: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "vitrine.search.cli"]
    if address:
        command += ["--address", address, "--token", TOKEN]
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def embedder() -> Iterator[ServiceProcess]:
    with running_service("embedder", {"VITRINE_EMBEDDER_MODELS": "minilm"}) as service:
        yield service


def _search_env(embedder: ServiceProcess, data_dir: Path) -> dict[str, str]:
    return {**minilm_search_env(embedder, data_dir), "VITRINE_SEARCH_AUTH_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("source-data")


@pytest.fixture(scope="module")
def search(embedder: ServiceProcess, source_dir: Path) -> Iterator[ServiceProcess]:
    with running_service("search", _search_env(embedder, source_dir)) as service:
        yield service


@pytest.fixture(scope="module")
def stub(search: ServiceProcess) -> Iterator[search_pb2_grpc.SearchServiceStub]:
    with grpc.insecure_channel(search.address) as channel:
        yield search_pb2_grpc.SearchServiceStub(channel)


@pytest.fixture(scope="module")
def taken(stub: search_pb2_grpc.SearchServiceStub) -> dict[str, Any]:
    """N_BEFORE objects stored, then a snapshot taken while another thread keeps upserting.
    Returns the snapshot and which loop objects were acknowledged before / sent after it."""
    for start in range(0, N_BEFORE, 20):
        batch = [_object(n) for n in range(start, start + 20)]
        stub.UpsertObjects(search_pb2.UpsertObjectsRequest(objects=batch), timeout=60, metadata=AUTH)
    acknowledged: list[tuple[int, float]] = []  # (n, when its upsert answered)
    sent: list[tuple[int, float]] = []
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            sent.append((n, time.monotonic()))
            request = search_pb2.UpsertObjectsRequest(objects=[_object(n, "loop")])
            stub.UpsertObjects(request, timeout=60, metadata=AUTH)
            acknowledged.append((n, time.monotonic()))
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(acknowledged) < 5:  # writes are flowing
            time.sleep(0.02)
        asked = time.monotonic()
        answer = stub.CreateSnapshot(search_pb2.CreateSnapshotRequest(name="nightly-1"), timeout=120, metadata=AUTH)
        answered = time.monotonic()
        while len(acknowledged) < len([a for a in acknowledged if a[1] < answered]) + 3:  # writes go on after it
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=60)
    return {
        "snapshot": answer.snapshot,
        "before": {f"loop-{n}" for n, at in acknowledged if at < asked},
        "after": {f"loop-{n}" for n, at in sent if at > answered},
        "loop_total": len(acknowledged),
    }


def test_snapshot_describes_a_consistent_cut(taken: dict[str, Any], stub: search_pb2_grpc.SearchServiceStub) -> None:
    made: search_pb2.Snapshot = taken["snapshot"]
    assert len(taken["before"]) >= 5 and taken["after"]  # writes came before, during and after it
    assert made.name == "nightly-1" and made.store == "embedded" and made.collection == "vitrine"
    assert made.HasField("objects") and N_BEFORE + len(taken["before"]) <= made.objects
    assert made.objects < N_BEFORE + taken["loop_total"]  # the writes after it are not in it
    assert len(made.sha256) == 64 and made.size_bytes > 0 and made.created_at.endswith("Z")
    listed = stub.ListSnapshots(search_pb2.ListSnapshotsRequest(), timeout=30).snapshots
    assert [s.name for s in listed] == ["nightly-1"] and listed[0].sha256 == made.sha256


def test_snapshot_rpcs_check_token_and_names(taken: dict[str, Any], stub: search_pb2_grpc.SearchServiceStub) -> None:
    def code(call: Any, request: Any, metadata: Any = AUTH) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as info:
            answer = call(request, timeout=30, metadata=metadata)
            if not hasattr(answer, "ByteSize"):
                list(answer)  # a stream fails when read
        return info.value.code(), info.value.details()

    create = stub.CreateSnapshot
    assert code(create, search_pb2.CreateSnapshotRequest(), ())[0] == grpc.StatusCode.UNAUTHENTICATED
    assert code(stub.DownloadSnapshot, search_pb2.DownloadSnapshotRequest(name="nightly-1"), ())[0] == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    for bad in ["../etc", "a/b", "night\nly", ".hidden", "x" * 101]:
        status, message = code(create, search_pb2.CreateSnapshotRequest(name=bad))
        assert status == grpc.StatusCode.INVALID_ARGUMENT and "not a snapshot name" in message, bad
    status, message = code(create, search_pb2.CreateSnapshotRequest(name="nightly-1"))
    assert status == grpc.StatusCode.ALREADY_EXISTS and "nightly-1" in message
    status, message = code(stub.DownloadSnapshot, search_pb2.DownloadSnapshotRequest(name="nope"))
    assert status == grpc.StatusCode.NOT_FOUND and "ListSnapshots" in message
    assert code(stub.DeleteSnapshot, search_pb2.DeleteSnapshotRequest(name="nope"))[0] == grpc.StatusCode.NOT_FOUND


def test_cli_saves_restores_and_a_fresh_service_finds_every_object(
    taken: dict[str, Any], search: ServiceProcess, embedder: ServiceProcess, tmp_path: Path
) -> None:
    made: search_pb2.Snapshot = taken["snapshot"]
    backup = tmp_path / "backup.tar"
    out = cli("snapshot", "--existing", made.name, "--out", str(backup), address=search.address).stdout
    assert f"{made.objects} objects" in out and "saved" in out
    assert snapshot.read_checksum(backup) == made.sha256
    subprocess.run(["sha256sum", "-c", backup.name + ".sha256"], cwd=tmp_path, check=True, capture_output=True)

    fresh = tmp_path / "fresh-data"
    out = cli("restore", str(backup), "--data-dir", str(fresh)).stdout
    assert f"restored {made.objects} objects" in out and "SHA-256 checked" in out
    refused = cli("restore", str(backup), "--data-dir", str(fresh), check=False)
    assert refused.returncode == 1 and "--force" in refused.stderr

    with (
        running_service("search", _search_env(embedder, fresh)) as restored,
        grpc.insecure_channel(restored.address) as channel,
    ):
        again = search_pb2_grpc.SearchServiceStub(channel)
        info = again.GetCollectionInfo(search_pb2.GetCollectionInfoRequest(), timeout=30)
        assert info.objects == made.objects
        expected = {f"obj-{n}" for n in range(N_BEFORE)} | taken["before"]
        for museum_id in sorted(expected):
            assert again.GetObject(search_pb2.GetObjectRequest(id=museum_id), timeout=30).object.id == museum_id
        # The loop's objects in it are a prefix of its writes (a cut, not a torn copy), and none
        # sent after CreateSnapshot answered.
        in_it = made.objects - N_BEFORE
        assert not {f"loop-{n}" for n in range(in_it)} & taken["after"]
        for n in range(taken["loop_total"]):
            try:
                again.GetObject(search_pb2.GetObjectRequest(id=f"loop-{n}"), timeout=30)
                assert n < in_it, f"loop-{n} is in the restored store, but not among the first {in_it} writes"
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND and n >= in_it, f"loop-{n} is missing"
        hits = again.Search(search_pb2.SearchRequest(query="glacier study"), timeout=30).hits
        assert hits and "glacier" in hits[0].object.title


def test_restore_refuses_a_store_in_use(taken: dict[str, Any], source_dir: Path, tmp_path: Path) -> None:
    archive = source_dir / "snapshots" / f"{taken['snapshot'].name}.tar"
    refused = cli("restore", str(archive), "--data-dir", str(source_dir), "--force", check=False)
    assert refused.returncode == 1 and "in use" in refused.stderr


def test_delete_snapshot(taken: dict[str, Any], stub: search_pb2_grpc.SearchServiceStub, source_dir: Path) -> None:
    stub.DeleteSnapshot(search_pb2.DeleteSnapshotRequest(name=taken["snapshot"].name), timeout=30, metadata=AUTH)
    assert not stub.ListSnapshots(search_pb2.ListSnapshotsRequest(), timeout=30).snapshots
    assert not list((source_dir / "snapshots").iterdir())


# -- archives, without servers -----------------------------------------------------------------


@pytest.fixture()
def archive(tmp_path: Path) -> Path:
    store = EmbeddedStore(tmp_path / "data", "vitrine")
    store.ensure_collection({"text": 8})
    rng = np.random.default_rng(1)
    store.upsert(
        [
            StoredPoint(f"p{i}", {"text": rng.standard_normal(8), "keywords": SparseVector((i,), (1.0,))}, {"n": i})
            for i in range(30)
        ]
    )
    store.sibling("index.json").write_text('{"objects": 30, "built_at": 1}')  # as after an index build
    try:
        snapshot.write_archive(store, tmp_path / "a.tar")
    finally:
        store.close()
    return tmp_path / "a.tar"


def _rewrite(source: Path, target: Path, change: Any) -> None:
    """Copy an archive member by member through `change(info, data) -> (info, data) | None`,
    sparse files written out whole (their checksums do not depend on it)."""
    with tarfile.open(source) as old, tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as new:
        for member in old:
            data = old.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            member.pax_headers = {k: v for k, v in member.pax_headers.items() if not k.startswith("GNU.sparse")}
            member.sparse = None
            changed = change(member, data)
            if changed is not None:
                info, data = changed
                info.size = len(data)
                new.addfile(info, io.BytesIO(data) if info.isfile() else None)


def test_an_archive_rewritten_without_holes_restores(archive: Path, tmp_path: Path) -> None:
    with tarfile.open(archive) as tar:
        assert any(m.sparse for m in tar)  # the engine's preallocated files went in as sparse
    whole = tmp_path / "whole.tar"
    _rewrite(archive, whole, lambda m, d: (m, d))
    assert whole.stat().st_size > 2 * archive.stat().st_size
    assert snapshot_restore.restore(whole, tmp_path / "target").objects == 30


def _tiny(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


def test_restore_refuses_damaged_archives(archive: Path, tmp_path: Path) -> None:
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar}
    manifest = json.dumps({"format": snapshot.FORMAT, "version": 1, "collection": "c", "objects": 0}).encode()
    flipped, cut, early = tmp_path / "flipped.tar", tmp_path / "cut.tar", tmp_path / "early.tar"
    data = bytearray(archive.read_bytes())
    data[members["collection/edge_config.json"].offset_data + 3] ^= 1
    flipped.write_bytes(data)
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    early.write_bytes(archive.read_bytes()[: members[snapshot.CHECKSUMS].offset])
    link = _member("collection/link", tarfile.SYMTYPE)
    link.linkname = "/etc/passwd"
    cases = {
        flipped: "do not match their checksum",
        cut: "truncated",
        early: "truncated",
        _tiny(tmp_path / "foreign.tar", [(_member(snapshot.MANIFEST), b'{"format": "x"}')]): "not a Vitrine search",
        _tiny(tmp_path / "out.tar", [(_member(snapshot.MANIFEST), manifest), (_member("../evil"), b"x")]): "outside",
        _tiny(tmp_path / "abs.tar", [(_member(snapshot.MANIFEST), manifest), (_member("/etc/x"), b"x")]): "outside",
        _tiny(tmp_path / "link.tar", [(_member(snapshot.MANIFEST), manifest), (link, b"")]): "not a plain file",
    }
    for n, (bad, message) in enumerate(cases.items()):
        target = tmp_path / f"target-{n}"
        with pytest.raises(snapshot.SnapshotError, match=message):
            snapshot_restore.restore(bad, target)
        assert not target.exists() or not any(target.iterdir()), bad.name  # nothing left behind
    # The archive's own SHA-256 is checked (given, or the .sha256 beside it).
    with pytest.raises(snapshot.SnapshotError, match="SHA-256"):
        snapshot_restore.restore(archive, tmp_path / "target-sum", expected_sha256="0" * 64)
    (tmp_path / "a.tar.sha256").write_text("f" * 64 + "  a.tar\n")
    with pytest.raises(snapshot.SnapshotError, match=r"a\.tar\.sha256"):
        snapshot_restore.restore(archive, tmp_path / "target-sum")


def test_restore_under_another_name_with_index_record(archive: Path, tmp_path: Path) -> None:
    restored = snapshot_restore.restore(archive, tmp_path / "target", collection="copy")
    assert restored.objects == 30 and restored.checked_against.endswith("a.tar.sha256")
    assert json.loads((tmp_path / "target" / "copy.index.json").read_text())["objects"] == 30
    store = EmbeddedStore(tmp_path / "target", "copy")
    try:
        store.ensure_collection({"text": 8})
        assert store.count() == 30 and set(store.get(["p0", "p29"])) == {"p0", "p29"}
    finally:
        store.close()


async def test_snapshot_service_on_an_embedded_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The RPC logic in-process: default names, the download's bytes, a full disk."""
    store = EmbeddedStore(tmp_path / "data", "my collection")
    store.ensure_collection({"text": 8})
    store.upsert([StoredPoint("p1", {"text": np.ones(8)}, {})])
    service = SnapshotService(AsyncStore(store), tmp_path / "snaps")
    try:
        first, second = await service.create(""), await service.create("")
        assert first.name.startswith("my-collection-") and first.objects == 1
        assert second.name == f"{first.name}-2" or second.name > first.name  # the same second, or the next
        downloaded = b"".join([m.data async for m in service.download(first.name)])
        assert downloaded == (tmp_path / "snaps" / f"{first.name}.tar").read_bytes()
        assert {s.name for s in await service.list()} == {first.name, second.name}
        await service.delete(second.name)
        assert [s.name for s in await service.list()] == [first.name]

        monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
        with pytest.raises(ServiceError) as info:
            await service.create("full")
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "SNAPSHOT_DIR" in info.value.message
        assert not list((tmp_path / "snaps").glob("*full*"))
    finally:
        await service.store.close()


# -- the Qdrant server path ------------------------------------------------------------------------


async def test_server_path_maps_qdrant_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Qdrant server runs here: qdrant-client's local mode has no snapshots (FAILED_PRECONDITION
    says so), and the mapping of a server's answer is checked on qdrant-client's own model type."""
    from qdrant_client.http import models

    store = ServerStore(":memory:", "vitrine")
    store.ensure_collection({"text": 8})
    service = SnapshotService(AsyncStore(store), "/nonexistent", qdrant_url="http://qdrant:6333")
    try:
        with pytest.raises(ServiceError) as info:
            await service.create("")
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert await service.list() == []
        with pytest.raises(ServiceError) as info:
            await service.create("mine")
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT

        description = models.SnapshotDescription(
            name="vitrine-1-2026-12-02-14-00-00.snapshot", creation_time="2026-12-02T14:00:00", size=1234, checksum="ab"
        )
        monkeypatch.setattr(ServerStore, "create_snapshot", lambda self: description)
        made = await service.create("")
        assert (made.name, made.store, made.size_bytes, made.sha256) == (description.name, "server", 1234, "ab")
        assert made.created_at == "2026-12-02T14:00:00Z" and not made.HasField("objects")
        with pytest.raises(ServiceError) as info:
            [m async for m in service.download(description.name)]
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert f"http://qdrant:6333/collections/vitrine/snapshots/{description.name}" in info.value.message
    finally:
        await service.store.close()
