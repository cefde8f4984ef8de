"""Unqualified Dublin Core (`oai_dc`, as OAI-PMH serves it) -> `CollectionObject`.

Field by field (README, "Harvesting OAI-PMH", has the same table):

- id: the first `dc:identifier` that is not a URL (a museum's object number, "SK-C-5"), else the
  record's OAI identifier. Either is stable across harvests; the harvester remembers which id an
  OAI identifier gave, so a deletion (which carries only the OAI identifier) reaches the object.
- title: the first `dc:title`; further titles go to extra `alternative_titles`.
- artist: every `dc:creator`, joined with "; " (roles written into the value, as in
  "schilder: Rijn, Rembrandt van", are kept). `dc:contributor` goes to extra `contributors`.
- date: every `dc:date`, joined with " / " ("1896 / 1898"); year: the first year in it.
- medium: the `dc:format` values that are neither URLs nor MIME types ("olieverf; doek"); MIME
  types go to extra `format`.
- classification: every `dc:type`, joined with "; ".
- subjects: every `dc:subject` (curators' tags), split on ";" when a value lists several.
- description: every `dc:description`, joined with a blank line.
- extra: `rights`, `publisher`, `language`, `coverage`, `source`; `permalink`: the first URL in
  `dc:identifier` or `dc:relation` that is not an image; `identifiers`: all the identifiers;
  `oai_identifier`: the record's OAI identifier; `image_source`: the image (below).
- image: the first URL among `dc:format`, `dc:identifier`, `dc:relation` that names an image
  (an image file, a IIIF image request or `.../info.json` service); a URL in `dc:format` is a
  representation of the object, so it counts as its image.

A record without an `oai_dc:dc` element, or with neither title nor description, is refused
(`RecordError`): nothing could describe the object.
"""

from __future__ import annotations

import re

from lxml import etree

from vitrine.search.formats.xmltext import clean, is_image_url, is_url, unique
from vitrine.search.records import EXTRA_IMAGE_SOURCE, RecordError, parse_year
from vitrine.v1 import common_pb2

NS_OAI_DC = "http://www.openarchives.org/OAI/2.0/oai_dc/"
NS_DC = "http://purl.org/dc/elements/1.1/"
_MIME = re.compile(r"^[a-z]+/[a-z0-9.+-]+$", re.IGNORECASE)
_SUBJECT_SPLIT = re.compile(r"\s*;\s*")
_EXTRA_ELEMENTS = {"rights": "rights", "publisher": "publisher", "language": "language", "coverage": "coverage"}


def _find_dc(metadata: etree._Element) -> etree._Element:
    if metadata.tag == f"{{{NS_OAI_DC}}}dc":
        return metadata
    found = metadata.find(f".//{{{NS_OAI_DC}}}dc")
    if found is None:
        raise RecordError("no oai_dc:dc element in the record's metadata")
    return found


def _values(dc: etree._Element, name: str) -> list[str]:
    return unique(clean("".join(e.itertext())) for e in dc.iter(f"{{{NS_DC}}}{name}"))


def dc_to_object(oai_identifier: str, metadata: etree._Element) -> common_pb2.CollectionObject:
    """The object of one oai_dc record (`metadata`: the record's `<metadata>` or its `oai_dc:dc`)."""
    dc = _find_dc(metadata)
    titles = _values(dc, "title")
    descriptions = _values(dc, "description")
    if not titles and not descriptions:
        raise RecordError("no dc:title or dc:description: nothing describes the object")
    identifiers = _values(dc, "identifier")
    formats = _values(dc, "format")
    relations = _values(dc, "relation")

    local = next((i for i in identifiers if not is_url(i)), "")
    obj = common_pb2.CollectionObject(id=local or oai_identifier)
    obj.title = titles[0] if titles else ""
    obj.artist = "; ".join(_values(dc, "creator"))
    obj.date = " / ".join(_values(dc, "date"))
    year = parse_year(None, obj.date)
    if year is not None:
        obj.year = year
    obj.medium = "; ".join(f for f in formats if not is_url(f) and not _MIME.match(f))
    obj.classification = "; ".join(_values(dc, "type"))
    obj.description = "\n\n".join(descriptions)
    obj.subjects.extend(unique(s for value in _values(dc, "subject") for s in _SUBJECT_SPLIT.split(value)))

    extra: dict[str, str] = {"oai_identifier": oai_identifier}
    if len(titles) > 1:
        extra["alternative_titles"] = "; ".join(titles[1:])
    contributors = _values(dc, "contributor")
    if contributors:
        extra["contributors"] = "; ".join(contributors)
    for element, key in _EXTRA_ELEMENTS.items():
        values = _values(dc, element)
        if values:
            extra[key] = "; ".join(values)
    sources = _values(dc, "source")
    if sources:
        extra["source"] = "; ".join(sources)
    mimes = [f for f in formats if _MIME.match(f)]
    if mimes:
        extra["format"] = "; ".join(mimes)
    if identifiers:
        extra["identifiers"] = "; ".join(identifiers)
    links = [v for v in identifiers + relations if is_url(v)]
    permalink = next((u for u in links if not is_image_url(u)), "")
    if permalink:
        extra["permalink"] = permalink
    image = next((u for u in formats if is_url(u)), "") or next((u for u in links if is_image_url(u)), "")
    if image:
        extra[EXTRA_IMAGE_SOURCE] = image
    obj.extra.update(extra)
    return obj
