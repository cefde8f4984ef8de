"""The explorer's HTTP/JSON gateway on the running system: each route is one RPC answered as
protobuf JSON, images are served with caching headers, and every failure is a JSON error with
the service's own message and a fitting HTTP status."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import grpc
import httpx
import pytest

from tests.e2e.conftest import DEMO_OBJECT, SHARED_DATA, System
from tests.servers import ServiceProcess, free_port, start_service, wait_until_answering
from vitrine.v1 import common_pb2, search_pb2, search_pb2_grpc, tagger_pb2, tagger_pb2_grpc

PAINTING = "met-247009"  # the first painting of the demo file: the e2e system ingests it with its image


@pytest.fixture()
def http(explorer: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=explorer.url, timeout=90) as client:
        yield client


def error_of(response: httpx.Response) -> dict[str, str]:
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


def test_page_and_its_files_are_served(http: httpx.Client) -> None:
    page = http.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/app.js" in page.text and "/static/style.css" in page.text
    for name in ("app.js", "style.css"):
        assert http.get(f"/static/{name}").status_code == 200
    assert http.get("/static/../server.py").status_code == 404


def test_search_answers_protobuf_json_with_image_urls(http: httpx.Client) -> None:
    answer = http.get("/api/search", params={"q": "fresco wall painting", "has_image": "true", "page_size": 5})
    assert answer.status_code == 200, answer.text
    hits = answer.json()["hits"]
    assert hits and len(hits) <= 5
    for hit in hits:
        obj = hit["object"]
        assert obj["image_url"] == f"/images/{obj['id']}"
        assert "image" not in obj, "where the file lives on the server is not the page's business"
        assert {s["signal"] for s in hit["signals"]} <= {"SIGNAL_TEXT", "SIGNAL_KEYWORD", "SIGNAL_IMAGE", "SIGNAL_TAGS"}
    # Filters reach the search service: a year range no painting falls in.
    empty = http.get("/api/search", params={"q": "fresco", "year_from": 3000, "year_to": 3001})
    assert empty.status_code == 200 and empty.json().get("hits", []) == []


def test_images_are_served_with_caching_headers(http: httpx.Client) -> None:
    image = http.get(f"/images/{PAINTING}")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content == (SHARED_DATA / "paintings" / "images" / f"{PAINTING}.jpg").read_bytes()
    assert "max-age=86400" in image.headers["cache-control"]
    again = http.get(f"/images/{PAINTING}", headers={"If-None-Match": image.headers["etag"]})
    assert again.status_code == 304 and not again.content
    no_image = http.get(f"/images/{DEMO_OBJECT}")  # a Tate record: no image
    assert no_image.status_code == 404 and "has no image" in error_of(no_image)["message"]
    assert http.get("/images/no-such-object").status_code == 404


def test_object_similar_and_tag_suggestions_with_explanations(http: httpx.Client) -> None:
    obj = http.get(f"/api/objects/{DEMO_OBJECT}").json()
    assert obj["object"]["id"] == DEMO_OBJECT and obj["machine_tags"]
    similar = http.get(f"/api/objects/{DEMO_OBJECT}/similar", params={"k": 4}).json()
    assert 0 < len(similar["hits"]) <= 4 and DEMO_OBJECT not in {h["object"]["id"] for h in similar["hits"]}
    suggestions = http.get(f"/api/objects/{DEMO_OBJECT}/suggestions", params={"k": 5}).json()
    assert suggestions["model_version"] == "e2e-v1" and suggestions["object_id"] == DEMO_OBJECT
    first = suggestions["suggestions"][0]
    assert first["kind"] in ("SUGGESTION_KIND_MIMIC", "SUGGESTION_KIND_RECOMMEND")
    assert first["explanation"]["components"] and first["explanation"]["summary"]


def test_suggestions_for_a_painting_see_its_image(http: httpx.Client, system: System) -> None:
    """Search keeps only where the image came from; the gateway sends the file to the tagger, so
    the page gets exactly what the tagger answers for the object with its image."""
    search = search_pb2_grpc.SearchServiceStub(grpc.insecure_channel(system.search.address))
    stored = search.GetObject(search_pb2.GetObjectRequest(id=PAINTING), timeout=30).object
    assert stored.image.origin and not stored.image.HasField("data")
    with_image = common_pb2.CollectionObject()
    with_image.CopyFrom(stored)
    with_image.image.data = (SHARED_DATA / "paintings" / "images" / f"{PAINTING}.jpg").read_bytes()
    tagger = tagger_pb2_grpc.TaggerServiceStub(grpc.insecure_channel(system.tagger.address))
    direct = tagger.SuggestTags(tagger_pb2.SuggestTagsRequest(object=with_image, k=5), timeout=60)
    page = http.get(f"/api/objects/{PAINTING}/suggestions", params={"k": 5}).json()["suggestions"]
    assert [(s["tag"]["label"], round(s["score"], 5)) for s in page] == [
        (s.tag.label, round(s.score, 5)) for s in direct.suggestions
    ]
    evidence = {c["component"] for c in page[0]["explanation"]["components"]}
    assert {"image_knn", "semantic_image"} <= evidence


def test_recommend_never_returns_seen_ids(http: httpx.Client) -> None:
    shown = [
        h["object"]["id"] for h in http.get("/api/search", params={"q": "painting", "has_image": "true"}).json()["hits"]
    ]
    body = {"liked_ids": shown[:2], "disliked_ids": shown[2:3], "seen_ids": shown, "k": 6}
    answer = http.post("/api/recommend", json=body)
    assert answer.status_code == 200, answer.text
    ids = [h["object"]["id"] for h in answer.json()["hits"]]
    assert ids and not set(ids) & set(shown)


def test_feedback_is_recorded_once(http: httpx.Client) -> None:
    tag = http.get(f"/api/objects/{DEMO_OBJECT}/suggestions", params={"k": 1}).json()["suggestions"][0]["tag"]
    body = {
        "feedback_id": str(uuid.uuid4()),
        "object_id": DEMO_OBJECT,
        "tag": tag["id"],
        "action": "FEEDBACK_ACTION_ACCEPT",
    }
    first = http.post("/api/feedback", json=body)
    assert first.status_code == 200 and first.json()["created"] is True
    replay = http.post("/api/feedback", json=body)
    assert replay.status_code == 200 and replay.json().get("created", False) is False


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code", "words"),
    [
        ("GET", "/api/search", {}, 400, "INVALID_ARGUMENT", "query"),
        ("GET", "/api/search", {"params": {"q": "x", "year_from": "soon"}}, 400, "INVALID_ARGUMENT", "year_from"),
        ("GET", "/api/search", {"params": {"q": "x", "page_size": "many"}}, 400, "INVALID_ARGUMENT", "page_size"),
        ("GET", "/api/search", {"params": {"q": "x", "has_image": "maybe"}}, 400, "INVALID_ARGUMENT", "has_image"),
        ("GET", "/api/objects/no-such-object", {}, 404, "NOT_FOUND", "no-such-object"),
        ("POST", "/api/recommend", {"content": b"{not json"}, 400, "INVALID_ARGUMENT", "JSON"),
        ("POST", "/api/recommend", {"json": ["a"]}, 400, "INVALID_ARGUMENT", "JSON object"),
        ("POST", "/api/recommend", {"json": {"liked": ["a"]}}, 400, "INVALID_ARGUMENT", "liked"),
        ("POST", "/api/recommend", {"json": {"liked_ids": ["no-such-object"]}}, 404, "NOT_FOUND", "no-such-object"),
        ("POST", "/api/feedback", {"json": {"object_id": DEMO_OBJECT}}, 400, "INVALID_ARGUMENT", ""),
    ],
)
def test_bad_requests_get_json_errors_that_say_what_to_fix(
    http: httpx.Client, method: str, path: str, kwargs: dict, status: int, code: str, words: str
) -> None:
    answer = http.request(method, path, **kwargs)
    assert answer.status_code == status, answer.text
    error = error_of(answer)
    assert error["code"] == code and words in error["message"]


def test_metrics_and_info(explorer: ServiceProcess, http: httpx.Client) -> None:
    info = http.get("/api/info").json()
    assert info["backends"] == {"search": "SERVING", "tagger": "SERVING"}
    assert int(info["collection"]["objects"]) > 0 and info["tagger"]["model_version"] == "e2e-v1"
    metrics = httpx.get(explorer.metrics_url).text
    assert 'vitrine_http_requests_total{route="/api/search",status="200"}' in metrics
    assert 'vitrine_ready{service="explorer"} 1.0' in metrics


def test_backend_down_gives_503_with_the_reason() -> None:
    dead = f"127.0.0.1:{free_port()}"
    env = {"VITRINE_EXPLORER_SEARCH_ADDRESS": dead, "VITRINE_EXPLORER_TAGGER_ADDRESS": dead}
    service = start_service("explorer", env)  # never ready: no waiting for SERVING
    try:
        wait_until_answering(service)
        with httpx.Client(base_url=service.url, timeout=30) as client:
            assert client.get("/healthz").status_code == 200  # the process is alive...
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "search service" in error_of(ready)["message"]  # ...not ready
            answer = client.get("/api/search", params={"q": "ship"})
            assert answer.status_code == 503 and error_of(answer)["code"] == "UNAVAILABLE"
            assert "the search service is unavailable" in error_of(answer)["message"]
            info = client.get("/api/info").json()
            assert info["backends"] == {"search": "UNAVAILABLE", "tagger": "UNAVAILABLE"}
            assert client.get("/").status_code == 200, "the page itself is served, so it can say what is wrong"
    finally:
        service.stop()


def test_json_of_errors_is_json() -> None:
    # The error body is what the page shows: it must parse even for messages with quotes.
    from vitrine.explorer.server import bad_request

    raised = bad_request('year_from must be a whole year, not "soon"')
    assert json.loads(raised.text)["error"]["message"].endswith('"soon"')
