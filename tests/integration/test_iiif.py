"""IIIF ingest end to end, and a CSV export through a column mapping: real published manifests
(tests/fixtures/iiif, Presentation 3 and 2.1) served by a real HTTP server on loopback with a IIIF
Image API server beside it, ingested through the CLI into a real search service (embedder with
MiniLM and EfficientNet-Lite0), the stored objects read back with GetObject."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from PIL import Image

from tests.servers import ROOT, ServiceProcess, minilm_search_env, running_service, search_cli
from vitrine.common.fetch import IIIF_SIZE
from vitrine.search.formats.iiif import IiifSettings, image_request, read_iiif, text_of
from vitrine.v1 import search_pb2, search_pb2_grpc

FIXTURES = ROOT / "tests" / "fixtures" / "iiif"
DATA = ROOT.parent / "shared" / "data"
AIC_IMAGES = sorted((DATA / "aic-fullsize" / "images").glob("*.jpg"))
PAINTINGS = DATA / "paintings"
# The image hosts the fixtures name, and where the loopback server stands in for them.
IMAGE_HOSTS = (
    "https://images.collections.yale.edu/iiif/2/",
    "https://iiif.io/api/image/3.0/example/reference/",
)
STATIC_HOST = "https://iiif.io/api/presentation/2.1/example/fixtures/resources/"
# Sickert's image service fails every scaled request: the reader falls back to the full image.
UNSCALABLE = "ycba:541343b0-dbc1-4c7e-9738-2d191a8c9007"
DORT_IMAGE = "ycba:4f227f08-7842-46cc-b05a-e3c6a4614cc1"
GULF_STREAM_IMAGE = "329817fc8a251a01c393f517d8a17d87-Winslow_Homer_-_The_Gulf_Stream_-_Metropolitan_Museum_of_Art"


class Museum(ThreadingHTTPServer):
    """Manifests under /iiif/, an Image API server under /image/, plain files under /static/."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server_address[1]}"
        self.requests: list[str] = []
        self.extra: dict[str, bytes] = {}

    def manifest(self, name: str) -> bytes:
        text = (FIXTURES / name).read_text(encoding="utf-8")
        # The cookbook's files are stored with a prefix: the collection names them without it.
        text = text.replace("{{ id.path }}/manifest-0", "{{ id.path }}/cookbook-0032-manifest-0")
        # What the cookbook's Jekyll site does with its placeholders, with loopback URLs.
        text = text.replace("{{ id.url }}", f"{self.base}/iiif/{name}").replace("{{ id.path }}", f"{self.base}/iiif")
        for host in IMAGE_HOSTS:
            text = text.replace(host, f"{self.base}/image/")
        return text.replace(STATIC_HOST, f"{self.base}/static/").encode()


class Handler(BaseHTTPRequestHandler):
    server: Museum

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        path = self.path.split("?")[0]
        if path.startswith("/iiif/"):
            name = path.removeprefix("/iiif/")
            if name in self.server.extra:
                return self.send(200, self.server.extra[name], "application/ld+json")
            if not (FIXTURES / name).is_file():
                return self.send(404, b"no such manifest", "text/plain")
            return self.send(200, self.server.manifest(name), "application/ld+json")
        if path.startswith("/static/"):
            return self.send(200, jpeg(path, None), "image/jpeg")
        found = re.fullmatch(r"/image/(?P<id>[^/]+)/(?P<region>[^/]+)/(?P<size>[^/]+)/0/default\.jpg", path)
        if not found:
            return self.send(404, b"not an image request", "text/plain")
        size = found["size"]
        if found["id"] == UNSCALABLE and size not in ("full", "max"):
            return self.send(500, b"this image service cannot scale", "text/plain")
        return self.send(200, jpeg(found["id"], size), "image/jpeg")


def jpeg(identifier: str, size: str | None) -> bytes:
    """An Art Institute of Chicago painting (CC0) for the identifier, scaled as the Image API
    size parameter says (`full`/`max`, `w,`, `!w,h`)."""
    source = AIC_IMAGES[int(hashlib.sha256(identifier.encode()).hexdigest(), 16) % len(AIC_IMAGES)]
    with Image.open(source) as image:
        image = image.convert("RGB")
        if size and size not in ("full", "max"):
            if size.startswith("!"):
                w, h = (int(v) for v in size[1:].split(","))
                image.thumbnail((w, h))
            else:
                w = int(size.rstrip(","))
                image = image.resize((w, max(1, round(image.height * w / image.width))))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
        return out.getvalue()


