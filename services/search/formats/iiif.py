"""IIIF Presentation 3 and 2.1 manifests and collections -> `Loaded` records.

A manifest becomes one `CollectionObject` (v3 property / v2.1 property):

- id: a metadata pair labelled as the museum's number (ID_LABELS: "Object Number", "Accession
  Number", "Call Number", "Identifier", ...), else the manifest's URI; stable across re-ingests.
- title: the "Title" pair, else `label`. artist, date, medium, classification, subjects: the
  pairs labelled as in FIELD_LABELS ("Creator"/"Artist", "Date", "Medium", "Classification"/
  "Object Type", "Subject"). description: `summary` / `description`, else a "Description" pair.
  year: from the date ("c. 1818" -> 1818).
- extra: every other pair under its label; `rights` / `license` as `rights`; `requiredStatement`
  / `attribution` as `required_statement`; `homepage` / `related` (or an HTML `rendering`) as
  `permalink`; the manifest's URI as `iiif_manifest`; the image's URL as `image_source`.
- image: the first canvas's, from its IIIF Image service at no more than IIIF_SIZE pixels a side,
  in the size syntax the service's version and level support; else the painting annotation's
  body (v3) or resource (v2) itself.

Language maps (v3 `{"en": [...]}`, v2 `[{"@value", "@language"}]`) are read in the preferred
language, then the no-language values ("none" / "@none"), then any. HTML in values is reduced to
text. A collection's member manifests and sub-collections (and a v2 collection's pages) are walked
to a bounded depth and count, each fetched with a timeout and a byte limit; a member that cannot
be read is skipped with its URI and the reason, the rest go on.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vitrine.common.fetch import IIIF_SIZE, FetchError, FetchSettings, fetch_bytes
from vitrine.common.records import EXTRA_IMAGE_SOURCE, ImageReader, Loaded, RecordError, parse_year
from vitrine.v1 import common_pb2

PRESENTATION_CONTEXT = re.compile(r"iiif\.io/api/presentation/(\d)")
_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")

# Metadata labels (lower case) that name the museum's own number for the object, best first.
ID_LABELS = (
    "object number",
    "accession number",
    "accession no.",
    "inventory number",
    "inventory no.",
    "call number",
    "identifier",
    "object id",
)
FIELD_LABELS: dict[str, tuple[str, ...]] = {
    "title": ("title", "object title"),
    "artist": ("creator", "artist", "maker", "artist/maker", "author", "people"),
    "date": ("date", "dated", "date created", "creation date", "object date"),
    "medium": ("medium", "materials", "medium/technique", "technique", "material"),
    "classification": ("classification", "object type", "type", "object name", "work type"),
    "description": ("description",),
    "subjects": ("subject", "subjects", "keywords"),
}


class IiifError(RecordError):
    """A manifest or collection that cannot be read (the message says which and why)."""


@dataclass(frozen=True)
class IiifSettings:
    language: str = "en"
    # Collections inside collections: how deep to follow, and how many manifests at most.
    max_depth: int = 4
    max_manifests: int = 10_000
    max_json_bytes: int = 16 * 1024 * 1024
    fetch: FetchSettings = field(default_factory=FetchSettings)
    # False: no image is fetched (a dry run), the image's URL is still noted in `extra`.
    images: bool = True


# ----------------------------------------------------------------------------------------------
# Reading JSON
# ----------------------------------------------------------------------------------------------


def is_url(source: str) -> bool:
    return re.match(r"https?://", source) is not None


def get_json(source: str, settings: IiifSettings) -> dict[str, Any]:
    """A manifest or collection from a URL (bounded, transient failures retried) or a file. The
    errors leave out `source`: the `Loaded` they become carries it."""
    if is_url(source):
        data = _download(source, settings)
    else:
        path = Path(source)
        try:
            if path.stat().st_size > settings.max_json_bytes:
                raise IiifError(f"more than the {settings.max_json_bytes} bytes allowed")
            data = path.read_bytes()
        except OSError as exc:
            raise IiifError(f"cannot read the file ({exc.strerror or exc})") from exc
    try:
        document = json.loads(data)
    except json.JSONDecodeError as exc:
        raise IiifError(f"not JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from exc
    except UnicodeDecodeError as exc:
        raise IiifError("not JSON (not UTF-8 text)") from exc
    if not isinstance(document, dict):
        raise IiifError("not a JSON object")
    return document


def _download(url: str, settings: IiifSettings) -> bytes:
    bounded = replace(settings.fetch, max_bytes=settings.max_json_bytes)
    try:
        return fetch_bytes(url, bounded, accept="application/ld+json, application/json;q=0.9")
    except FetchError as exc:
        raise IiifError(str(exc)) from exc


def presentation_version(document: Mapping[str, Any]) -> int | None:
    """2 or 3 from the JSON-LD @context (a string or a list), None for other JSON."""
    contexts = document.get("@context")
    for context in contexts if isinstance(contexts, list) else [contexts]:
        found = PRESENTATION_CONTEXT.search(context) if isinstance(context, str) else None
        if found:
            return int(found.group(1))
    return None


def _kind(document: Mapping[str, Any]) -> str:
    """ "Manifest" or "Collection" (v3 `type`, v2 `@type` "sc:Manifest"), "" for anything else."""
    kind = document.get("type") or document.get("@type") or ""
    kind = kind.split(":")[-1] if isinstance(kind, str) else ""
    return kind if kind in ("Manifest", "Collection") else ""


def looks_like_iiif(source: str, max_bytes: int = 16 * 1024 * 1024) -> bool:
    """Whether `source` is a IIIF manifest or collection: any http(s) URL (ingest reads no other
    format from the web), or a .json file with a IIIF Presentation @context or type."""
    if is_url(source):
        return True
    path = Path(source)
    if path.suffix.lower() not in (".json", ".jsonld") or not path.is_file() or path.stat().st_size > max_bytes:
        return False
    try:
        document = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return False
    return isinstance(document, dict) and (presentation_version(document) is not None or _kind(document) != "")


# ----------------------------------------------------------------------------------------------
# Values: language maps, HTML, references
# ----------------------------------------------------------------------------------------------


def _plain(text: str) -> str:
    return _SPACES.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()


def text_of(value: Any, language: str = "en") -> str:
    """A label or value as text: v3 language maps, v2 strings, lists and {"@value", "@language"}
    objects; several values joined with "; "."""
    if value is None:
        return ""
    if isinstance(value, str | int | float):
        return _plain(str(value))
    if isinstance(value, dict) and "@value" not in value:
        # v3 language map.
        choice = next((value[k] for k in (language, "none", "@none") if k in value), None)
        if choice is None and value:
            choice = next(iter(value.values()))
        return "; ".join(t for t in (text_of(v, language) for v in _as_list(choice)) if t)
    items = [i for i in _as_list(value) if not isinstance(i, list)]
    languages = [i.get("@language") or "" for i in items if isinstance(i, dict) and "@value" in i]
    if languages:
        # v2: the preferred language's values, else the untagged ones, else the first language's.
        pick = language if language in languages else ("" if "" in languages else languages[0])
        items = [i for i in items if not isinstance(i, dict) or (i.get("@language") or "") == pick]
    texts = [_plain(str(i.get("@value", "") if isinstance(i, dict) else i)) for i in items]
    return "; ".join(dict.fromkeys(t for t in texts if t))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _ref_id(value: Any) -> str:
    """The URI of a reference: a string, or an object's `id` / `@id`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        found = value.get("id") or value.get("@id") or ""
        return found if isinstance(found, str) else ""
    return ""


