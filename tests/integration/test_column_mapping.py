"""Column mappings for CSV exports (services/search/formats/columns.py): a TMS-style export made
from real Tate records (CC0, ../shared/data/tate), mapped to CollectionObjects; the mapping
file's errors with their lines; the CLI's dry run, which stores nothing."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest

from vitrine.common.records import record_to_object
from vitrine.launcher import free_port
from vitrine.search import cli
from vitrine.search.formats.columns import MappingError, load_mapping, mapped_rows

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
# TMS's object export columns (Objects module field names, as museums export them).
TMS_HEADER = [
    "ObjectID",
    "ObjectNumber",
    "Title",
    "DisplayName",
    "Dated",
    "Medium",
    "Classification",
    "Dimensions",
    "CreditLine",
    "Subjects",
    "ImageFile",
]
TMS_MAPPING = """\
# TMS object export -> Vitrine
id: ObjectNumber
title: Title
artist: DisplayName
date: Dated
year: {column: Dated, year: true}
medium: Medium
classification: Classification
subjects: {column: Subjects, split: "|"}
image: {column: ImageFile, prefix: "https://images.example-museum.org/iiif/2/"}
extra.credit_line: CreditLine
extra.tms_object_id: ObjectID
extra.source: {value: "TMS export"}
"""


def tate_records(n: int = 6) -> list[dict[str, Any]]:
    """The first `n` Tate records with subjects, not Turner's sketchbook pages."""
    found = []
    with gzip.open(DATA / "tate" / "tate_dev.jsonl.gz", "rt") as handle:
        for line in handle:
            record = json.loads(line)
            if record["subjects"] and record["medium"] and record["artist"] != "Joseph Mallord William Turner":
                found.append(record)
                if len(found) == n:
                    break
    return found


def write_tms_export(path: Path, records: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TMS_HEADER)
        for n, r in enumerate(records):
            writer.writerow(
                [
                    1000 + n,
                    r["id"],
                    r["title"],
                    r["artist"],
                    r["date"] or "",
                    r["medium"] or "",
                    r["classification"] or "",
                    r["dimensions"] or "",
                    r["credit_line"] or "",
                    "|".join(r["subjects"]),
                    f"{r['id']}.jpg" if n % 2 == 0 else "",
                ]
            )
    return path


@pytest.fixture
def export(tmp_path: Path) -> tuple[Path, Path, list[dict[str, Any]]]:
    records = tate_records()
    mapping = tmp_path / "tms.yaml"
    mapping.write_text(TMS_MAPPING)
    return write_tms_export(tmp_path / "objects.csv", records), mapping, records


def test_a_tms_export_maps_to_the_tate_records(export: tuple[Path, Path, list[dict[str, Any]]]) -> None:
    csv_path, mapping_path, records = export
    rows = list(mapped_rows(csv_path, load_mapping(mapping_path)))
    assert [number for number, _ in rows] == list(range(2, 2 + len(records)))
    for (_, row), record in zip(rows, records, strict=True):
        assert isinstance(row, dict), row
        obj = record_to_object(row)
        assert obj.id == record["id"]
        assert (obj.title, obj.artist, obj.date, obj.medium) == (
            record["title"],
            record["artist"],
            record["date"],
            record["medium"],
        )
        assert obj.year == record["year"]
        assert list(obj.subjects) == list(dict.fromkeys(record["subjects"]))
        assert obj.extra["credit_line"] == record["credit_line"]
        assert obj.extra["source"] == "TMS export"
        assert obj.extra["tms_object_id"].isdigit()
        assert "Dimensions" not in obj.extra  # unmapped columns stay out
    first, second = record_to_object(rows[0][1]), record_to_object(rows[1][1])  # type: ignore[arg-type]
    assert first.extra["image_source"] == f"https://images.example-museum.org/iiif/2/{records[0]['id']}.jpg"
    assert "image_source" not in second.extra  # an empty cell is no image, not the bare prefix


