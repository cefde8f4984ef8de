"""CSV exports with a column mapping (YAML or JSON) -> `CollectionObject`s.

Collection systems (TMS, CollectiveAccess, Axiell, a spreadsheet) export CSV with their own column
names. A mapping file names, for each `CollectionObject` field, where its value comes from:

    id: ObjectNumber                       # a column
    title: Title
    artist: [DisplayName, Nationality]     # columns joined (with ", " unless `join` says)
    date: Dated
    year: {column: Dated, year: true}      # the year in a free-text date ("c. 1840" -> 1840)
    medium: Medium
    subjects: {column: Subjects, split: "|"}                           # a list field from one cell
    image: {column: ImageFile, prefix: "https://images.museum.org/"}   # path or URL, prefixed
    extra.credit_line: CreditLine                                      # extra.<key>: any text
    extra.source: {value: "TMS export"}                                # a constant

A spec is a column name, a list of columns, or a mapping with `column` or `columns` (or `value`,
a constant) and the transforms `join`, `split`, `year`, `prefix`. Targets are the fields of
TARGETS and `extra.<key>`. The mapping is checked against the CSV's header before any row is
read: an unknown field, an unknown column or transform is an error naming the mapping file's line.
The mapped rows go through the same reading as every other record (records.load_records), so
images are read, fetched and checked as for JSON lines.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vitrine.common.records import LIST_FIELDS, TEXT_FIELDS, RecordError, parse_year, read_rows

TARGETS = ("id", *TEXT_FIELDS, "year", *LIST_FIELDS, "image")
OPTIONS = ("column", "columns", "value", "join", "split", "year", "prefix")


class MappingError(RecordError):
    """A mapping file that cannot be used (the message names the file, line and what to fix)."""


@dataclass(frozen=True)
class FieldSpec:
    target: str
    line: int
    columns: tuple[str, ...] = ()
    value: str | None = None
    join: str = ", "
    split: str | None = None
    year: bool = False
    prefix: str = ""


@dataclass
class ColumnMapping:
    path: Path
    fields: list[FieldSpec] = field(default_factory=list)

    def columns(self) -> set[str]:
        return {c for spec in self.fields for c in spec.columns}


def _where(path: Path, node: yaml.Node) -> str:
    return f"{path} line {node.start_mark.line + 1}"


def _strings(path: Path, node: yaml.Node, what: str) -> tuple[str, ...]:
    if isinstance(node, yaml.ScalarNode) and node.value.strip():
        return (node.value.strip(),)
    if isinstance(node, yaml.SequenceNode) and node.value:
        names = []
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode) or not item.value.strip():
                raise MappingError(f"{_where(path, item)}: {what} must be column names (text)")
            names.append(item.value.strip())
        return tuple(names)
    raise MappingError(f"{_where(path, node)}: {what} must be a column name or a list of them")


def _spec(path: Path, target: str, node: yaml.Node) -> FieldSpec:
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.MappingNode):
        return FieldSpec(target, line, columns=_strings(path, node, target))
    options: dict[str, yaml.Node] = {}
    for key, value in node.value:
        if key.value not in OPTIONS:
            close = difflib.get_close_matches(key.value, OPTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (options: {', '.join(OPTIONS)})"
            raise MappingError(f"{_where(path, key)}: unknown option {key.value!r} for {target}{hint}")
        options[key.value] = value
    sources = [k for k in ("column", "columns", "value") if k in options]
    if len(sources) != 1:
        raise MappingError(f"{_where(path, node)}: {target} needs exactly one of column, columns or value")

    def text(name: str) -> str:
        option = options[name]
        if not isinstance(option, yaml.ScalarNode):
            raise MappingError(f"{_where(path, option)}: {name} of {target} must be text")
        return option.value

    spec = FieldSpec(
        target,
        line,
        columns=() if "value" in options else _strings(path, options[sources[0]], target),
        value=text("value") if "value" in options else None,
        join=text("join") if "join" in options else ", ",
        split=text("split") if "split" in options else None,
        year=text("year").lower() in ("true", "yes", "1") if "year" in options else False,
        prefix=text("prefix") if "prefix" in options else "",
    )
    if spec.split == "":
        raise MappingError(f"{_where(path, options['split'])}: split of {target} needs a separator")
    if spec.year and target != "year" and not target.startswith("extra."):
        raise MappingError(f"{_where(path, options['year'])}: `year: true` belongs to the year field")
    return spec


def load_mapping(path: str | Path) -> ColumnMapping:
    """Read and check a mapping file (YAML, or JSON, which YAML reads too)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"cannot read the mapping {path}: {exc.strerror or exc}") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise MappingError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(root, yaml.MappingNode):
        raise MappingError(f"{path}: the mapping must be `field: column` lines (see README, CSV exports)")
    mapping = ColumnMapping(path)
    seen: set[str] = set()
    for key, value in root.value:
        target = key.value.strip() if isinstance(key, yaml.ScalarNode) else ""
        if target not in TARGETS and not (target.startswith("extra.") and len(target) > len("extra.")):
            close = difflib.get_close_matches(target, TARGETS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise MappingError(
                f"{_where(path, key)}: unknown field {target!r} ({hint}fields: {', '.join(TARGETS)}, extra.<key>)"
            )
        if target in seen:
            raise MappingError(f"{_where(path, key)}: {target} is mapped twice")
        seen.add(target)
        mapping.fields.append(_spec(path, target, value))
    if "id" not in seen:
        raise MappingError(f"{path}: no `id:` (the column with the museum's number for each object)")
    return mapping


# ----------------------------------------------------------------------------------------------
# Applying a mapping to the rows of a CSV export
# ----------------------------------------------------------------------------------------------


def _open(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")  # type: ignore[return-value]
    return path.open("r", encoding="utf-8-sig", newline="")


def read_header(path: Path) -> list[str]:
    try:
        with _open(path) as handle:
            return [name.strip() for name in next(csv.reader(handle), [])]
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"cannot read the CSV {path}: {exc}") from exc


def check_columns(mapping: ColumnMapping, header: list[str], csv_path: Path) -> None:
    present = set(header)
    for spec in mapping.fields:
        for column in spec.columns:
            if column not in present:
                close = difflib.get_close_matches(column, header, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise MappingError(
                    f"{mapping.path} line {spec.line}: column {column!r} ({spec.target}) is not in the header of "
                    f"{csv_path.name} ({hint}its columns: {', '.join(header)})"
                )


def _apply(spec: FieldSpec, row: Mapping[str, str]) -> str | list[str] | int | None:
    cells = [spec.value] if spec.value is not None else [(row.get(c) or "").strip() for c in spec.columns]
    if spec.split is not None:
        items = [p.strip() for cell in cells for p in cell.split(spec.split)]
        values: list[str] = [spec.prefix + p for p in dict.fromkeys(p for p in items if p)]
        if spec.target in LIST_FIELDS:
            return values
        return spec.join.join(values) or None
    text = spec.join.join(c for c in cells if c)
    if not text:
        return None
    if spec.year:
        return parse_year(None, text)
    if spec.target in LIST_FIELDS:
        return [spec.prefix + text]
    return spec.prefix + text


def map_row(mapping: ColumnMapping, row: Mapping[str, str]) -> dict[str, Any] | str:
    """The record in Vitrine's field names (what records.record_to_object reads), or why the row
    cannot become an object."""
    record: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for spec in mapping.fields:
        value = _apply(spec, row)
        if value is None or value == []:
            continue
        if spec.target.startswith("extra."):
            extra[spec.target.removeprefix("extra.")] = str(value)
        else:
            record[spec.target] = value
    if "id" not in record:
        spec = next(s for s in mapping.fields if s.target == "id")
        return f"empty id (column {', '.join(spec.columns) or 'value'})"
    if isinstance(record.get("year"), str) and not re.fullmatch(r"\s*-?\d{1,4}\s*", record["year"]):
        # A date text in the year column: its year, rather than refusing the row.
        record["year"] = parse_year(None, record["year"])
    if extra:
        record["extra"] = extra
    return record


def mapped_rows(csv_path: str | Path, mapping: ColumnMapping) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(row number, mapped record or reason) for each row of the export, the header checked
    against the mapping first (a `MappingError` before any row)."""
    csv_path = Path(csv_path)
    if not csv_path.name.lower().removesuffix(".gz").endswith(".csv"):
        raise MappingError(f"{csv_path}: --columns maps CSV exports (.csv or .csv.gz)")
    check_columns(mapping, read_header(csv_path), csv_path)
    for number, row in read_rows(csv_path):
        yield number, row if isinstance(row, str) else map_row(mapping, row)
