"""Collection records in, `CollectionObject`s out; and the object's place in the store.

Reads JSON Lines (optionally gzipped), JSON arrays and CSV. One mapping serves the Tate records,
the paintings records and generic records that use the `CollectionObject` field names: known
fields go to their proto fields, everything else to `extra` as text. A record's image file (the
`file` field of the paintings) is read from disk and sent as bytes.

In common because search's ingest and the tagger's training data read the same records. Also
here: the content hash that makes re-ingesting an unchanged object a no-op, and the mapping to
and from the search store's payload, which share the field lists above.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vitrine.common.fetch import FetchError, FetchSettings, fetch_image_bytes
from vitrine.v1 import common_pb2

DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024

ID_FIELDS = ("id", "object_id", "accession_number", "aic_id")
IMAGE_FIELDS = ("file", "image_file", "image_path", "image", "image_url")
TEXT_FIELDS = ("title", "artist", "date", "medium", "classification", "description")
LIST_FIELDS = ("movements", "subjects")
# Separators of list values in CSV cells ("sea; ship" or "sea|ship").
_LIST_SPLIT = re.compile(r"\s*[;|]\s*")
_YEAR_IN_DATE = re.compile(r"(?<!\d)(\d{3,4})(?!\d)")
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")

EXTRA_IMAGE_SOURCE = "image_source"
# Written by `vitrine-search export` (export.py), not read back: the tagger gives machine tags again.
EXPORT_ONLY_FIELDS = ("machine_tags", "machine_tags_version")


@dataclass
class Loaded:
    """One input record: the object made from it, or why it was skipped."""

    where: str
    object: common_pb2.CollectionObject | None = None
    # Why the whole record was skipped (no object then).
    skipped: str = ""
    # Why the object goes without its image (the object itself is kept).
    image_problem: str = ""


class RecordError(ValueError):
    """A record that cannot become an object (the message says why)."""


# ----------------------------------------------------------------------------------------------
# Reading files
# ----------------------------------------------------------------------------------------------


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")  # type: ignore[return-value]
    return path.open("r", encoding="utf-8-sig", newline="")


def _base_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    for ext in (".jsonl", ".ndjson", ".json", ".csv"):
        if name.endswith(ext):
            return ext.lstrip(".")
    raise RecordError(f"{path}: unknown format; use .jsonl, .ndjson, .json or .csv (optionally .gz)")


def read_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line or row number, record) for each record of the file; for a record that cannot be
    parsed, the record is the reason as a string."""
    path = Path(path)
    fmt = _base_format(path)
    with _open_text(path) as handle:
        if fmt == "csv":
            for number, row in enumerate(csv.DictReader(handle), start=2):
                yield number, {k.strip(): v for k, v in row.items() if k is not None}
        elif fmt == "json":
            data = json.load(handle)
            rows = data if isinstance(data, list) else [data]
            for number, row in enumerate(rows, start=1):
                yield number, row if isinstance(row, dict) else f"item {number} is not a JSON object"
        else:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, f"invalid JSON ({exc.msg})"
                    continue
                yield number, row if isinstance(row, dict) else "not a JSON object"


def count_rows(path: str | Path) -> int:
    """Number of records, for progress bars (counts lines; cheap next to embedding)."""
    path = Path(path)
    if _base_format(path) == "json":
        return sum(1 for _ in read_rows(path))
    with _open_text(path) as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines - 1 if _base_format(path) == "csv" else lines


# ----------------------------------------------------------------------------------------------
# Mapping a record
# ----------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else _LIST_SPLIT.split(str(value))
    # Deduplicated in order: Tate repeats a subject when it sits in two places of its hierarchy.
    return list(dict.fromkeys(t for t in (_text(i) for i in items) if t))


def parse_year(value: Any, date: str = "") -> int | None:
    """The year as a number, from `year` or else from the free-text date ("c. 1840" -> 1840)."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,4}(\.0+)?\s*", value):
        return int(float(value))
    if not date:
        return None
    if re.search(r"\bB\.?C\.?(E\.?)?\b", date):
        found = re.search(r"(?<!\d)(\d{1,4})(?!\d)", date)
        return -int(found.group(1)) if found else None
    found = _YEAR_IN_DATE.search(date)
    return int(found.group(1)) if found else None


def _extra_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "; ".join(_text(v) for v in value if _text(v))
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return _text(value)


def record_to_object(record: Mapping[str, Any]) -> common_pb2.CollectionObject:
    """Map one record (Tate, paintings, or generic CollectionObject field names); the image is
    not read here (see `ImageReader`). Raises `RecordError` when the record has no id."""
    id_field = next((f for f in ID_FIELDS if _text(record.get(f))), None)
    if id_field is None:
        raise RecordError(f"no id (looked for {', '.join(ID_FIELDS)})")
    museum_id = _text(record[id_field])
    obj = common_pb2.CollectionObject(id=museum_id)
    for name in TEXT_FIELDS:
        setattr(obj, name, _text(record.get(name)))
    year = parse_year(record.get("year"), obj.date)
    if year is not None:
        obj.year = year
    for name in LIST_FIELDS:
        getattr(obj, name).extend(_list(record.get(name)))

    used = {id_field, *TEXT_FIELDS, *LIST_FIELDS, "year", "extra", *EXPORT_ONLY_FIELDS}
    extra: dict[str, str] = {}
    for key, value in record.items():
        if key in used or key in IMAGE_FIELDS:
            continue
        text = _extra_value(value)
        if text:
            extra[key] = text
    if isinstance(record.get("extra"), dict):
        extra.update({k: _extra_value(v) for k, v in record["extra"].items() if _extra_value(v)})
    source = image_source(record)
    if source:
        extra[EXTRA_IMAGE_SOURCE] = source
    obj.extra.update(extra)
    return obj


def image_source(record: Mapping[str, Any]) -> str:
    """The record's image path or URL, as written in the record ('' when it has none)."""
    return next((_text(record[f]) for f in IMAGE_FIELDS if isinstance(record.get(f), str) and _text(record[f])), "")


