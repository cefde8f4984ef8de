"""LIDO (Lightweight Information Describing Objects, v1.0 and v1.1) -> `CollectionObject`.

Field by field (README, "Harvesting OAI-PMH", has the same table):

- id: `lido:lidoRecID` (the museum's own record id), else the record's OAI identifier.
- title: the preferred `titleSet/appellationValue` (`lido:pref="preferred"`), else the first;
  the others go to extra `alternative_titles`.
- artist: the actors of the production event (`eventType` "production" / "creation", or the
  only event) except commissioners, patrons and owners; every actor of every event goes to extra
  `actors` as "name (role, event)".
- date: the production event's `eventDate/displayDate`, else "earliestDate – latestDate"; year:
  the year of `earliestDate`, else the first year in the date.
- medium: every `eventMaterialsTech` (`displayMaterialsTech`, else the terms of
  `materialsTech/termMaterialsTech`), joined with "; ".
- classification: the first term of each `objectWorkType` ("Locomotivă; Locomotivă cu aburi");
  `classificationWrap/classification` terms (except Europeana's "IMAGE"/"TEXT" type) go to extra
  `classifications`.
- subjects: `subjectConcept` terms (the preferred term, else the first that is not the concept's
  own code, as Iconclass records give "92 H 39 1" first) and `displaySubject` values, as curators'
  tags; their concept ids go to extra `subject_concept_ids` as JSON (term -> ids).
- description: every `objectDescriptionSet/descriptiveNoteValue`, joined with a blank line.
- extra: `rights` (`rightsWorkSet`: rights type, holder, credit line), `record_rights`,
  `image_rights`, `permalink` (`recordInfoLink`), `inventory_number` (`repositorySet/workID`),
  `repository` (its legal body), `measurements`, `production_place`, `culture`, `lido_record_id`,
  `oai_identifier`, `image_source`.
- image: a `resourceRepresentation/linkResource`: the one typed as master / large / provided image
  first, a thumbnail only when nothing else is there.

A record without a `lido:lido` element, or with no title, description or object type, is refused
(`RecordError`).
"""

from __future__ import annotations

import json
import re

from lxml import etree

from vitrine.common.records import EXTRA_IMAGE_SOURCE, RecordError, parse_year
from vitrine.search.formats.xmltext import clean, record_root, text_of, unique
from vitrine.v1 import common_pb2

NS_LIDO = "http://www.lido-schema.org"
NS = {"lido": NS_LIDO}
_PRODUCTION = re.compile(r"production|creation|herstellung|fabrication|produzione|vervaardiging", re.IGNORECASE)
# Roles in a production event that did not make the object.
_NOT_MAKERS = re.compile(r"commission|patron|paymaster|client|owner|publisher|donor|comanditar", re.IGNORECASE)
_IMAGE_RANK = (
    re.compile(r"master|large|provided|full|original|image_overall", re.IGNORECASE),
    re.compile(r"image|preview|medium", re.IGNORECASE),
    re.compile(r"thumb", re.IGNORECASE),
)
_YEAR = re.compile(r"^-?\d{1,4}")


def _lido_attr(element: etree._Element, name: str) -> str:
    return element.get(f"{{{NS_LIDO}}}{name}") or element.get(name) or ""


def _all(element: etree._Element, path: str) -> list[etree._Element]:
    return element.xpath(path, namespaces=NS)


def _texts(element: etree._Element, path: str) -> list[str]:
    return unique(text_of(e) for e in _all(element, path))


def _first_term(element: etree._Element) -> str:
    """The preferred term of a concept-like element, else its first own term (not an added one)."""
    terms = _all(element, "lido:term")
    preferred = [t for t in terms if _lido_attr(t, "pref") == "preferred"]
    own = [t for t in terms if _lido_attr(t, "addedSearchTerm") != "yes"]
    chosen = preferred or own or terms
    return text_of(chosen[0]) if chosen else ""


def _title(lido: etree._Element) -> tuple[str, list[str]]:
    values = _all(lido, ".//lido:titleWrap/lido:titleSet/lido:appellationValue")
    preferred = [v for v in values if _lido_attr(v, "pref") == "preferred"]
    ordered = unique(text_of(v) for v in preferred + values)
    return (ordered[0], ordered[1:]) if ordered else ("", [])


