"""ReloadModel on the running tagger: another version is loaded while calls keep being answered
(none fails, each says which version answered), a version that scores worse on dev or has no
evaluation is refused unless forced, unknown versions are NOT_FOUND and names that are no folder
of the model directory INVALID_ARGUMENT."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator

import grpc
import pytest

from tests.e2e.conftest import System
from vitrine.v1 import common_pb2, tagger_pb2, tagger_pb2_grpc


@pytest.fixture()
def stub(system: System) -> tagger_pb2_grpc.TaggerServiceStub:
    return tagger_pb2_grpc.TaggerServiceStub(grpc.insecure_channel(system.tagger.address))


@pytest.fixture()
def worse_copy(system: System, stub: tagger_pb2_grpc.TaggerServiceStub) -> Iterator[str]:
    """A copy of the serving version whose recorded dev F1@5 is lower; the serving version is
    restored afterwards."""
    serving = stub.GetTaggerInfo(tagger_pb2.GetTaggerInfoRequest(), timeout=30).model_version
    folder = system.tagger_models / f"{serving}-worse"
    shutil.copytree(system.tagger_models / serving, folder)
    meta = json.loads((folder / "meta.json").read_text())
    meta["version"] = folder.name
    meta["evaluation"]["ensemble"]["f1@5"] -= 0.05
    (folder / "meta.json").write_text(json.dumps(meta))
    try:
        yield folder.name
    finally:
        stub.ReloadModel(tagger_pb2.ReloadModelRequest(version=serving), timeout=120)
        shutil.rmtree(folder)


def ask(stub: tagger_pb2_grpc.TaggerServiceStub) -> tagger_pb2.SuggestTagsResponse:
    ship = common_pb2.CollectionObject(id="reload-1", title="A sailing ship at sea")
    return stub.SuggestTags(tagger_pb2.SuggestTagsRequest(object=ship, k=3), timeout=60)


def test_worse_version_needs_force_and_calls_never_fail_while_switching(
    stub: tagger_pb2_grpc.TaggerServiceStub, worse_copy: str
) -> None:
    serving = ask(stub).model_version
    with pytest.raises(grpc.RpcError) as refused:
        stub.ReloadModel(tagger_pb2.ReloadModelRequest(version=worse_copy), timeout=120)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "below" in refused.value.details() and "force" in refused.value.details()
    assert ask(stub).model_version == serving

    answered: list[str] = []
    failures: list[Exception] = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            try:
                answered.append(ask(stub).model_version)
            except grpc.RpcError as exc:
                failures.append(exc)

    caller = threading.Thread(target=keep_asking)
    caller.start()
    try:
        reloaded = stub.ReloadModel(tagger_pb2.ReloadModelRequest(version=worse_copy, force=True), timeout=120)
        after = ask(stub)
    finally:
        stop.set()
        caller.join()
    assert (reloaded.previous_version, reloaded.model_version) == (serving, worse_copy)
    assert after.model_version == worse_copy
    assert stub.GetTaggerInfo(tagger_pb2.GetTaggerInfoRequest(), timeout=30).model_version == worse_copy
    assert not failures and set(answered) <= {serving, worse_copy} and serving in answered
    # Back to the better version: no force needed.
    back = stub.ReloadModel(tagger_pb2.ReloadModelRequest(version=serving), timeout=120)
    assert back.model_version == serving


def test_unknown_versions_are_not_found(stub: tagger_pb2_grpc.TaggerServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        stub.ReloadModel(tagger_pb2.ReloadModelRequest(version="no-such-version"), timeout=60)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no trained version" in refused.value.details()


@pytest.mark.parametrize("version", ["../tagger-data", "/etc", ".."])
def test_names_outside_the_model_folder_are_invalid(stub: tagger_pb2_grpc.TaggerServiceStub, version: str) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        stub.ReloadModel(tagger_pb2.ReloadModelRequest(version=version), timeout=60)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith(f"version {version!r}")