@pytest.fixture(scope="module")
def museum() -> Iterator[Museum]:
    server = Museum()
    base = server.base
    # The collection a museum would publish: its manifests, a nested collection, and two
    # members that fail (a manifest gone from the server, one that is not JSON).
    server.extra["collection.json"] = json.dumps(
        {
            "@context": "http://iiif.io/api/presentation/2/context.json",
            "@id": f"{base}/iiif/collection.json",
            "@type": "sc:Collection",
            "label": "Loopback museum",
            "collections": [{"@id": f"{base}/iiif/cookbook-0032-collection.json", "@type": "sc:Collection"}],
            "manifests": [
                {"@id": f"{base}/iiif/ycba-34-dort.json", "@type": "sc:Manifest"},
                {"@id": f"{base}/iiif/ycba-1050-sickert.json", "@type": "sc:Manifest"},
                {"@id": f"{base}/iiif/cookbook-0057-manifest-v2.json", "@type": "sc:Manifest"},
                {"@id": f"{base}/iiif/withdrawn.json", "@type": "sc:Manifest"},
                {"@id": f"{base}/iiif/broken.json", "@type": "sc:Manifest"},
            ],
        }
    ).encode()
    # A v2 paged collection (Presentation 2.1, section 5.6): a first page, and a next one.
    for name, body in {
        "paged.json": {"@type": "sc:Collection", "total": 2, "first": f"{base}/iiif/paged-1.json"},
        "paged-1.json": {
            "@type": "sc:Collection",
            "manifests": [{"@id": f"{base}/iiif/ycba-34-dort.json", "@type": "sc:Manifest"}],
            "next": f"{base}/iiif/paged-2.json",
        },
        "paged-2.json": {
            "@type": "sc:Collection",
            "manifests": [{"@id": f"{base}/iiif/ycba-1050-sickert.json", "@type": "sc:Manifest"}],
        },
    }.items():
        server.extra[name] = json.dumps({"@context": "http://iiif.io/api/presentation/2/context.json", **body}).encode()
    server.extra["broken.json"] = b'{"@context": "http://iiif.io/api/presentation/3/context.json", "type": "Manif'
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with (
        running_service("embedder", {"VITRINE_EMBEDDER_MODELS": "minilm,efficientnet-lite0"}) as embedder,
        running_service(
            "search",
            minilm_search_env(embedder, tmp_path_factory.mktemp("iiif-search")),
        ) as service,
    ):
        yield service


@pytest.fixture(scope="module")
def stub(search: ServiceProcess) -> Iterator[search_pb2_grpc.SearchServiceStub]:
    with grpc.insecure_channel(search.address) as channel:
        yield search_pb2_grpc.SearchServiceStub(channel)


def get(stub: search_pb2_grpc.SearchServiceStub, object_id: str) -> search_pb2.GetObjectResponse:
    return stub.GetObject(search_pb2.GetObjectRequest(id=object_id), timeout=10)


@pytest.fixture(scope="module")
def ingested(museum: Museum, search: ServiceProcess) -> str:
    return search_cli(search, "ingest", f"{museum.base}/iiif/collection.json", "--quiet")


def test_a_collection_is_ingested_and_its_failing_members_reported(ingested: str, museum: Museum) -> None:
    assert "7 records" in ingested and "5 upserted, 0 unchanged, 2 skipped" in ingested, ingested
    assert "skipped: 1 × HTTP 404" in ingested and f"e.g. {museum.base}/iiif/withdrawn.json: HTTP 404" in ingested
    assert f"e.g. {museum.base}/iiif/broken.json: not JSON (Unterminated string" in ingested
    assert "5 sent with an image" in ingested