def _event_type(event: etree._Element) -> str:
    terms = _texts(event, "lido:eventType/lido:term")
    return next((t for t in terms if _PRODUCTION.search(t)), terms[0] if terms else "")


def _production_event(events: list[etree._Element]) -> etree._Element | None:
    for event in events:
        kinds = _texts(event, "lido:eventType/lido:term | lido:eventType/lido:conceptID")
        if any(_PRODUCTION.search(t) for t in kinds):
            return event
    return events[0] if len(events) == 1 else None


def _actors(event: etree._Element) -> list[tuple[str, list[str]]]:
    """(name, roles) of each actor of the event."""
    found = []
    for in_role in _all(event, "lido:eventActor/lido:actorInRole"):
        names = _texts(in_role, "lido:actor/lido:nameActorSet/lido:appellationValue")
        if not names:
            names = _texts(in_role, "../lido:displayActorInRole")
        roles = _texts(in_role, "lido:roleActor/lido:term")
        if names:
            found.append((names[0], roles))
    if not found:
        found = [(name, []) for name in _texts(event, "lido:eventActor/lido:displayActorInRole")]
    return found


def _event_date(event: etree._Element) -> tuple[str, int | None]:
    display = _texts(event, "lido:eventDate/lido:displayDate")
    earliest = _texts(event, "lido:eventDate/lido:date/lido:earliestDate")
    latest = _texts(event, "lido:eventDate/lido:date/lido:latestDate")
    if display:
        date = display[0]
    elif earliest or latest:
        date = " – ".join(unique([*earliest[:1], *latest[:1]]))
    else:
        date = ""
    year = None
    if earliest and _YEAR.match(earliest[0]):
        year = int(_YEAR.match(earliest[0]).group(0))  # type: ignore[union-attr]
    elif date:
        year = parse_year(None, date)
    return date, year


def _materials(events: list[etree._Element]) -> list[str]:
    values: list[str] = []
    for event in events:
        for wrap in _all(event, "lido:eventMaterialsTech"):
            display = _texts(wrap, "lido:displayMaterialsTech")
            values.extend(display or _texts(wrap, "lido:materialsTech/lido:termMaterialsTech/lido:term"))
    return unique(values)


def _subjects(lido: etree._Element) -> tuple[list[str], dict[str, list[str]]]:
    subjects: list[str] = []
    ids: dict[str, list[str]] = {}
    for concept in _all(lido, ".//lido:subjectWrap//lido:subjectConcept"):
        codes = _texts(concept, "lido:conceptID")
        terms = [t for t in _all(concept, "lido:term") if text_of(t) not in codes]
        preferred = [t for t in terms if _lido_attr(t, "pref") == "preferred"]
        own = [t for t in terms if _lido_attr(t, "addedSearchTerm") != "yes"]
        chosen = preferred or own or terms
        term = text_of(chosen[0]) if chosen else (codes[0] if codes else "")
        if term:
            subjects.append(term)
            if codes:
                ids.setdefault(term, []).extend(c for c in codes if c not in ids.get(term, []))
    subjects.extend(_texts(lido, ".//lido:subjectWrap//lido:displaySubject"))
    return unique(subjects), ids


def _image(lido: etree._Element) -> tuple[str, str]:
    """The best image link and its rights."""
    candidates: list[tuple[int, str, str]] = []
    for n, resource_set in enumerate(_all(lido, ".//lido:resourceWrap/lido:resourceSet")):
        rights = "; ".join(_texts(resource_set, "lido:rightsResource/lido:rightsType/lido:term"))
        for representation in _all(resource_set, "lido:resourceRepresentation"):
            kind = _lido_attr(representation, "type")
            for link in _texts(representation, "lido:linkResource"):
                rank = next((r for r, pattern in enumerate(_IMAGE_RANK) if pattern.search(kind)), 1)
                candidates.append((rank * 1000 + n, link, rights))
    if not candidates:
        return "", ""
    _, link, rights = min(candidates)
    return link, rights


