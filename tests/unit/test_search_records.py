"""Reading collection records into CollectionObjects, on real lines of the shared data."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from vitrine.search.records import (
    EXTRA_IMAGE_SOURCE,
    content_hash,
    count_rows,
    load_records,
    object_text,
    object_to_payload,
    parse_year,
    payload_to_object,
    read_rows,
    record_to_object,
)
from vitrine.v1 import common_pb2

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
TATE_DEV = DATA / "tate" / "tate_dev.jsonl.gz"
PAINTINGS = DATA / "paintings" / "metadata.jsonl"


def test_tate_record() -> None:
    loaded = list(load_records(TATE_DEV, limit=3))
    assert [x.where for x in loaded] == ["tate_dev.jsonl.gz:1", "tate_dev.jsonl.gz:2", "tate_dev.jsonl.gz:3"]
    obj = loaded[0].object
    assert obj is not None and not loaded[0].skipped
    assert obj.id == "A00007"
    assert obj.title == "The Baffled Devils Fighting"
    assert obj.artist == "William Blake"
    assert obj.year == 1826
    assert obj.medium == "Line engraving on paper"
    assert obj.classification == "on paper, print"
    # Subjects keep their order and lose the repeats (Tate lists "Hell" under two paths).
    assert obj.subjects[:4] == ["Dante", "Virgil", "Dante, 'Divine Comedy: Inferno'", "Hell"]
    assert list(obj.subjects).count("Hell") == 1
    assert obj.extra["dimensions"] == "image: 242 x 334 mm"
    assert obj.extra["acquisition_year"] == "1919"
    assert obj.extra["subject_paths"].startswith("literature and fiction > characters; ")
    assert "thumbnail_url" in obj.extra  # a web URL, unreachable offline: kept, never fetched
    assert not obj.HasField("image")
    assert EXTRA_IMAGE_SOURCE not in obj.extra


def test_tate_record_without_year() -> None:
    for _, row in read_rows(TATE_DEV):
        assert isinstance(row, dict)
        if row["year"] is None:
            obj = record_to_object(row)
            assert not obj.HasField("year")
            assert obj.date == row["date"]
            break
    else:
        pytest.fail("no Tate record without a year")


def test_paintings_record_reads_the_image_next_to_the_metadata() -> None:
    loaded = next(load_records(PAINTINGS, limit=1))
    obj = loaded.object
    assert obj is not None and not loaded.image_problem
    assert obj.id == "met-247009"
    assert obj.artist == "Unknown"
    assert obj.year == -50
    assert obj.medium == "Fresco"
    assert obj.extra["museum"] == "Metropolitan Museum of Art"
    assert obj.extra["height_cm"] == "186.7"
    assert obj.extra["century"] == "BCE"
    assert obj.extra[EXTRA_IMAGE_SOURCE] == "images/met-247009.jpg"
    assert "wikidata" not in obj.extra  # null fields are left out
    assert obj.image.data[:3] == b"\xff\xd8\xff"
    assert obj.image.data == (DATA / "paintings" / "images" / "met-247009.jpg").read_bytes()
    # Where the bytes came from travels with them, so viewers (the explorer) can show the image.
    assert obj.image.origin == str((DATA / "paintings" / "images" / "met-247009.jpg").resolve())


def test_images_dir_option(tmp_path: Path) -> None:
    # --images DIR may name the image folder itself: the file is then found by its name.
    loaded = next(load_records(PAINTINGS, images_dir=DATA / "paintings" / "images", limit=1))
    assert loaded.object is not None and loaded.object.image.data[:3] == b"\xff\xd8\xff"
    # A folder without the images: the object is kept without an image, and the reason is given.
    loaded = next(load_records(PAINTINGS, images_dir=tmp_path, limit=1))
    assert loaded.object is not None and not loaded.object.HasField("image")
    assert loaded.image_problem == "image file not found: images/met-247009.jpg"
    assert loaded.object.extra[EXTRA_IMAGE_SOURCE] == "images/met-247009.jpg"


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


def test_demo_subset_is_spread_and_capped() -> None:
    from vitrine.search.cli import spread_rows

    rows = spread_rows(TATE_DEV, 1000, max_artist_share=0.2)
    assert len(rows) == 1000
    numbers = [number for number, _ in rows]
    assert numbers == sorted(numbers) and len(set(numbers)) == 1000
    artists = Counter(row["artist"] for _, row in rows if isinstance(row, dict))
    assert artists.most_common(1)[0][1] <= 200  # Turner's sketchbooks would otherwise fill half of it
    assert rows == spread_rows(TATE_DEV, 1000, max_artist_share=0.2)  # deterministic
    assert len(spread_rows(PAINTINGS, None)) == 4375


def test_batches_bound_size_and_drop_repeated_ids() -> None:
    from vitrine.search.ingest import IngestSummary, batches
    from vitrine.search.records import Loaded

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