def test_a_v3_museum_manifest_is_stored_field_by_field(
    ingested: str, museum: Museum, stub: search_pb2_grpc.SearchServiceStub
) -> None:
    answer = get(stub, "B1977.14.77")  # YCBA's "Call Number": the museum's own id, not the URI
    obj = answer.object
    assert obj.title == "Dort or Dordrecht: The Dort Packet-Boat from Rotterdam Becalmed"
    assert obj.artist == "Joseph Mallord William Turner, 1775–1851, British"
    assert obj.medium == "Oil on canvas"
    assert obj.extra["permalink"] == "https://collections.britishart.yale.edu/catalog/tms:34"
    assert obj.extra["rights"] == "https://creativecommons.org/publicdomain/zero/1.0/"
    assert obj.extra["required_statement"].startswith("Rights Description: Metadata describing Yale Center")
    assert obj.extra["Credit Line"] == "Yale Center for British Art, Paul Mellon Collection"
    assert obj.extra["iiif_manifest"] == "https://manifests.collections.yale.edu/ycba/obj/34"
    assert "Call Number" not in obj.extra and "Title" not in obj.extra
    # The first canvas's image, from its Image API 2 level-2 service, fitted in a box.
    assert obj.extra["image_source"] == f"{museum.base}/image/{DORT_IMAGE}/full/!{IIIF_SIZE},{IIIF_SIZE}/0/default.jpg"
    assert set(answer.vectors) == {"text", "image"}


def test_image_requests_follow_the_service_version_and_level(ingested: str, museum: Museum) -> None:
    # Image API 3 at level 1: `w,` no wider than the image (5886 px wide -> 1024), no `!w,h`.
    assert f"/image/{GULF_STREAM_IMAGE}/full/{IIIF_SIZE},/0/default.jpg" in museum.requests
    assert not any(r.startswith(f"/image/{GULF_STREAM_IMAGE}/full/!") for r in museum.requests)
    # A service that fails a scaled request: the painting annotation's own image is used.
    assert f"/image/{UNSCALABLE}/full/!{IIIF_SIZE},{IIIF_SIZE}/0/default.jpg" in museum.requests
    assert f"/image/{UNSCALABLE}/full/full/0/default.jpg" in museum.requests


def test_v2_and_collection_manifests_without_a_number_keep_their_uri(
    ingested: str, museum: Museum, stub: search_pb2_grpc.SearchServiceStub
) -> None:
    v2 = get(stub, "https://iiif.io/api/cookbook/recipe/0057-publishing-v2-and-v3/manifest.json")
    assert v2.object.title == "IIIF Presentation Version 3 Minimum Viable Manifest"
    assert v2.object.extra["image_source"] == f"{museum.base}/static/page1-full.png"  # a v2 resource, no service
    assert "image" in v2.vectors
    homer = get(stub, f"{museum.base}/iiif/cookbook-0032-manifest-01.json")
    assert (homer.object.title, homer.object.artist) == ("The Gulf Stream", "Winslow Homer (1836–1910)")
    assert (homer.object.date, homer.object.year) == ("1899", 1899)
    sickert = get(stub, "B1981.25.570")
    assert sickert.object.extra["image_source"].endswith(f"{UNSCALABLE}/full/full/0/default.jpg")
    assert "image" in sickert.vectors


def test_a_second_ingest_changes_nothing(ingested: str, museum: Museum, search: ServiceProcess) -> None:
    again = search_cli(search, "ingest", f"{museum.base}/iiif/collection.json", "--quiet")
    assert "0 upserted, 5 unchanged, 2 skipped" in again, again


def test_a_manifest_file_is_found_to_be_iiif_and_dry_run_stores_nothing(
    search: ServiceProcess, stub: search_pb2_grpc.SearchServiceStub
) -> None:
    out = search_cli(search, "ingest", str(FIXTURES / "ycba-1050-sickert.json"), "--dry-run", "5")
    (shown,) = [json.loads(line) for line in out.splitlines()]
    assert (shown["id"], shown["title"], shown["medium"]) == ("B1981.25.570", "Dieppe Races", "Oil on panel")
    assert "image" not in shown  # a dry run fetches no image
    info = stub.GetCollectionInfo(search_pb2.GetCollectionInfoRequest(), timeout=10)
    assert info.objects == 5