def lido_to_object(oai_identifier: str, metadata: etree._Element) -> common_pb2.CollectionObject:
    """The object of one LIDO record (`metadata`: the record's `<metadata>`, or `lido:lido`)."""
    lido = record_root(metadata, NS_LIDO, "lido", "lido:lido")
    title, other_titles = _title(lido)
    descriptions = _texts(lido, ".//lido:objectDescriptionWrap/lido:objectDescriptionSet/lido:descriptiveNoteValue")
    work_types = unique(_first_term(w) for w in _all(lido, ".//lido:objectWorkTypeWrap/lido:objectWorkType"))
    if not title and not descriptions and not work_types:
        raise RecordError("no titleSet, objectDescriptionSet or objectWorkType: nothing describes the object")

    record_ids = _texts(lido, "lido:lidoRecID")
    obj = common_pb2.CollectionObject(id=record_ids[0] if record_ids else oai_identifier)
    obj.title = title or (work_types[0] if work_types else "")
    obj.description = "\n\n".join(descriptions)
    obj.classification = "; ".join(work_types)

    events = _all(lido, ".//lido:eventWrap/lido:eventSet/lido:event")
    production = _production_event(events)
    actors_text: list[str] = []
    makers: list[str] = []
    for event in events:
        kind = _event_type(event)
        for name, roles in _actors(event):
            context = [*roles[:1], kind] if kind else roles[:1]
            actors_text.append(f"{name} ({', '.join(context)})" if context else name)
            if event is production and not any(_NOT_MAKERS.search(r) for r in roles):
                makers.append(name)
    obj.artist = "; ".join(unique(makers))
    if production is not None:
        obj.date, year = _event_date(production)
        if year is not None:
            obj.year = year
    obj.medium = "; ".join(_materials([production] if production is not None else events) or _materials(events))
    subjects, concept_ids = _subjects(lido)
    obj.subjects.extend(subjects)

    extra: dict[str, str] = {"oai_identifier": oai_identifier}
    if record_ids:
        extra["lido_record_id"] = record_ids[0]
    if other_titles:
        extra["alternative_titles"] = "; ".join(other_titles)
    if actors_text:
        extra["actors"] = "; ".join(unique(actors_text))
    if concept_ids:
        extra["subject_concept_ids"] = json.dumps(concept_ids, ensure_ascii=False, sort_keys=True)
    classifications = [
        _first_term(c)
        for c in _all(lido, ".//lido:classificationWrap/lido:classification")
        if not _lido_attr(c, "type").startswith("europeana:")
    ]
    if unique(classifications):
        extra["classifications"] = "; ".join(unique(classifications))
    rights = []
    for rights_set in _all(lido, ".//lido:rightsWorkWrap/lido:rightsWorkSet"):
        parts = [
            *_texts(rights_set, "lido:rightsType/lido:term"),
            *_texts(rights_set, "lido:rightsHolder/lido:legalBodyName/lido:appellationValue"),
            *_texts(rights_set, "lido:creditLine"),
        ]
        rights.append(", ".join(unique(parts)))
    if unique(rights):
        extra["rights"] = "; ".join(unique(rights))
    record_rights = _texts(lido, ".//lido:recordWrap/lido:recordRights/lido:rightsType/lido:term")
    if record_rights:
        extra["record_rights"] = "; ".join(record_rights)
    links = _texts(lido, ".//lido:recordWrap/lido:recordInfoSet/lido:recordInfoLink")
    if links:
        extra["permalink"] = links[0]
    inventory = _texts(lido, ".//lido:repositoryWrap/lido:repositorySet/lido:workID")
    if inventory:
        extra["inventory_number"] = "; ".join(inventory)
    repository = _texts(lido, ".//lido:repositorySet/lido:repositoryName/lido:legalBodyName/lido:appellationValue")
    if repository:
        extra["repository"] = "; ".join(repository)
    measurements = _texts(
        lido, ".//lido:objectMeasurementsWrap/lido:objectMeasurementsSet/lido:displayObjectMeasurements"
    )
    if measurements:
        extra["measurements"] = "; ".join(measurements)
    if production is not None:
        place = _texts(production, "lido:eventPlace/lido:displayPlace") or [
            ", ".join(_texts(p, "descendant-or-self::lido:namePlaceSet/lido:appellationValue"))
            for p in _all(production, "lido:eventPlace/lido:place")
        ]
        if unique(place):
            extra["production_place"] = "; ".join(unique(place))
        culture = [_first_term(c) for c in _all(production, "lido:culture")]
        if unique(culture):
            extra["culture"] = "; ".join(unique(culture))
    image, image_rights = _image(lido)
    if image:
        extra[EXTRA_IMAGE_SOURCE] = clean(image)
    if image_rights:
        extra["image_rights"] = image_rights
    obj.extra.update(extra)
    return obj
