"""OAI-PMH harvesting end to end: a real OAI-PMH server on loopback (the server side of `oaipmh`,
the maintained fork of pyoai, behind http.server) serving real museum records from
tests/fixtures/oai (README there: sources and licences), harvested by `vitrine-search harvest`
into a real search service (minilm text model, embedded store in tmp_path).

The tests share one repository and one collection and run in file order: the first LIDO harvest,
a second one that finds nothing new, changes and deletions at the source, a Dublin Core harvest
that waits out a 503, then 128 real Dublin Core records of a university museum and archive
harvested, harvested again (nothing written) and three of them deleted at the source."""

from __future__ import annotations

import copy
import gzip
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from lxml import etree
from oaipmh import common, error, metadata, server

from tests.servers import ServiceProcess, minilm_search_env, running_service
from vitrine.common.records import RecordError
from vitrine.search.formats.dublin_core import dc_to_object
from vitrine.search.formats.lido import lido_to_object
from vitrine.search.harvest import _BoundedScythe
from vitrine.v1 import search_pb2, search_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "oai"
NS_LIDO = "http://www.lido-schema.org"
OAI = "{http://www.openarchives.org/OAI/2.0/}"
# The test repository's own identifier scheme (a repository names its records as it likes).
LIDO_ID = "oai:vitrine.test:lido/"
LIDO_STAMP = datetime(2014, 2, 2)
# One record whose descriptive metadata is lost at the source (as in a truncated export).
BROKEN = "00F9478BE8AC401DBB7092A46ECE160F"
PAGE = 40
# Calisphere's ListRecords of the set scu:objects (Santa Clara University Archives and its de Saisset
# Museum), as published; its headers carry no setSpec, so the test repository files them in the set
# they were harvested from.
DC_SET = "scu:objects"
DC_RECORDS = 128


@dataclass
class Entry:
    datestamp: datetime
    sets: list[str]
    element: etree._Element | None
    deleted: bool = False


@dataclass
class FixtureRepository:
    """pyoai's IOAI interface over in-memory records: `oaipmh.server.Server` does the protocol
    (verbs, arguments, errors, resumption tokens); this answers its queries."""

    base_url: str = ""
    lido: dict[str, Entry] = field(default_factory=dict)
    dc: dict[str, Entry] = field(default_factory=dict)

    def _records(self, prefix: str) -> dict[str, Entry]:
        if prefix == "lido":
            return self.lido
        if prefix == "oai_dc":
            return self.dc
        raise error.CannotDisseminateFormatError(f"unknown metadata prefix {prefix!r}")

    def identify(self) -> common.Identify:
        return common.Identify(
            repositoryName="Vitrine test repository",
            baseURL=self.base_url,
            protocolVersion="2.0",
            adminEmails=["nobody@vitrine.test"],
            earliestDatestamp=datetime(2000, 1, 1),
            deletedRecord="persistent",
            granularity="YYYY-MM-DDThh:mm:ssZ",
            compression=["identity"],
            toolkit_description=False,
        )

    def listMetadataFormats(self, identifier: str | None = None) -> list[tuple[str, str, str]]:
        return [
            ("oai_dc", "http://www.openarchives.org/OAI/2.0/oai_dc.xsd", "http://www.openarchives.org/OAI/2.0/oai_dc/"),
            ("lido", "http://www.lido-schema.org/schema/v1.0/lido-v1.0.xsd", NS_LIDO),
        ]

    def listSets(self) -> list[tuple[str, str, None]]:
        return [
            ("inp", "Institutul Național al Patrimoniului", None),
            ("examples", "LIDO examples", None),
            ("rijksmuseum", "Rijksmuseum", None),
            (DC_SET, "Santa Clara University: objects", None),
        ]

    def _select(self, metadataPrefix: str, set: str | None, from_: datetime | None, until: datetime | None):
        for identifier, entry in sorted(self._records(metadataPrefix).items()):
            if set and set not in entry.sets:
                continue
            if (from_ and entry.datestamp < from_) or (until and entry.datestamp > until):
                continue
            header = common.Header(None, identifier, entry.datestamp, entry.sets, entry.deleted)
            yield header, (None if entry.deleted else common.Metadata(entry.element, {})), None

    def listRecords(self, metadataPrefix: str, set: str | None = None, from_=None, until=None):
        return list(self._select(metadataPrefix, set, from_, until))

    def listIdentifiers(self, metadataPrefix: str, set: str | None = None, from_=None, until=None):
        return [header for header, _, _ in self._select(metadataPrefix, set, from_, until)]

    def getRecord(self, metadataPrefix: str, identifier: str):
        entry = self._records(metadataPrefix).get(identifier)
        if entry is None:
            raise error.IdDoesNotExistError(identifier)
        header = common.Header(None, identifier, entry.datestamp, entry.sets, entry.deleted)
        return header, (None if entry.deleted else common.Metadata(entry.element, {})), None


