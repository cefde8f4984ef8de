"""Reading collection records into CollectionObjects, on records the tests write (the tests on real
lines of the shared data are tests/integration/test_search_records.py)."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from vitrine.common.objects import object_text
from vitrine.common.records import (
    content_hash,
    count_rows,
    load_records,
    object_to_payload,
    parse_year,
    payload_to_object,
)
from vitrine.v1 import common_pb2


def test_bad_images_are_reported(tmp_path: Path) -> None:
    (tmp_path / "big.jpg").write_bytes(b"\xff\xd8\xff" + b"0" * 2000)
    (tmp_path / "notes.jpg").write_text("not an image")
    records = tmp_path / "records.jsonl"
    records.write_text(
        "\n".join(
            json.dumps({"id": f"x{i}", "title": "t", "file": name}) for i, name in enumerate(["big.jpg", "notes.jpg"])
        )
    )
    big, notes = load_records(records, max_image_bytes=1000)
    assert "more than" in big.image_problem
    assert "not an image file" in notes.image_problem
    assert big.object is not None and notes.object is not None


def test_skipped_records_say_why(tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl.gz"
    with gzip.open(records, "wt") as handle:
        handle.write('{"id": "ok", "title": "Fine"}\n{broken\n\n[1, 2]\n{"title": "no id"}\n')
    loaded = list(load_records(records))
    assert [x.skipped for x in loaded] == [
        "",
        "invalid JSON (Expecting property name enclosed in double quotes)",
        "not a JSON object",
        "no id (looked for id, object_id, accession_number, aic_id)",
    ]
    assert [x.where for x in loaded] == [
        "records.jsonl.gz:1",
        "records.jsonl.gz:2",
        "records.jsonl.gz:4",
        "records.jsonl.gz:5",
    ]
    assert count_rows(records) == 4


def test_csv_and_generic_records(tmp_path: Path) -> None:
    records = tmp_path / "objects.csv"
    records.write_text(
        "id,title,artist,date,year,medium,classification,description,movements,subjects,museum\n"
        "1985.52,Harbour at dusk,Anna Ancher,c. 1890,,Oil on canvas,painting,Boats at rest,Skagen Painters,"
        "harbour; boat | dusk,Skagens Museum\n"
        ",No id,,,,,,,,,\n"
    )
    assert count_rows(records) == 2
    ok, skipped = load_records(records)
    obj = ok.object
    assert obj is not None
    assert ok.where == "objects.csv:2"
    assert obj.id == "1985.52"
    assert obj.year == 1890  # from the date, as the year cell is empty
    assert list(obj.movements) == ["Skagen Painters"]
    assert list(obj.subjects) == ["harbour", "boat", "dusk"]
    assert obj.description == "Boats at rest"
    assert dict(obj.extra) == {"museum": "Skagens Museum"}
    assert skipped.skipped.startswith("no id")

    generic = tmp_path / "objects.json"
    generic.write_text(json.dumps([{"object_id": "g1", "title": "T", "extra": {"credit": "Gift"}, "year": "1901"}]))
    (only,) = load_records(generic)
    assert only.object is not None
    assert only.object.id == "g1" and only.object.year == 1901 and only.object.extra["credit"] == "Gift"


@pytest.mark.parametrize(
    ("year", "date", "expected"),
    [
        (1826, "1826–7", 1826),
        (None, "c.1840", 1840),
        (None, "date not known", None),
        (None, "ca. 50–40 BCE", -50),
        ("1901", "", 1901),
        (1840.0, "", 1840),
        (None, "", None),
    ],
)
def test_parse_year(year: object, date: str, expected: int | None) -> None:
    assert parse_year(year, date) == expected


def test_object_text() -> None:
    obj = common_pb2.CollectionObject(
        id="N00530",
        title="Snow Storm - Steam-Boat off a Harbour's Mouth",
        artist="Joseph Mallord William Turner",
        date="exhibited 1842",
        medium="Oil paint on canvas",
        classification="painting",
        movements=["Romanticism"],
        subjects=["steamboat"],
        description="A steamer caught in a storm.",
    )
    assert object_text(obj) == (
        "Snow Storm - Steam-Boat off a Harbour's Mouth. by Joseph Mallord William Turner. exhibited 1842. "
        "Oil paint on canvas. painting. Movements: Romanticism. A steamer caught in a storm"
    )
    assert object_text(common_pb2.CollectionObject(id="x")) == ""


def test_content_hash_covers_fields_image_and_models() -> None:
    obj = common_pb2.CollectionObject(id="x", title="A", image=common_pb2.Image(data=b"\xff\xd8\xffabc"))
    same = common_pb2.CollectionObject()
    same.CopyFrom(obj)
    assert content_hash(obj, ["mpnet"]) == content_hash(same, ["mpnet"])
    assert content_hash(obj, ["mpnet"]) != content_hash(obj, ["minilm"])
    same.image.data = b"\xff\xd8\xffabd"
    assert content_hash(obj) != content_hash(same)
    same.CopyFrom(obj)
    same.extra["museum"] = "Tate"
    assert content_hash(obj) != content_hash(same)


def test_payload_round_trip() -> None:
    obj = common_pb2.CollectionObject(
        id="T1",
        title="A",
        artist="B",
        year=0,
        subjects=["sea"],
        extra={"museum": "Tate"},
        image=common_pb2.Image(data=b"\xff\xd8\xff"),
    )
    payload = object_to_payload(obj, "abc", has_image=True)
    assert payload["has_image"] is True and payload["content_hash"] == "abc"
    assert "date" not in payload  # empty fields are not stored
    back = payload_to_object("T1", payload)
    assert back.HasField("year") and back.year == 0
    assert not back.HasField("image")  # image bytes are never stored
    expected = common_pb2.CollectionObject()
    expected.CopyFrom(obj)
    expected.ClearField("image")
    assert back == expected
    with_uri = common_pb2.CollectionObject(id="T2", image=common_pb2.Image(uri="https://example.org/a.jpg"))
    assert payload_to_object("T2", object_to_payload(with_uri, "h", True)).image.uri == "https://example.org/a.jpg"
    # Bytes with their origin: the origin is kept (never the bytes).
    with_origin = common_pb2.CollectionObject(id="T3", image=common_pb2.Image(data=b"\xff\xd8\xff", origin="/d/a.jpg"))
    back = payload_to_object("T3", object_to_payload(with_origin, "h", True))
    assert back.image.origin == "/d/a.jpg" and not back.image.HasField("data")


def test_batches_bound_size_and_drop_repeated_ids() -> None:
    from vitrine.common.records import Loaded
    from vitrine.search.ingest import IngestSummary, batches

    def obj(museum_id: str, image_bytes: int = 0) -> common_pb2.CollectionObject:
        o = common_pb2.CollectionObject(id=museum_id, title="t")
        if image_bytes:
            o.image.data = b"\xff" * image_bytes
        return o

    items = [
        Loaded("f:1", obj("a")),
        Loaded("f:2", skipped="invalid JSON"),
        Loaded("f:3", obj("b"), image_problem="image file not found: b.jpg"),
        Loaded("f:4", obj("a")),
        Loaded("f:5", obj("c")),
        Loaded("f:6", obj("big", 10 * 1024 * 1024)),
        Loaded("f:7", obj("big2", 10 * 1024 * 1024)),
    ]
    summary = IngestSummary()
    ids = [[x.object.id for x in batch if x.object] for batch in batches(items, summary, batch_size=2)]
    assert ids == [["a", "b"], ["c", "big"], ["big2"]]  # two 10 MiB images never share a call
    assert summary.read == 7
    assert summary.skipped == Counter({"invalid JSON": 1, "duplicate id": 1})
    assert summary.without_image == Counter({"image file not found": 1})
    text = "\n".join(summary.lines())
    assert "skipped: 1 × duplicate id" in text and "e.g. f:4: duplicate id: a already came" in text
