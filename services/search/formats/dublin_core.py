"""Unqualified Dublin Core (`oai_dc`, as OAI-PMH serves it) -> `CollectionObject`.

Field by field (README, "Harvesting OAI-PMH", has the same table):

- id: the first `dc:identifier` that is not a URL (a museum's object number, "SK-C-5"), else the
  record's OAI identifier. Either is stable across harvests; the harvester remembers which id an
  OAI identifier gave, so a deletion (which carries only the OAI identifier) reaches the object.
- title: the first `dc:title`; further titles go to extra `alternative_titles`.
- artist: every `dc:creator`, joined with "; " (roles written into the value, as in
  "schilder: Rijn, Rembrandt van", are kept), except placeholders that name no one ("[Unknown]",
  "onbekend", "unbekannt"; 60 of the 128 Calisphere records the tests harvest say "[Unknown]").
  "Anonymous" stays: in a museum catalogue it is an attribution. `dc:contributor` goes to extra `contributors`.
- date: every `dc:date`, joined with " / " ("1896 / 1898"); year: the first year in it, none when
  the date names no year ("Late 19th century", "Mission period").
- medium: the `dc:format` values that are neither URLs, MIME types, file formats nor
  measurements ("olieverf; doek"). Museums put materials in `dc:format`, archives and library
  systems the extent and the scan's file type ("27 x 47 cm. (10.5 x 18.5 in.)", "jp2"): MIME
  types and file formats go to extra `format`, measurements to extra `measurements`.
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

from vitrine.common.records import EXTRA_IMAGE_SOURCE, RecordError, parse_year
from vitrine.search.formats.xmltext import clean, is_image_url, is_url, record_root, unique
from vitrine.v1 import common_pb2

NS_OAI_DC = "http://www.openarchives.org/OAI/2.0/oai_dc/"
NS_DC = "http://purl.org/dc/elements/1.1/"
_MIME = re.compile(r"^[a-z]+/[a-z0-9.+-]+$", re.IGNORECASE)
# A file type named without its MIME type, as CONTENTdm and Calisphere write it ("jp2").
_FILE_FORMAT = re.compile(r"^\.?(jp2|jpe?g|tiff?|png|gif|pdf|mp3|mp4|wav|xml|html?)$", re.IGNORECASE)
_NUMBER = r"\d+(?:[.,]\d+)?"
_UNIT = r"(?:mm|cm|m|in|inch|inches|ft)\b"
# Dimensions, not material: "27 x 47 cm. (10.5 x 18.5 in.)" (Calisphere), "hoogte: 220,5 cm" and
# a lone "cm" (the Rijksmuseum).
_MEASUREMENT = re.compile(
    rf"^(?:[^\W\d_]+(?:\s[^\W\d_]+)*\s*:\s*)?(?:ca\.?\s*)?{_NUMBER}\s*(?:(?:x|×|by)\s*{_NUMBER}\s*){{0,2}}{_UNIT}"
    rf"|^{_UNIT}\.?$",
    re.IGNORECASE,
)
# A creator field that names no one.
_NO_ONE = re.compile(
    r"^\[?\s*(unknown|unidentified|onbekend|unbekannt|inconnu|desconocido|sconosciuto)\s*\]?\.?$", re.IGNORECASE
)
_SUBJECT_SPLIT = re.compile(r"\s*;\s*")
_EXTRA_ELEMENTS = {"rights": "rights", "publisher": "publisher", "language": "language", "coverage": "coverage"}


def _values(dc: etree._Element, name: str) -> list[str]:
    return unique(clean("".join(e.itertext())) for e in dc.iter(f"{{{NS_DC}}}{name}"))


def dc_to_object(oai_identifier: str, metadata: etree._Element) -> common_pb2.CollectionObject:
    """The object of one oai_dc record (`metadata`: the record's `<metadata>` or its `oai_dc:dc`)."""
    dc = record_root(metadata, NS_OAI_DC, "dc", "oai_dc:dc")
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
    obj.artist = "; ".join(c for c in _values(dc, "creator") if not _NO_ONE.match(c))
    obj.date = " / ".join(_values(dc, "date"))
    year = parse_year(None, obj.date)
    if year is not None:
        obj.year = year
    file_formats = [f for f in formats if _MIME.match(f) or _FILE_FORMAT.match(f)]
    measurements = [f for f in formats if _MEASUREMENT.match(f)]
    obj.medium = "; ".join(f for f in formats if not is_url(f) and f not in file_formats and f not in measurements)
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
    if file_formats:
        extra["format"] = "; ".join(file_formats)
    if measurements:
        extra["measurements"] = "; ".join(measurements)
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