class ImageReader:
    """Reads a record's image file into bytes, with a size bound.

    Relative paths are looked up in `images_dir` (as written, then by file name) when given,
    else next to the records file (the paintings' `file` is relative to their metadata file).
    http(s) and IIIF URLs are fetched (bounded, retried: see fetch.py)."""

    def __init__(
        self,
        base_dir: Path,
        images_dir: Path | None = None,
        max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        fetch: FetchSettings | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.images_dir = images_dir
        self.max_bytes = max_bytes
        self.fetch = replace(fetch or FetchSettings(), max_bytes=max_bytes)

    def candidates(self, source: str) -> list[Path]:
        path = Path(source)
        if path.is_absolute():
            return [path]
        if self.images_dir is not None:
            return [self.images_dir / path, self.images_dir / path.name]
        return [self.base_dir / path]

    def read(self, source: str) -> common_pb2.Image:
        """The image (its bytes, and where they came from), or `RecordError` saying why it cannot
        be used."""
        if re.match(r"https?://", source):
            try:
                data = fetch_image_bytes(source, self.fetch)
            except FetchError as exc:
                raise RecordError(f"cannot fetch image {exc}") from exc
            origin = source
        else:
            path = next((p for p in self.candidates(source) if p.is_file()), None)
            if path is None:
                raise RecordError(f"image file not found: {source}")
            data = self._read_file(path, source)
            origin = str(path.resolve())
        if not data.startswith(_IMAGE_MAGIC) and not (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
            raise RecordError(f"{source} is not an image file (JPEG, PNG, WebP, GIF, BMP or TIFF)")
        return common_pb2.Image(data=data, origin=origin)

    def _read_file(self, path: Path, source: str) -> bytes:
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise RecordError(f"image {source} has {size / 2**20:.1f} MiB, more than {self.max_bytes / 2**20:.0f}")
            return path.read_bytes()
        except OSError as exc:
            raise RecordError(f"cannot read image {source}: {exc.strerror or exc}") from exc


def load_records(
    path: str | Path,
    images_dir: str | Path | None = None,
    limit: int | None = None,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    rows: Iterable[tuple[int, dict[str, Any] | str]] | None = None,
) -> Iterator[Loaded]:
    """Every record of the file as a `Loaded` (at most `limit` records). `rows` replaces the
    file's own rows (already filtered ones, e.g. a demo subset), keeping its name and folder."""
    path = Path(path)
    reader = ImageReader(path.parent, Path(images_dir) if images_dir else None, max_image_bytes)
    for n, (number, row) in enumerate(rows if rows is not None else read_rows(path)):
        if limit is not None and n >= limit:
            return
        where = f"{path.name}:{number}"
        if isinstance(row, str):
            yield Loaded(where, skipped=row)
            continue
        try:
            obj = record_to_object(row)
        except RecordError as exc:
            yield Loaded(where, skipped=str(exc))
            continue
        loaded = Loaded(where, obj)
        source = obj.extra.get(EXTRA_IMAGE_SOURCE, "")
        if source:
            try:
                obj.image.CopyFrom(reader.read(source))
            except RecordError as exc:
                loaded.image_problem = str(exc)
        yield loaded


# ----------------------------------------------------------------------------------------------
# Text to embed, content hash, store payload
# ----------------------------------------------------------------------------------------------


def content_hash(obj: common_pb2.CollectionObject, models: Iterable[str] = ()) -> str:
    """A hash of everything stored for the object: all fields, the image's bytes (by their own
    hash) and the models that embed it, so a changed model re-embeds too."""
    canonical = common_pb2.CollectionObject()
    canonical.CopyFrom(obj)
    if obj.image.HasField("data"):
        canonical.image.uri = "sha256:" + hashlib.sha256(obj.image.data).hexdigest()
    digest = hashlib.sha256(canonical.SerializeToString(deterministic=True))
    digest.update("\0".join(models).encode())
    return digest.hexdigest()


def object_to_payload(obj: common_pb2.CollectionObject, hash_: str, has_image: bool) -> dict[str, Any]:
    """The store payload of an object: its fields (empty ones left out), `has_image` (it has an
    image vector) and the content hash. Image bytes are never stored; a URI is."""
    payload: dict[str, Any] = {name: getattr(obj, name) for name in TEXT_FIELDS if getattr(obj, name)}
    if obj.HasField("year"):
        payload["year"] = obj.year
    for name in LIST_FIELDS:
        if getattr(obj, name):
            payload[name] = list(getattr(obj, name))
    if obj.extra:
        payload["extra"] = dict(obj.extra)
    if obj.image.HasField("uri"):
        payload["image_uri"] = obj.image.uri
    if obj.image.origin:
        payload["image_origin"] = obj.image.origin
    payload["has_image"] = has_image
    payload["content_hash"] = hash_
    return payload


def payload_to_object(museum_id: str, payload: Mapping[str, Any]) -> common_pb2.CollectionObject:
    obj = common_pb2.CollectionObject(id=museum_id)
    for name in TEXT_FIELDS:
        setattr(obj, name, payload.get(name) or "")
    if payload.get("year") is not None:
        obj.year = int(payload["year"])
    for name in LIST_FIELDS:
        getattr(obj, name).extend(payload.get(name) or [])
    obj.extra.update(payload.get("extra") or {})
    if payload.get("image_uri"):
        obj.image.uri = payload["image_uri"]
    if payload.get("image_origin"):
        obj.image.origin = payload["image_origin"]
    return obj