# ----------------------------------------------------------------------------------------------
# The image of the first canvas
# ----------------------------------------------------------------------------------------------


def _first_painting_body(manifest: Mapping[str, Any], version: int) -> dict[str, Any] | None:
    if version >= 3:
        for canvas in _as_list(manifest.get("items")):
            for page in _as_list(canvas.get("items") if isinstance(canvas, dict) else None):
                for annotation in _as_list(page.get("items") if isinstance(page, dict) else None):
                    if not isinstance(annotation, dict) or annotation.get("motivation", "painting") != "painting":
                        continue
                    body = annotation.get("body")
                    if isinstance(body, list):
                        body = body[0] if body else None
                    if isinstance(body, dict) and body.get("type") == "Choice":
                        body = next(iter(_as_list(body.get("items"))), None)
                    if isinstance(body, dict):
                        return body
            return None
        return None
    for sequence in _as_list(manifest.get("sequences"))[:1]:
        for canvas in _as_list(sequence.get("canvases") if isinstance(sequence, dict) else None)[:1]:
            for annotation in _as_list(canvas.get("images") if isinstance(canvas, dict) else None):
                resource = annotation.get("resource") if isinstance(annotation, dict) else None
                if isinstance(resource, dict) and resource.get("@type") == "oa:Choice":
                    resource = resource.get("default")
                if isinstance(resource, dict):
                    return resource
    return None


def _service_level(service: Mapping[str, Any]) -> tuple[int, int]:
    """(Image API version, compliance level) of an image service reference."""
    kind = str(service.get("type") or service.get("@type") or "")
    context = str(service.get("@context") or "")
    profile = service.get("profile")
    profile_text = " ".join(str(p) for p in _as_list(profile) if isinstance(p, str))
    if kind == "ImageService3" or "image/3" in context:
        version = 3
    elif kind in ("ImageService2", "ImageService1") or "image/2" in context or "image/2" in profile_text:
        version = 2
    else:
        version = 3 if kind.startswith("ImageService") else 2
    level = re.search(r"level([012])", profile_text)
    return version, int(level.group(1)) if level else 0


