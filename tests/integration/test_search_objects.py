"""Per-object errors, ListObjects and export on a real search service (embedded store in tmp_path)
and a real embedder (minilm + efficientnet-lite0).

UpsertObjects stores every valid object of a batch and reports each refused one by index and
field path (google.rpc.Status with a BadRequest); ingest skips exactly those; ListObjects pages
through everything once; an export ingests again to the same collection. The last test stops
the embedder: the service then answers UNAVAILABLE with ErrorInfo and RetryInfo."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from tests.servers import ServiceProcess, minilm_search_env, running_service, search_cli
from vitrine.common import rich_errors
from vitrine.v1 import common_pb2, search_pb2, search_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
PAINTINGS = DATA / "paintings"
PAINTING = PAINTINGS / "images" / "met-247009.jpg"
N_TATE = 30
N_PAINTINGS = 6


@pytest.fixture(scope="module")
def embedder() -> Iterator[ServiceProcess]:
    with running_service("embedder", {"VITRINE_EMBEDDER_MODELS": "minilm,efficientnet-lite0"}) as service:
        yield service


@pytest.fixture(scope="module")
def search(embedder: ServiceProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with running_service("search", minilm_search_env(embedder, tmp_path_factory.mktemp("search-data"))) as service:
        yield service


@pytest.fixture(scope="module")
def stub(search: ServiceProcess) -> Iterator[search_pb2_grpc.SearchServiceStub]:
    with grpc.insecure_channel(search.address) as channel:
        yield search_pb2_grpc.SearchServiceStub(channel)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 Tate records and 6 paintings with their image files, in one JSON lines file."""
    with gzip.open(DATA / "tate" / "tate_dev.jsonl.gz", "rt") as handle:
        tate = [json.loads(line) for _, line in zip(range(N_TATE), handle, strict=False)]
    with (PAINTINGS / "metadata.jsonl").open() as handle:
        paintings = [json.loads(line) for _, line in zip(range(N_PAINTINGS), handle, strict=False)]
    for p in paintings:
        p["file"] = str(PAINTINGS / p["file"])
    path = tmp_path_factory.mktemp("records") / "objects.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in tate + paintings))
    return path


@pytest.fixture(scope="module")
def loaded(search: ServiceProcess, records: Path) -> list[str]:
    out = search_cli(search, "ingest", str(records), "--quiet")
    assert f"{N_TATE + N_PAINTINGS} upserted" in out, out
    return [json.loads(line)["id"] for line in records.read_text().splitlines()]


def _batch(broken_at: int, empty_at: int) -> list[common_pb2.CollectionObject]:
    objects = []
    for n in range(64):
        obj = common_pb2.CollectionObject(id=f"batch-{n:02d}", title=f"Study of a harbour, number {n}")
        if n % 8 == 0:
            obj.image.data = PAINTING.read_bytes()
        objects.append(obj)
    objects[broken_at].image.data = b"\xff\xd8\xff\xe0 a JPEG that stops here"
    objects[empty_at].id = ""
    return objects