def test_a_collectiveaccess_export_joins_columns(tmp_path: Path) -> None:
    record = tate_records(1)[0]
    csv_path = tmp_path / "ca.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["idno", "preferred_labels", "ca_entities.artist", "ca_objects.date", "ca_objects.medium"])
        writer.writerow([record["id"], record["title"], record["artist"], record["date"], record["medium"]])
        writer.writerow(["", "A row without its number", "", "", ""])
    mapping = tmp_path / "ca.yaml"
    mapping.write_text(
        "id: idno\n"
        "title: preferred_labels\n"
        "description: {columns: [preferred_labels, ca_objects.medium], join: ' — '}\n"
        "artist: [ca_entities.artist]\n"
        "date: ca_objects.date\n"
        "year: ca_objects.date\n"
    )
    (_, first), (number, second) = mapped_rows(csv_path, load_mapping(mapping))
    obj = record_to_object(first)  # type: ignore[arg-type]
    assert obj.description == f"{record['title']} — {record['medium']}"
    assert obj.year == record["year"]  # a date text in the year column gives its year
    assert (number, second) == (3, "empty id (column idno)")


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ("id: ObjectNumber\ntitel: Title\n", "line 2: unknown field 'titel' (did you mean 'title'?"),
        ("title: Title\n", "no `id:`"),
        (
            "id: ObjNumber\n",
            "line 1: column 'ObjNumber' (id) is not in the header of objects.csv (did you mean 'ObjectNumber'?",
        ),
        (
            "id: ObjectNumber\nsubjects: {column: Subjects, splitt: '|'}\n",
            "line 2: unknown option 'splitt' for subjects (did you mean 'split'?",
        ),
        (
            "id: ObjectNumber\nextra.x: {column: Title, value: x}\n",
            "line 2: extra.x needs exactly one of column, columns or value",
        ),
        ("id: ObjectNumber\nid: ObjectID\n", "line 2: id is mapped twice"),
        ("id: ObjectNumber\nmedium: {column: Medium, year: true}\n", "`year: true` belongs to the year field"),
        ("- id\n- title\n", "the mapping must be `field: column` lines"),
        ("id: [ObjectNumber\n", "is not valid YAML"),
    ],
)
def test_mapping_errors_say_what_to_fix(
    export: tuple[Path, Path, list[dict[str, Any]]], mapping: str, message: str
) -> None:
    csv_path, mapping_path, _ = export
    mapping_path.write_text(mapping)
    with pytest.raises(MappingError) as info:
        list(mapped_rows(csv_path, load_mapping(mapping_path)))
    assert message in str(info.value)


def test_dry_run_prints_mapped_records_and_stores_nothing(
    export: tuple[Path, Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path, mapping_path, records = export
    # Nothing listens there: a dry run never calls the service.
    address = f"127.0.0.1:{free_port()}"
    code = cli.main(["--address", address, "ingest", str(csv_path), "--columns", str(mapping_path), "--dry-run", "2"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(out) == 2
    shown = [json.loads(line) for line in out]
    assert [s["id"] for s in shown] == [r["id"] for r in records[:2]]
    assert shown[0]["subjects"] == list(dict.fromkeys(records[0]["subjects"]))
    assert shown[0]["extra"]["source"] == "TMS export"
    assert shown[0]["year"] == records[0]["year"]


def test_the_cli_reports_a_mapping_error(
    export: tuple[Path, Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path, mapping_path, _ = export
    mapping_path.write_text("id: ObjectNumber\nartist: Artist\n")
    code = cli.main(["ingest", str(csv_path), "--columns", str(mapping_path), "--dry-run", "1"])
    assert code == 1
    assert "line 2: column 'Artist' (artist) is not in the header" in capsys.readouterr().err


def test_the_readme_mapping_example_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = re.search(r"```yaml\n(# tms-objects\.yaml\n.*?)```", readme, re.S)
    assert example, "README's 'CSV exports with a column mapping' shows a mapping file"
    mapping_path = tmp_path / "tms-objects.yaml"
    mapping_path.write_text(example.group(1))
    mapping = load_mapping(mapping_path)
    header = ["ObjectNumber", "Title", "DisplayName", "Nationality", "Dated", "Medium", "Classification"]
    header += ["Subjects", "ImageFile", "CreditLine"]
    csv_path = tmp_path / "objects.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerow(
            ["N00530", "Sunset", "Joseph Mallord William Turner", "British", "c.1830–5", "Oil paint on canvas"]
        )
    ((_, row),) = mapped_rows(csv_path, mapping)
    assert isinstance(row, dict)
    assert (row["artist"], row["year"]) == ("Joseph Mallord William Turner, British", 1830)