def _write_as_stored(element: etree._Element, meta: common.Metadata) -> None:
    """The metadata writer of both prefixes: the record's own XML, as the museum exported it."""
    element.append(copy.deepcopy(meta.element()))


def _stamp(text: str) -> datetime:
    """A header datestamp in either granularity (Calisphere's are days, the Rijksmuseum's seconds)."""
    text = text.strip()
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ" if "T" in text else "%Y-%m-%d")


def _dc_records(root: etree._Element) -> Iterator[tuple[str, datetime, etree._Element]]:
    for record in root.iterfind(f".//{OAI}record"):
        identifier = record.findtext(f"{OAI}header/{OAI}identifier").strip()
        stamp = _stamp(record.findtext(f"{OAI}header/{OAI}datestamp"))
        yield identifier, stamp, record.find(f"{OAI}metadata/{{http://www.openarchives.org/OAI/2.0/oai_dc/}}dc")


def _calisphere() -> etree._Element:
    return etree.fromstring(gzip.decompress((FIXTURES / "dc-calisphere-scu-objects.xml.gz").read_bytes()))


def _load_fixtures(repository: FixtureRepository) -> None:
    for name, set_spec in (
        ("lido-inp-clasate-istoria-stiintei-si-tehnicii.xml.gz", "inp"),
        ("lido-schema-extended-example.xml.gz", "examples"),
    ):
        root = etree.fromstring(gzip.decompress((FIXTURES / name).read_bytes()))
        for lido in root.iterfind(f"{{{NS_LIDO}}}lido"):
            rec_id = lido.findtext(f"{{{NS_LIDO}}}lidoRecID").strip()
            if rec_id == BROKEN:
                lido.remove(lido.find(f"{{{NS_LIDO}}}descriptiveMetadata"))
            repository.lido[LIDO_ID + rec_id] = Entry(LIDO_STAMP, [set_spec], lido)
    for identifier, stamp, dc in _dc_records(etree.parse(str(FIXTURES / "dc-rijksmuseum.xml")).getroot()):
        repository.dc[identifier] = Entry(stamp, ["rijksmuseum"], dc)
    for identifier, stamp, dc in _dc_records(_calisphere()):
        repository.dc[identifier] = Entry(stamp, [DC_SET], dc)