def image_request(service: Mapping[str, Any], width: int = 0, height: int = 0) -> str:
    """The URL of the whole image from an image service, no more than IIIF_SIZE pixels a side,
    in the size syntax the service's version and compliance level must support: `!w,h` (level 2),
    `w,` (level 1; v3 refuses upscaling, so never wider than the image), else the full image
    (`max` in v3, `full` in v2) which every level-0 service serves."""
    base = _ref_id(service).rstrip("/")
    base = re.sub(r"/info\.json$", "", base)
    version, level = _service_level(service)
    if level >= 2:
        size = f"!{IIIF_SIZE},{IIIF_SIZE}"
    elif level == 1 and width > 0:
        scale = min(1.0, IIIF_SIZE / max(width, height or 0, 1))
        size = f"{max(1, round(width * scale))},"
    else:
        size = "max" if version >= 3 else "full"
    return f"{base}/full/{size}/0/default.jpg"


def image_candidates(manifest: Mapping[str, Any], version: int) -> list[str]:
    """URLs for the first canvas's image, best first: its image services, then the body itself."""
    body = _first_painting_body(manifest, version)
    if body is None:
        return []
    width = body.get("width") if isinstance(body.get("width"), int) else 0
    height = body.get("height") if isinstance(body.get("height"), int) else 0
    services = [s for s in _as_list(body.get("service")) if isinstance(s, dict) and _ref_id(s)]
    # Prefer the newest Image API version the body offers.
    services.sort(key=lambda s: -_service_level(s)[0])
    urls = [image_request(s, width, height) for s in services]
    direct = _ref_id(body)
    if direct and direct not in urls:
        urls.append(direct)
    return urls


# ----------------------------------------------------------------------------------------------
# A manifest -> a CollectionObject
# ----------------------------------------------------------------------------------------------


def _pairs(manifest: Mapping[str, Any], language: str) -> list[tuple[str, str]]:
    pairs = []
    for pair in _as_list(manifest.get("metadata")):
        if not isinstance(pair, dict):
            continue
        label, value = text_of(pair.get("label"), language), text_of(pair.get("value"), language)
        if label and value:
            pairs.append((label, value))
    return pairs


def _permalink(manifest: Mapping[str, Any]) -> str:
    for key in ("homepage", "related"):
        for ref in _as_list(manifest.get(key)):
            if _ref_id(ref):
                return _ref_id(ref)
    # v2 manifests (Harvard's, for one) link the museum's web page as an HTML rendering.
    for ref in _as_list(manifest.get("rendering")):
        if isinstance(ref, dict) and ref.get("format") == "text/html" and _ref_id(ref):
            return _ref_id(ref)
    return ""


def manifest_to_object(manifest: Mapping[str, Any], uri: str, language: str = "en") -> common_pb2.CollectionObject:
    """Map one manifest (see the module's table). Raises `IiifError` when it has no id at all."""
    pairs = _pairs(manifest, language)
    by_label: dict[str, str] = {}
    for label, value in pairs:
        by_label.setdefault(label.lower().rstrip(":"), value)
    used: set[str] = set()

    def take(labels: tuple[str, ...]) -> str:
        for label in labels:
            if label in by_label:
                used.add(label)
                return by_label[label]
        return ""

    manifest_uri = _ref_id(manifest) or uri
    museum_id = take(ID_LABELS) or manifest_uri
    if not museum_id:
        raise IiifError("the manifest has no id and no accession number")
    obj = common_pb2.CollectionObject(id=museum_id)
    obj.title = take(FIELD_LABELS["title"]) or text_of(manifest.get("label"), language)
    for name in ("artist", "date", "medium", "classification"):
        setattr(obj, name, take(FIELD_LABELS[name]))
    summary = manifest.get("summary") if "summary" in manifest else manifest.get("description")
    obj.description = text_of(summary, language) or take(FIELD_LABELS["description"])
    subjects = take(FIELD_LABELS["subjects"])
    obj.subjects.extend(dict.fromkeys(s.strip() for s in subjects.split(";") if s.strip()))
    year = parse_year(None, obj.date)
    if year is not None:
        obj.year = year

    extra: dict[str, str] = {}
    for label, value in pairs:
        if label.lower().rstrip(":") not in used and label not in extra:
            extra[label] = value
    rights = text_of(manifest.get("rights") or manifest.get("license"), language)
    if rights:
        extra["rights"] = rights
    statement = manifest.get("requiredStatement")
    if isinstance(statement, dict):
        label, value = text_of(statement.get("label"), language), text_of(statement.get("value"), language)
        if value:
            extra["required_statement"] = f"{label}: {value}" if label else value
    elif manifest.get("attribution"):
        extra["required_statement"] = text_of(manifest.get("attribution"), language)
    permalink = _permalink(manifest)
    if permalink:
        extra["permalink"] = permalink
    if manifest_uri:
        extra["iiif_manifest"] = manifest_uri
    obj.extra.update(extra)
    return obj


