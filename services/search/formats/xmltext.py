"""Text out of XML metadata (Dublin Core, LIDO): whitespace-normalised values, URLs told apart
from text, and which URLs name an image. Shared by the XML readers of this package."""

from __future__ import annotations

import re
from collections.abc import Iterable

from lxml import etree

from vitrine.common.records import RecordError

_SPACE = re.compile(r"\s+")
_URL = re.compile(r"^https?://\S+$", re.IGNORECASE)
_IMAGE_PATH = re.compile(r"\.(jpe?g|png|gif|tiff?|webp|jp2)$", re.IGNORECASE)
# Image hosts whose URLs carry no file extension (the Rijksmuseum's images sit on Google's CDN).
_IMAGE_HOSTS = re.compile(r"^https?://(lh\d\.googleusercontent\.com|lh\d\.ggpht\.com)/", re.IGNORECASE)
_IIIF_IMAGE = re.compile(r"/info\.json$|/full/[^/]+/[^/]+/[^/]+\.(jpg|png|webp)$", re.IGNORECASE)


def clean(value: str | None) -> str:
    """One line of text: runs of whitespace (XML indentation, line breaks) become one space."""
    return _SPACE.sub(" ", value or "").strip()


def text_of(element: etree._Element | None) -> str:
    """All the text inside an element (its children's too), cleaned."""
    if element is None:
        return ""
    return clean("".join(element.itertext()))


def unique(values: Iterable[str]) -> list[str]:
    """The non-empty values, first occurrence of each, in order."""
    return list(dict.fromkeys(v for v in values if v))


def is_url(value: str) -> bool:
    return bool(_URL.match(value))


def is_image_url(value: str) -> bool:
    """An http(s) URL of an image file, a IIIF Image API request or service (`.../info.json`)."""
    if not is_url(value):
        return False
    path = value.split("?", 1)[0].split("#", 1)[0]
    return bool(_IMAGE_PATH.search(path) or _IIIF_IMAGE.search(path) or _IMAGE_HOSTS.match(value))


def record_root(metadata: etree._Element, namespace: str, name: str, label: str) -> etree._Element:
    """The format's root element (`name` in `namespace`, written `label` in messages): `metadata`
    itself or the first one inside it; a record without one is refused."""
    tag = f"{{{namespace}}}{name}"
    if metadata.tag == tag:
        return metadata
    found = metadata.find(f".//{tag}")
    if found is None:
        raise RecordError(f"no {label} element in the record's metadata")
    return found