def test_a_batch_stores_every_valid_object_and_reports_the_two_wrong_ones(
    loaded: list[str], stub: search_pb2_grpc.SearchServiceStub
) -> None:
    answer = stub.UpsertObjects(search_pb2.UpsertObjectsRequest(objects=_batch(17, 40)), timeout=120)
    assert answer.upserted == 62 and answer.unchanged == 0
    assert [(e.index, e.id) for e in answer.errors] == [(17, "batch-17"), (40, "")]
    broken, empty = answer.errors
    assert broken.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    ((field, description),) = rich_errors.violations_of(broken.status)
    assert field == "objects[17].image" and description.startswith("image not embedded")
    assert rich_errors.violations_of(empty.status) == [
        ("objects[40].id", "id is empty: every object needs its museum id")
    ]
    # Old clients still see them in `skipped`.
    assert {s.id for s in answer.skipped} == {"batch-17", ""}
    with pytest.raises(grpc.RpcError) as info:
        stub.GetObject(search_pb2.GetObjectRequest(id="batch-17"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    stored = stub.GetObject(search_pb2.GetObjectRequest(id="batch-16"), timeout=10)
    assert sorted(stored.vectors) == ["image", "text"]
    # The same batch again: the 62 are unchanged, the 2 refused again.
    again = stub.UpsertObjects(search_pb2.UpsertObjectsRequest(objects=_batch(17, 40)), timeout=120)
    assert (again.upserted, again.unchanged, len(again.errors)) == (0, 62, 2)


def test_a_request_of_only_wrong_objects_is_invalid_argument_with_every_violation(
    loaded: list[str], stub: search_pb2_grpc.SearchServiceStub
) -> None:
    wrong = [
        common_pb2.CollectionObject(title="no id"),
        common_pb2.CollectionObject(id="twice", title="a"),
        common_pb2.CollectionObject(id="twice", title="b"),
        common_pb2.CollectionObject(id="nothing-to-embed"),
    ]
    with pytest.raises(grpc.RpcError) as info:
        stub.UpsertObjects(search_pb2.UpsertObjectsRequest(objects=wrong), timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "every object of the request was refused" in info.value.details()
    fields = [f for f, _ in rich_errors.violations_of(info.value)]
    assert fields == ["objects[0].id", "objects[1].id", "objects[2].id", "objects[3]"]


def test_ingest_skips_exactly_the_refused_objects(
    loaded: list[str], search: ServiceProcess, stub: search_pb2_grpc.SearchServiceStub, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 cut short")
    rows = [{"id": f"ing-{n}", "title": f"Harbour view {n}"} for n in range(5)]
    rows[3]["file"] = str(broken)
    path = tmp_path / "ingest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = search_cli(search, "ingest", str(path), "--quiet")
    assert "4 upserted, 0 unchanged, 1 skipped" in out, out
    assert "skipped: 1 × image not embedded" in out and "ingest.jsonl:4 (ing-3)" in out, out
    stub.DeleteObjects(search_pb2.DeleteObjectsRequest(ids=[r["id"] for r in rows]), timeout=10)


def _list_all(
    stub: search_pb2_grpc.SearchServiceStub, page_size: int, **request: Any
) -> tuple[list[search_pb2.ListedObject], int, int]:
    """Every listed object, the total the service counted and the number of pages."""
    found: list[search_pb2.ListedObject] = []
    token, pages, total = "", 0, -1
    while True:
        answer = stub.ListObjects(
            search_pb2.ListObjectsRequest(
                page=common_pb2.PageRequest(page_size=page_size, page_token=token), **request
            ),
            timeout=10,
        )
        pages += 1
        found.extend(answer.objects)
        total = answer.page.total_size
        assert len(answer.objects) <= page_size
        token = answer.page.next_page_token
        if not token:
            return found, total, pages


def test_list_objects_pages_through_everything_once(loaded: list[str], stub: search_pb2_grpc.SearchServiceStub) -> None:
    expected = set(loaded) | {f"batch-{n:02d}" for n in range(64) if n not in (17, 40)}
    found, total, pages = _list_all(stub, 7)
    ids = [item.object.id for item in found]
    assert len(ids) == len(set(ids)), "an object listed twice"
    assert set(ids) == expected and total == len(expected)
    assert pages == -(-len(expected) // 7)
    by_id = {item.object.id: item.object for item in found}
    painting = json.loads((PAINTINGS / "metadata.jsonl").read_text().splitlines()[0])
    assert by_id[painting["id"]].title == painting["title"]
    assert by_id[painting["id"]].image.origin.endswith(Path(painting["file"]).name)

    # With a filter: exactly the objects matching it, across pages.
    artist = by_id[loaded[0]].artist
    matching = {i for i, o in by_id.items() if o.artist == artist}
    filtered, total, _ = _list_all(stub, 3, filter=search_pb2.Filter(artists=[artist]))
    assert {item.object.id for item in filtered} == matching and total == len(matching)
    with_image, _, _ = _list_all(stub, 50, filter=search_pb2.Filter(has_image=True))
    images = {f"batch-{n:02d}" for n in range(0, 64, 8) if n != 40} | set(loaded[N_TATE:])
    assert {item.object.id for item in with_image} == images


def test_list_objects_read_mask_returns_only_the_fields_asked(
    loaded: list[str], stub: search_pb2_grpc.SearchServiceStub
) -> None:
    mask = field_mask_pb2.FieldMask(paths=["title"])
    answer = stub.ListObjects(search_pb2.ListObjectsRequest(read_mask=mask), timeout=10)
    assert answer.objects
    for item in answer.objects:
        assert item.object.id and item.object.title
        assert not item.object.artist and not item.object.extra and not item.object.image.origin
    mask = field_mask_pb2.FieldMask(paths=["image", "subjects"])
    answer = stub.ListObjects(search_pb2.ListObjectsRequest(read_mask=mask, page=common_pb2.PageRequest(page_size=100)))
    assert any(item.object.image.origin for item in answer.objects)
    assert any(item.object.subjects for item in answer.objects) and not any(i.object.title for i in answer.objects)


@pytest.mark.parametrize(
    ("request_fields", "words"),
    [
        ({"page": common_pb2.PageRequest(page_token="not-a-token")}, "is not one this service issued"),
        (
            {"page": common_pb2.PageRequest(page_token=base64.urlsafe_b64encode(b'{"v":1,"start":"x"}').decode())},
            "is not one this service issued",
        ),
        ({"page": common_pb2.PageRequest(page_size=101)}, "page.page_size is 101"),
        ({"page": common_pb2.PageRequest(page_size=-1)}, "page.page_size is -1"),
        ({"read_mask": field_mask_pb2.FieldMask(paths=["colour"])}, "read_mask.paths[0] 'colour'"),
        ({"filter": search_pb2.Filter(year_from=1900, year_to=1800)}, "year_from"),
    ],
)
def test_list_objects_refuses_bad_requests(
    loaded: list[str], stub: search_pb2_grpc.SearchServiceStub, request_fields: dict[str, Any], words: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.ListObjects(search_pb2.ListObjectsRequest(**request_fields), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in info.value.details()


def test_a_page_token_only_goes_with_its_own_filter(loaded: list[str], stub: search_pb2_grpc.SearchServiceStub) -> None:
    first = stub.ListObjects(search_pb2.ListObjectsRequest(page=common_pb2.PageRequest(page_size=2)), timeout=10)
    token = first.page.next_page_token
    assert token
    with pytest.raises(grpc.RpcError) as info:
        stub.ListObjects(
            search_pb2.ListObjectsRequest(
                filter=search_pb2.Filter(has_image=True), page=common_pb2.PageRequest(page_size=2, page_token=token)
            ),
            timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "another filter" in info.value.details()


def test_an_export_ingests_again_into_the_same_collection(
    loaded: list[str], search: ServiceProcess, stub: search_pb2_grpc.SearchServiceStub, tmp_path: Path
) -> None:
    first = tmp_path / "first.jsonl"
    out = search_cli(search, "export", str(first), "--quiet")
    lines = first.read_text().splitlines()
    assert f"{len(lines)} objects written" in out
    records = {r["id"]: r for r in map(json.loads, lines)}
    painting = records[loaded[N_TATE]]
    first_painting = json.loads((PAINTINGS / "metadata.jsonl").read_text().splitlines()[0])
    assert Path(painting["image"]).resolve() == (PAINTINGS / first_painting["file"]).resolve()
    assert "image_source" not in painting.get("extra", {})
    tate = records[loaded[0]]
    assert tate["subjects"] and tate["title"]

    # Deleted and ingested again from the export: the collection holds the same objects.
    ids = list(records)
    for start in range(0, len(ids), 500):
        stub.DeleteObjects(search_pb2.DeleteObjectsRequest(ids=ids[start : start + 500]), timeout=30)
    assert stub.GetCollectionInfo(search_pb2.GetCollectionInfoRequest(), timeout=10).objects == 0
    out = search_cli(search, "ingest", str(first), "--quiet")
    assert f"{len(ids)} upserted, 0 unchanged, 0 skipped" in out, out
    second = tmp_path / "second.jsonl"
    search_cli(search, "export", str(second), "--quiet")
    assert sorted(second.read_text().splitlines()) == sorted(lines)
    assert stub.GetObject(search_pb2.GetObjectRequest(id=loaded[N_TATE]), timeout=10).vectors == ["image", "text"]


def test_without_the_embedder_upserts_answer_unavailable_with_retry_info(
    loaded: list[str], embedder: ServiceProcess, stub: search_pb2_grpc.SearchServiceStub
) -> None:
    embedder.stop()
    new = common_pb2.CollectionObject(id="while-down", title="A harbour at night")
    with pytest.raises(grpc.RpcError) as info:
        stub.UpsertObjects(search_pb2.UpsertObjectsRequest(objects=[new]), timeout=60)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_errors.reason_of(info.value) == "EMBEDDER_UNAVAILABLE"
    assert rich_errors.retry_delay(info.value) == pytest.approx(2.0)