@dataclass
class OaiEndpoint:
    url: str
    repository: FixtureRepository
    requests: list[dict[str, str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    # verb -> how many of its next requests get 503 with Retry-After: 1.
    unavailable: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[OaiEndpoint]:
    repository = FixtureRepository()
    _load_fixtures(repository)
    registry = metadata.MetadataRegistry()
    registry.registerWriter("lido", _write_as_stored)
    registry.registerWriter("oai_dc", _write_as_stored)
    oai = server.Server(repository, registry, nsmap={"lido": NS_LIDO}, resumption_batch_size=PAGE)
    state: dict[str, OaiEndpoint] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            point = state["endpoint"]
            point.requests.append(params)
            verb = params.get("verb", "")
            if point.unavailable.get(verb):
                point.unavailable[verb] -= 1
                point.statuses.append(503)
                self.send_response(503)
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = oai.handleRequest(params)
            point.statuses.append(200)
            self.send_response(200)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{http.server_address[1]}/oai"
    repository.base_url = url
    state["endpoint"] = OaiEndpoint(url, repository)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["endpoint"]
    finally:
        http.shutdown()
        http.server_close()


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    data_dir = tmp_path_factory.mktemp("harvest-search")
    with (
        running_service("embedder", {"VITRINE_EMBEDDER_MODELS": "minilm,efficientnet-lite0"}) as embedder,
        running_service("search", minilm_search_env(embedder, data_dir)) as service,
    ):
        yield service


@pytest.fixture(scope="module")
def stub(search: ServiceProcess) -> Iterator[search_pb2_grpc.SearchServiceStub]:
    with grpc.insecure_channel(search.address) as channel:
        yield search_pb2_grpc.SearchServiceStub(channel)


@pytest.fixture(scope="module")
def state_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("harvest-state") / "state.json"


def harvest(search: ServiceProcess, endpoint: OaiEndpoint, state: Path, prefix: str, *args: str) -> str:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "vitrine.search.cli", "--address", search.address, "harvest", endpoint.url),
            *("--metadata-prefix", prefix, "--state", str(state), "--no-images", "--quiet", *args),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _objects(stub: search_pb2_grpc.SearchServiceStub) -> int:
    return stub.GetCollectionInfo(search_pb2.GetCollectionInfoRequest(), timeout=10).objects


def _get(stub: search_pb2_grpc.SearchServiceStub, museum_id: str) -> search_pb2.GetObjectResponse:
    return stub.GetObject(search_pb2.GetObjectRequest(id=museum_id), timeout=10)


def test_first_harvest_stores_every_record_once_and_skips_the_broken_one(
    search: ServiceProcess, endpoint: OaiEndpoint, state_file: Path, stub: search_pb2_grpc.SearchServiceStub
) -> None:
    total = len(endpoint.repository.lido)
    out = harvest(search, endpoint, state_file, "lido")
    assert f"{total} records" in out
    assert f"{total - 1} upserted, 0 unchanged, 1 skipped" in out
    assert f"{LIDO_ID}{BROKEN}: no titleSet, objectDescriptionSet or objectWorkType" in out
    assert _objects(stub) == total - 1
    # Paged by resumption tokens: one ListRecords without a token, then one per further page.
    pages = [r for r in endpoint.requests if r.get("verb") == "ListRecords"]
    assert len(pages) == -(-total // PAGE) and all("resumptionToken" in r for r in pages[1:])

    locomotive = _get(stub, "01DBF5D3E2B7437D9132694AD279988C").object
    assert locomotive.title == "Locomotivă cu aburi tip 94649"
    assert locomotive.classification == "Locomotivă; Locomotivă cu aburi tip 94649"
    assert locomotive.year == 1914
    assert locomotive.extra["permalink"] == "http://clasate.cimec.ro/detaliu.asp?k=01DBF5D3E2B7437D9132694AD279988C"
    assert locomotive.extra["image_source"] == "http://clasate.cimec.ro/medium/STT_12_2ante2000-7.jpg"
    assert locomotive.extra["record_rights"] == "CC0"
    assert locomotive.extra["actors"] == "C.F.R. (paymaster, Production)"
    assert locomotive.artist == ""  # a paymaster did not make it
    tritons = _get(stub, "DE-Mb112/lido-obj20344012,T,001").object
    assert tritons.artist == "Porta, Giacomo della" and tritons.year == 1575
    assert "triton(s)" in tritons.subjects
    assert '"triton(s)": ["92 H 39 1"]' in tritons.extra["subject_concept_ids"]


def test_second_harvest_asks_from_the_last_one_and_writes_nothing(
    search: ServiceProcess, endpoint: OaiEndpoint, state_file: Path, stub: search_pb2_grpc.SearchServiceStub
) -> None:
    before = _objects(stub)
    endpoint.requests.clear()
    out = harvest(search, endpoint, state_file, "lido")
    asked = [r for r in endpoint.requests if r.get("verb") == "ListRecords"]
    assert asked and asked[0].get("from"), asked
    assert "0 upserted" in out and "0 deleted here" in out
    assert _objects(stub) == before


def test_changes_and_three_deletions_at_the_source(
    search: ServiceProcess, endpoint: OaiEndpoint, state_file: Path, stub: search_pb2_grpc.SearchServiceStub
) -> None:
    before = _objects(stub)
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    lido = endpoint.repository.lido
    gone = [LIDO_ID + "01DBF5D3E2B7437D9132694AD279988C", *sorted(lido)[10:12]]
    for identifier in gone:
        lido[identifier] = Entry(now, lido[identifier].sets, None, deleted=True)
    changed = sorted(lido)[20]
    element = copy.deepcopy(lido[changed].element)
    value = element.find(f".//{{{NS_LIDO}}}titleSet/{{{NS_LIDO}}}appellationValue")
    value.text = value.text + " (restaurat)"
    lido[changed] = Entry(now, lido[changed].sets, element)

    out = harvest(search, endpoint, state_file, "lido")
    # Only what changed comes: the edited record and three deleted headers (not records to store).
    assert "1 records" in out and "1 upserted" in out, out
    assert "3 deleted at the source: 3 deleted here" in out
    assert _objects(stub) == before - 3
    for identifier in gone:
        with pytest.raises(grpc.RpcError) as info:
            _get(stub, identifier.removeprefix(LIDO_ID))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert _get(stub, changed.removeprefix(LIDO_ID)).object.title.endswith("(restaurat)")


def test_dublin_core_harvest_waits_out_a_503(
    search: ServiceProcess, endpoint: OaiEndpoint, state_file: Path, stub: search_pb2_grpc.SearchServiceStub
) -> None:
    before = _objects(stub)
    endpoint.statuses.clear()
    endpoint.requests.clear()
    endpoint.unavailable["ListRecords"] = 1
    started = time.monotonic()
    out = harvest(search, endpoint, state_file, "oai_dc", "--set", "rijksmuseum")
    assert time.monotonic() - started >= 1.0
    assert all(r.get("set") == "rijksmuseum" for r in endpoint.requests if r.get("verb") == "ListRecords")
    assert endpoint.statuses.count(503) == 1
    assert "4 records" in out and "4 upserted, 0 unchanged, 0 skipped" in out, out
    assert _objects(stub) == before + 4
    night_watch = _get(stub, "SK-C-5").object
    assert night_watch.title == "De Nachtwacht" and night_watch.artist == "Rijn, Rembrandt van"
    assert night_watch.year == 1642 and night_watch.medium == "doek; olieverf"
    assert night_watch.classification == "schilderij" and "Banninck Cocq, Frans" in night_watch.subjects
    assert night_watch.extra["permalink"] == "http://hdl.handle.net/10934/RM0001.COLLECT.5216"
    assert night_watch.extra["rights"] == "http://creativecommons.org/publicdomain/mark/1.0/"
    # No local number among its identifiers: the OAI identifier is its id.
    assert _get(stub, "oai:rijksmuseum.nl:SK-A-4881").object.artist == "Maes, Nicolaes"
    cabinet = _get(stub, "BK-1975-81").object
    assert cabinet.extra["image_source"].startswith("https://lh3.googleusercontent.com/")
    # Its dc:format holds the material and, separately, the dimensions.
    assert cabinet.medium == "eikenhout, belijmd met ebbenhout en parelmoer"
    assert cabinet.extra["measurements"] == "hoogte: 220,5 cm; breedte: 206,0 cm; diepte: 83,5 cm"
    assert cabinet.year == 1635


def test_dublin_core_harvest_of_a_museum_set_stores_every_record_and_maps_them(
    search: ServiceProcess, endpoint: OaiEndpoint, state_file: Path, stub: search_pb2_grpc.SearchServiceStub
) -> None:
    before = _objects(stub)
    endpoint.requests.clear()
    out = harvest(search, endpoint, state_file, "oai_dc", "--set", DC_SET)
    assert f"{DC_RECORDS} records" in out and f"{DC_RECORDS} upserted, 0 unchanged, 0 skipped" in out, out
    assert _objects(stub) == before + DC_RECORDS
    pages = [r for r in endpoint.requests if r.get("verb") == "ListRecords"]
    assert len(pages) == -(-DC_RECORDS // PAGE) and pages[0].get("set") == DC_SET
    assert all("resumptionToken" in r for r in pages[1:])

    basket = _get(stub, "cstclu I.55").object  # the museum's number, not the ARK
    assert basket.title == "Cooking Basket, 1750-1850"
    assert basket.artist == ""  # dc:creator "[Unknown]" names no one
    assert basket.date == "ca. 1750-1850" and basket.year == 1750
    assert basket.description.startswith("Natural fiber, grass, willow, and devil's claw weed.")
    # dc:format "27 x 47 cm. (10.5 x 18.5 in.)" and "jp2": the extent and the scan, not a material.
    assert basket.medium == ""
    assert basket.extra["measurements"] == "27 x 47 cm. (10.5 x 18.5 in.)" and basket.extra["format"] == "jp2"
    # "Cooking baskets; Mission Santa Clara; ...; Technology;" split, the trailing ";" leaves nothing.
    assert {"Cooking baskets", "Mission Santa Clara", "Santa Clara County (Calif.)--History", "Technology"} <= set(
        basket.subjects
    )
    assert "" not in basket.subjects
    assert basket.extra["publisher"] == "de Saisset Museum, Santa Clara University"
    assert basket.extra["permalink"] == "http://ark.cdlib.org/ark:/13030/kt7v19q4t1"
    assert basket.extra["oai_identifier"] == "13030/kt7v19q4t1"
    daguerreotype = _get(stub, "cstclu bld.msc.2.1").object
    assert daguerreotype.title == "Mission Santa Clara and Santa Clara College, ca. 1856"
    assert daguerreotype.artist == "Watkins, Carleton E." and daguerreotype.year == 1856
    assert "Daguerreotypes" in daguerreotype.subjects and daguerreotype.classification == "image; Photograph"
    medal = _get(stub, "ID No:ARTI-2.31").object
    assert medal.title == "Nobili Medal" and medal.medium == "Gold Medal" and medal.year == 1896


def test_dublin_core_reharvest_writes_nothing_and_three_deletions_remove_exactly_those(
    search: ServiceProcess, endpoint: OaiEndpoint, state_file: Path, stub: search_pb2_grpc.SearchServiceStub
) -> None:
    before = _objects(stub)
    endpoint.requests.clear()
    out = harvest(search, endpoint, state_file, "oai_dc", "--set", DC_SET)
    asked = [r for r in endpoint.requests if r.get("verb") == "ListRecords"]
    assert asked and asked[0].get("from") and asked[0].get("set") == DC_SET, asked
    assert "0 upserted" in out and "0 deleted at the source" in out, out
    assert _objects(stub) == before

    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    dc = endpoint.repository.dc
    gone = {
        "13030/kt7v19q4t1": "cstclu I.55",
        "13030/kt6x0nc7qk": "cstclu bld.msc.2.1",
        "13030/tf238n98sc": "ID No:ARTI-2.31",
    }
    for identifier in gone:
        dc[identifier] = Entry(now, dc[identifier].sets, None, deleted=True)
    out = harvest(search, endpoint, state_file, "oai_dc", "--set", DC_SET)
    # Deleted headers carry only the OAI identifier: the state leads from it to the museum's number.
    assert "0 upserted" in out and "3 deleted at the source: 3 deleted here" in out, out
    assert _objects(stub) == before - 3
    for museum_id in gone.values():
        with pytest.raises(grpc.RpcError) as info:
            _get(stub, museum_id)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert _get(stub, "cstclu A.7.3").object.title == "Cristo, ca. 1800"
    assert _get(stub, "SK-C-5").object.title == "De Nachtwacht"  # another set of the same endpoint


def test_what_is_not_an_oai_endpoint_or_a_date_is_refused_with_the_reason(
    search: ServiceProcess, state_file: Path
) -> None:
    base = [sys.executable, "-m", "vitrine.search.cli", "--address", search.address, "harvest"]
    closed = subprocess.run(
        [*base, "http://127.0.0.1:9/oai", "--metadata-prefix", "lido", "--state", str(state_file), "--retries", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert closed.returncode == 1 and "does not answer Identify" in closed.stderr, closed.stderr
    bad_date = subprocess.run(
        [*base, "http://127.0.0.1:9/oai", "--metadata-prefix", "lido", "--from", "last week"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert bad_date.returncode == 1 and "use YYYY-MM-DD" in bad_date.stderr, bad_date.stderr


def test_dublin_core_mapping_of_every_real_record() -> None:
    """Every fixture record maps; what no real record should get: an empty subject, a placeholder
    artist, a scan's file type or its size as the medium."""
    objects = [dc_to_object(identifier, dc) for identifier, _, dc in _dc_records(_calisphere())]
    assert len(objects) == DC_RECORDS and len({o.id for o in objects}) == DC_RECORDS
    assert all(o.title and o.extra["permalink"].startswith("http://ark.cdlib.org/") for o in objects)
    # "Late 19th century", "Mission period": no year to take, so none is made up.
    assert sorted(o.date for o in objects if not o.year) == ["Late 19th century"] * 2 + ["Mission period"] * 3
    assert not [o.id for o in objects if "" in o.subjects or "[Unknown]" in o.artist]
    assert {o.medium for o in objects} == {"", "Gold Medal"}
    assert sum(o.artist == "" for o in objects) == 61 and sum(bool(o.extra.get("measurements")) for o in objects) == 127
    rijks = {
        o.id: o
        for o in (
            dc_to_object(i, dc) for i, _, dc in _dc_records(etree.parse(str(FIXTURES / "dc-rijksmuseum.xml")).getroot())
        )
    }
    assert rijks["SK-A-3580"].medium == "olieverf; doek" and "measurements" not in rijks["SK-A-3580"].extra
    assert rijks["oai:rijksmuseum.nl:SK-A-4881"].medium == ""  # its only dc:format is "cm"
    assert rijks["BK-1975-81"].artist == "meubelmaker: Doomer, Herman"


def test_placeholder_creators_and_measurements_in_dc_format() -> None:
    dc = etree.fromstring(
        '<oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<dc:title>T</dc:title><dc:creator>[Unknown]</dc:creator><dc:creator>onbekend</dc:creator>"
        "<dc:creator>Anonymous</dc:creator><dc:format>oil on canvas</dc:format><dc:format>hoogte: 23 cm</dc:format>"
        "<dc:format>23 x 31 x 4.5 cm</dc:format><dc:format>image/jpeg</dc:format><dc:format>TIFF</dc:format>"
        "</oai_dc:dc>"
    )
    obj = dc_to_object("oai:x:1", dc)
    assert obj.artist == "Anonymous"  # an attribution in a catalogue, not a placeholder
    assert obj.medium == "oil on canvas"
    assert obj.extra["measurements"] == "hoogte: 23 cm; 23 x 31 x 4.5 cm" and obj.extra["format"] == "image/jpeg; TIFF"


def test_records_that_describe_nothing_are_refused() -> None:
    empty_dc = etree.fromstring(
        '<metadata xmlns="http://www.openarchives.org/OAI/2.0/"><oai_dc:dc xmlns:oai_dc='
        '"http://www.openarchives.org/OAI/2.0/oai_dc/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<dc:identifier>X-1</dc:identifier></oai_dc:dc></metadata>"
    )
    with pytest.raises(RecordError, match="no dc:title or dc:description"):
        dc_to_object("oai:x:1", empty_dc)
    with pytest.raises(RecordError, match="no lido:lido element"):
        lido_to_object("oai:x:1", empty_dc)


class _Response:
    def __init__(self, retry_after: str) -> None:
        self.headers = {"retry-after": retry_after}


def test_retry_after_is_bounded_and_read_in_both_forms() -> None:
    scythe = _BoundedScythe("http://127.0.0.1:9/oai", max_wait_s=30.0)
    assert scythe._get_retry_after(_Response("2")) == 2.0  # type: ignore[arg-type]
    assert scythe._get_retry_after(_Response("86400")) == 30.0  # type: ignore[arg-type]
    soon = datetime.now(UTC).timestamp() + 10
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(soon))
    assert 5.0 <= scythe._get_retry_after(_Response(http_date)) <= 10.0  # type: ignore[arg-type]