# ----------------------------------------------------------------------------------------------
# Manifests and collections -> Loaded
# ----------------------------------------------------------------------------------------------


def _members(collection: Mapping[str, Any], version: int) -> list[tuple[str, Any]]:
    """(kind, reference) of a collection's members: v3 `items`, v2 `manifests` / `collections` /
    `members`."""
    if version >= 3:
        refs = _as_list(collection.get("items"))
    else:
        refs = [
            *_as_list(collection.get("collections")),
            *_as_list(collection.get("manifests")),
            *_as_list(collection.get("members")),
        ]
    members = []
    for ref in refs:
        kind = _kind(ref) if isinstance(ref, dict) else "Manifest"
        members.append((kind or "Manifest", ref))
    return members


class _Walk:
    def __init__(self, settings: IiifSettings, images: ImageReader) -> None:
        self.settings = settings
        self.images = images
        self.seen: set[str] = set()
        self.manifests = 0

    def source(self, source: str, document: dict[str, Any] | None = None, depth: int = 0) -> Iterator[Loaded]:
        if source in self.seen:
            return
        self.seen.add(source)
        try:
            document = document if document is not None else get_json(source, self.settings)
        except IiifError as exc:
            yield Loaded(source, skipped=str(exc))
            return
        version = presentation_version(document) or (3 if "type" in document else 2)
        kind = _kind(document)
        if kind == "Collection":
            yield from self.collection(source, document, version, depth)
        elif kind == "Manifest":
            yield self.manifest(source, document, version)
        else:
            yield Loaded(source, skipped="not a IIIF manifest or collection (no Manifest or Collection type)")

    def collection(self, source: str, document: dict[str, Any], version: int, depth: int) -> Iterator[Loaded]:
        page: dict[str, Any] | None = document
        while page is not None:
            for kind, ref in _members(page, version):
                if self.manifests >= self.settings.max_manifests:
                    return
                uri = _ref_id(ref)
                if not uri:
                    yield Loaded(source, skipped="a collection member without an id")
                    continue
                if kind == "Collection":
                    if depth + 1 >= self.settings.max_depth:
                        yield Loaded(uri, skipped=f"collection nested deeper than {self.settings.max_depth} levels")
                        continue
                    yield from self.source(uri, None, depth + 1)
                else:
                    # An embedded manifest (with its canvases) needs no fetch.
                    inline = ref if isinstance(ref, dict) and ("items" in ref or "sequences" in ref) else None
                    yield from self.source(uri, inline, depth + 1)
            # A v2 paged collection: `first` page, then each page's `next` (followed in a loop, so
            # a long collection does not nest generators).
            following = _ref_id(page.get("first") if page is document and "first" in page else page.get("next"))
            if not following or following in self.seen:
                return
            self.seen.add(following)
            try:
                page = get_json(following, self.settings)
            except IiifError as exc:
                yield Loaded(following, skipped=str(exc))
                return

    def manifest(self, source: str, document: dict[str, Any], version: int) -> Loaded:
        self.manifests += 1
        try:
            obj = manifest_to_object(document, source, self.settings.language)
        except IiifError as exc:
            return Loaded(source, skipped=str(exc))
        loaded = Loaded(source, obj)
        candidates = image_candidates(document, version)
        if not candidates:
            loaded.image_problem = "the first canvas has no image"
            return loaded
        obj.extra[EXTRA_IMAGE_SOURCE] = candidates[0]
        if not self.settings.images:
            return loaded
        problems = []
        for url in candidates:
            try:
                obj.image.CopyFrom(self.images.read(url))
                obj.extra[EXTRA_IMAGE_SOURCE] = url
                return loaded
            except RecordError as exc:
                problems.append(str(exc))
        loaded.image_problem = "; ".join(problems)
        return loaded


def read_iiif(source: str, settings: IiifSettings | None = None) -> Iterator[Loaded]:
    """Every manifest of `source` (a manifest or collection, URL or file) as a `Loaded`; `where`
    is the manifest's URI (or the file)."""
    settings = settings or IiifSettings()
    base = Path(source).parent if not is_url(source) else Path.cwd()
    images = ImageReader(base, fetch=settings.fetch, max_bytes=settings.fetch.max_bytes)
    yield from _Walk(settings, images).source(source)