def test_language_maps_and_v2_values() -> None:
    label = {"fr": ["Le Gulf Stream"], "en": ["The Gulf Stream"]}
    assert text_of(label, "fr") == "Le Gulf Stream"
    assert text_of(label, "de") == "Le Gulf Stream"  # no German, no "none": the first language
    assert text_of({"none": ["B1977.14.77"], "en": ["x"]}, "de") == "B1977.14.77"
    v2 = [{"@value": "Rain", "@language": "en"}, {"@value": "Regen", "@language": "de"}]
    assert text_of(v2, "de") == "Regen"
    assert text_of(v2, "fr") == "Rain"
    assert text_of("<span><a href='x'>Glen Robson</a> &amp; co</span>") == "Glen Robson & co"
    assert text_of(["Artist: Marie De Hoa LeBlanc", "1874 - 1954"]) == "Artist: Marie De Hoa LeBlanc; 1874 - 1954"


def test_image_request_sizes() -> None:
    v2_level2 = {"@id": "https://x/iiif/2/a", "profile": "http://iiif.io/api/image/2/level2.json"}
    assert image_request(v2_level2, 4000, 3000) == f"https://x/iiif/2/a/full/!{IIIF_SIZE},{IIIF_SIZE}/0/default.jpg"
    v3_level1 = {"id": "https://x/iiif/3/b", "type": "ImageService3", "profile": "level1"}
    assert image_request(v3_level1, 600, 400) == "https://x/iiif/3/b/full/600,/0/default.jpg"  # no upscaling
    assert image_request(v3_level1, 2000, 4000) == "https://x/iiif/3/b/full/512,/0/default.jpg"  # tall: height fits
    assert image_request({"id": "https://x/c", "type": "ImageService3", "profile": "level0"}).endswith(
        "/full/max/0/default.jpg"
    )
    assert image_request({"@id": "https://x/d/info.json", "profile": "level0"}) == "https://x/d/full/full/0/default.jpg"


def test_collections_are_bounded(museum: Museum) -> None:
    settings = IiifSettings(max_depth=1, images=False)
    loaded = list(read_iiif(f"{museum.base}/iiif/collection.json", settings))
    nested = [item for item in loaded if item.where.endswith("cookbook-0032-collection.json")]
    assert nested and nested[0].skipped == "collection nested deeper than 1 levels"
    assert len(list(read_iiif(f"{museum.base}/iiif/collection.json", IiifSettings(max_manifests=2, images=False)))) == 2


def test_a_csv_export_with_a_column_mapping_is_ingested(
    search: ServiceProcess, stub: search_pb2_grpc.SearchServiceStub, tmp_path: Path
) -> None:
    records = [json.loads(line) for line in (PAINTINGS / "metadata.jsonl").open()][:3]
    export = tmp_path / "paintings-export.csv"
    with export.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Inventory No.", "Object Title", "Maker", "Date Made", "Material", "Holding", "Image"])
        for r in records:
            writer.writerow(
                [r["id"], r["title"], r["artist"], r["date"], r["medium"], r["museum"], Path(r["file"]).name]
            )
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "id: Inventory No.\ntitle: Object Title\nartist: Maker\ndate: Date Made\n"
        "year: {column: Date Made, year: true}\n"
        f"medium: Material\nextra.museum: Holding\nimage: {{column: Image, prefix: '{PAINTINGS / 'images'}/'}}\n"
    )
    out = search_cli(search, "ingest", str(export), "--columns", str(mapping), "--quiet")
    assert "3 upserted" in out and "3 sent with an image" in out, out
    stored = get(stub, records[0]["id"])
    assert (stored.object.title, stored.object.artist, stored.object.extra["museum"]) == (
        records[0]["title"],
        records[0]["artist"],
        records[0]["museum"],
    )
    assert stored.object.year == records[0]["year"]
    assert set(stored.vectors) == {"text", "image"}


def test_a_paged_v2_collection_is_followed_page_by_page(museum: Museum) -> None:
    loaded = list(read_iiif(f"{museum.base}/iiif/paged.json", IiifSettings(images=False)))
    assert [item.object.id for item in loaded if item.object is not None] == ["B1977.14.77", "B1981.25.570"]
