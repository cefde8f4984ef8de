"""Reading collection records into CollectionObjects, on real lines of the shared data (Tate,
paintings); the readers' other tests, on records they write themselves, are
tests/unit/test_search_records.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from vitrine.common.records import (
    EXTRA_IMAGE_SOURCE,
    load_records,
    read_rows,
    record_to_object,
)

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
