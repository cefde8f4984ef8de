"""The explorer's web server: the page (static files) and a thin HTTP/JSON gateway to the search
and tagger services.

Each `/api/...` route is one gRPC call, and its answer is the RPC's response as protobuf JSON
(`MessageToDict`, snake_case names), so the page reads the same messages as every other client and
the gateway holds no search or tagging logic. What it adds: each object gets an `image_url`, and
`/images/{id}` serves the object's image (its file under `image_roots`, or a redirect to its URL)
with caching headers. gRPC errors become HTTP errors with the service's own message:
INVALID_ARGUMENT 400, NOT_FOUND 404, UNAVAILABLE 503, DEADLINE_EXCEEDED 504.

Health: `/healthz` (the process answers) and `/readyz` (the search service answers its health
check). Metrics: `vitrine_http_requests_total{route,status}` and a latency histogram on
`metrics_port`. With `access_log`, one vitrine.access line per request; with tracing on (an OTLP
endpoint), a server span per request whose trace continues into search, tagger and embedder.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import mimetypes
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import Counter, Histogram

from vitrine.common import tracing
from vitrine.common.channels import open_channel
from vitrine.common.metrics import READY
from vitrine.common.process import start_process, stop_on_signals, stop_process
from vitrine.common.security import bearer
from vitrine.common.settings import load_settings
from vitrine.explorer.settings import ENV_PREFIX, ExplorerSettings
from vitrine.v1 import common_pb2, search_pb2, search_pb2_grpc, tagger_pb2, tagger_pb2_grpc

log = logging.getLogger("vitrine.explorer")
access_log = logging.getLogger("vitrine.access")
STATIC = Path(__file__).resolve().parent / "static"
SERVICE = "explorer"

HTTP_REQUESTS = Counter("vitrine_http_requests", "HTTP requests answered by the explorer.", ["route", "status"])
HTTP_LATENCY = Histogram(
    "vitrine_http_request_duration_seconds",
    "Time to answer an explorer HTTP request.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# Query parameters of /api/search that become the request's Filter.
_LIST_FILTERS = {"artist": "artists", "classification": "classifications", "medium": "mediums", "tag": "tags"}
_INT_FILTERS = ("year_from", "year_to")
MAX_JSON_BYTES = 1 << 20


class BackendDown(Exception):
    """A search or tagger call that got no answer (UNAVAILABLE, DEADLINE_EXCEEDED): the page says
    which service and that a retry may help, not only gRPC's connection details."""

    def __init__(self, backend: str, error: grpc.aio.AioRpcError) -> None:
        self.backend = backend
        self.code = error.code()
        what = "is unavailable" if self.code == grpc.StatusCode.UNAVAILABLE else "did not answer in time"
        super().__init__(f"the {backend} service {what} ({error.details() or self.code.name}); retry shortly")


def error_body(code: str, message: str) -> dict[str, Any]:
    """The JSON body of every error the explorer answers (the page shows `message`)."""
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response(error_body(code, message), status=status)


def http_error(kind: type[web.HTTPException], code: str, message: str) -> web.HTTPException:
    """An HTTP error to raise, with the same JSON body as every other error."""
    return kind(text=json.dumps(error_body(code, message)), content_type="application/json")


def bad_request(message: str) -> web.HTTPException:
    return http_error(web.HTTPBadRequest, "INVALID_ARGUMENT", message)


def to_json(message: Message) -> dict[str, Any]:
    """The message as the page reads it, each object with its `image_url` when it has an image."""
    answer = json_format.MessageToDict(message, preserving_proto_field_name=True)
    _add_image_urls(answer)
    return answer


def _add_image_urls(node: Any) -> None:
    if isinstance(node, dict):
        image = node.get("image")
        if "id" in node and isinstance(image, dict) and (image.get("uri") or image.get("origin")):
            node["image_url"] = f"/images/{quote(node['id'], safe='')}"
            node.pop("image")  # where the file lives on the server is not the page's business
        for value in node.values():
            _add_image_urls(value)
    elif isinstance(node, list):
        for value in node:
            _add_image_urls(value)


def image_location(image: common_pb2.Image) -> str:
    """Where an object's image is: its URI, else the origin of the bytes it was ingested with."""
    return image.uri if image.HasField("uri") else image.origin


def search_filter(query: Any) -> search_pb2.Filter:
    """The Filter given by /api/search's query parameters (artist=...&year_from=...)."""
    found = search_pb2.Filter()
    for param, field in _LIST_FILTERS.items():
        values = [v.strip() for v in query.getall(param, []) if v.strip()]
        getattr(found, field).extend(values)
    for field in _INT_FILTERS:
        raw = query.get(field, "").strip()
        if raw:
            try:
                setattr(found, field, int(raw))
            except ValueError:
                raise bad_request(f"{field} must be a whole year (e.g. 1850), not {raw!r}") from None
    has_image = query.get("has_image", "").strip().lower()
    if has_image in ("1", "true", "yes", "on"):
        found.has_image = True
    elif has_image in ("0", "false", "no", "off"):
        found.has_image = False
    elif has_image:
        raise bad_request(f"has_image must be true or false, not {has_image!r}")
    return found


def int_param(query: Any, name: str, default: int) -> int:
    raw = query.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"{name} must be a whole number, not {raw!r}") from None


async def json_body(request: web.Request, message: Message) -> Message:
    """The request's JSON body parsed into `message` (protobuf JSON: unknown fields refused)."""
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise bad_request(f"the body has {request.content_length} bytes: at most {MAX_JSON_BYTES}")
    try:
        body = await request.json()
    except ValueError:
        raise bad_request("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    try:
        return json_format.ParseDict(body, message)
    except json_format.ParseError as exc:
        raise bad_request(str(exc)) from None


class Gateway:
    def __init__(self, settings: ExplorerSettings) -> None:
        self.settings = settings
        self.roots = [Path(p.strip()).resolve() for p in settings.image_roots.split(",") if p.strip()]
        self.search_channel = open_channel(settings.search_address, settings.tls_ca_file)
        self.search = search_pb2_grpc.SearchServiceStub(self.search_channel)
        self.tagger_channel = (
            open_channel(settings.tagger_address, settings.tls_ca_file) if settings.tagger_address else None
        )
        self.tagger = tagger_pb2_grpc.TaggerServiceStub(self.tagger_channel) if self.tagger_channel else None

    async def close(self) -> None:
        await self.search_channel.close()
        if self.tagger_channel is not None:
            await self.tagger_channel.close()

    async def call(
        self, backend: str, rpc: Callable[..., Awaitable[Message]], request: Message, **kwargs: Any
    ) -> Message:
        try:
            return await rpc(request, timeout=self.settings.rpc_timeout_s, **kwargs)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise BackendDown(backend, exc) from None
            raise

    async def get_object(self, request: web.Request) -> search_pb2.GetObjectResponse:
        """The object named by the route's {id}."""
        return await self.call(
            "search", self.search.GetObject, search_pb2.GetObjectRequest(id=request.match_info["id"])
        )

    def _tagger(self) -> tagger_pb2_grpc.TaggerServiceStub:
        if self.tagger is None:
            raise http_error(web.HTTPServiceUnavailable, "UNAVAILABLE", "this explorer has no tagger configured")
        return self.tagger

    # -- routes ------------------------------------------------------------------------------

    async def search_route(self, request: web.Request) -> web.Response:
        query = request.query
        answer = await self.call(
            "search",
            self.search.Search,
            search_pb2.SearchRequest(
                query=query.get("q", ""),
                filter=search_filter(query),
                page=common_pb2.PageRequest(
                    page_size=int_param(query, "page_size", 0), page_token=query.get("page_token", "")
                ),
            ),
        )
        return web.json_response(to_json(answer))

    async def recommend_route(self, request: web.Request) -> web.Response:
        body = await json_body(request, search_pb2.RecommendRequest())
        return web.json_response(to_json(await self.call("search", self.search.Recommend, body)))

    async def object_route(self, request: web.Request) -> web.Response:
        answer = await self.get_object(request)
        return web.json_response(to_json(answer))

    async def similar_route(self, request: web.Request) -> web.Response:
        answer = await self.call(
            "search",
            self.search.MoreLikeThis,
            search_pb2.MoreLikeThisRequest(id=request.match_info["id"], k=int_param(request.query, "k", 8)),
        )
        return web.json_response(to_json(answer))

    async def suggestions_route(self, request: web.Request) -> web.Response:
        tagger = self._tagger()
        found = await self.get_object(request)
        obj = found.object
        # Search keeps where an image came from, not its bytes: send the file along so the tagger's
        # image models see what the page shows (a URL image the tagger fetches itself).
        path = None if obj.image.HasField("uri") else self.image_file(obj)
        if path is not None:
            obj.image.data = await asyncio.get_running_loop().run_in_executor(None, path.read_bytes)
        k = int_param(request.query, "k", 10)
        answer = await self.call("tagger", tagger.SuggestTags, tagger_pb2.SuggestTagsRequest(object=obj, k=k))
        return web.json_response(to_json(answer))

    async def feedback_route(self, request: web.Request) -> web.Response:
        tagger = self._tagger()
        body = await json_body(request, tagger_pb2.SubmitFeedbackRequest())
        if not body.curator_id:
            body.curator_id = "explorer"
        answer = await self.call("tagger", tagger.SubmitFeedback, body, metadata=bearer(self.settings.write_token))
        return web.json_response(to_json(answer))

    async def info_route(self, request: web.Request) -> web.Response:
        """The collection, the tagger version and which backends answer; never fails as a whole."""
        answer: dict[str, Any] = {"backends": {}}
        calls: list[tuple[str, str, Callable[..., Awaitable[Message]] | None, Message]] = [
            ("collection", "search", self.search.GetCollectionInfo, search_pb2.GetCollectionInfoRequest()),
            (
                "tagger",
                "tagger",
                self.tagger.GetTaggerInfo if self.tagger else None,
                tagger_pb2.GetTaggerInfoRequest(),
            ),
        ]
        for name, backend, rpc, message in calls:
            if rpc is None:
                answer[name], answer["backends"][backend] = None, "NOT_CONFIGURED"
                continue
            try:
                answer[name] = to_json(await self.call(backend, rpc, message))
                answer["backends"][backend] = "SERVING"
            except BackendDown as exc:
                answer[name] = None
                answer["backends"][backend] = exc.code.name
            except grpc.aio.AioRpcError as exc:
                answer[name] = None
                answer["backends"][backend] = exc.code().name
        return web.json_response(answer)

    def image_file(self, obj: common_pb2.CollectionObject) -> Path | None:
        """The object's image file, when its file path or origin lies under `image_roots` (links
        resolved first) and the file exists within MAX_IMAGE_MB; None otherwise."""
        location = image_location(obj.image)
        if not location or location.startswith(("http://", "https://")):
            return None
        path = Path(location.removeprefix("file://")).resolve()
        if not any(path.is_relative_to(root) for root in self.roots):
            log.warning("image outside image_roots", extra={"object_id": obj.id, "path": str(path)})
            return None
        try:
            size = path.stat().st_size
        except OSError:
            return None
        return path if size <= self.settings.max_image_mb * 2**20 else None

    async def image_route(self, request: web.Request) -> web.StreamResponse:
        found = await self.get_object(request)
        location = image_location(found.object.image)
        if location.startswith(("http://", "https://")):
            raise web.HTTPFound(location)  # IIIF and web images: the browser fetches and caches them
        if not location:
            return error_response(404, "NOT_FOUND", f"object {found.object.id!r} has no image")
        path = self.image_file(found.object)
        if path is None:
            return error_response(
                404, "NOT_FOUND", "the image file is missing, too large, or outside the folders this explorer serves"
            )
        stat = path.stat()
        etag = '"' + hashlib.sha256(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:32] + '"'
        headers = {"Cache-Control": f"public, max-age={self.settings.image_cache_s}", "ETag": etag}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        data = await asyncio.get_running_loop().run_in_executor(None, path.read_bytes)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return web.Response(body=data, content_type=content_type, headers=headers)

    async def ready_route(self, request: web.Request) -> web.Response:
        stub = health_pb2_grpc.HealthStub(self.search_channel)
        try:
            status = (await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)).status
        except grpc.aio.AioRpcError as exc:
            return error_response(503, "UNAVAILABLE", f"the search service does not answer ({exc.code().name})")
        if status != health_pb2.HealthCheckResponse.SERVING:
            return error_response(503, "UNAVAILABLE", "the search service is not serving yet")
        return web.json_response({"status": "SERVING"})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Kubelet probes these every few seconds: their access log lines are DEBUG (INFO when they fail),
# and they get no spans.
PROBES = ("/healthz", "/readyz")


def observer(log_access: bool) -> Callable[[web.Request, Handler], Awaitable[Any]]:
    """The middleware that records metrics and, with `log_access`, one vitrine.access line per
    request (probes at DEBUG); gRPC errors become JSON errors with HTTP statuses."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> Any:
        return await _observe(request, handler, log_access)

    return observe


async def _observe(request: web.Request, handler: Handler, log_access: bool) -> Any:
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    start = time.perf_counter()
    try:
        response = await handler(request)
    except BackendDown as exc:
        response = error_response(_HTTP_STATUS[exc.code], exc.code.name, str(exc))
    except grpc.aio.AioRpcError as exc:
        status = _HTTP_STATUS.get(exc.code(), 502)
        response = error_response(status, exc.code().name, exc.details() or exc.code().name.lower())
    except web.HTTPException as exc:
        response = exc
    except Exception:
        log.exception("request failed", extra={"route": route})
        response = error_response(500, "INTERNAL", "the explorer failed on this request; see its log")
    elapsed = time.perf_counter() - start
    HTTP_REQUESTS.labels(route, str(response.status)).inc()
    HTTP_LATENCY.labels(route).observe(elapsed)
    if log_access:
        access_log.log(
            logging.DEBUG if route in PROBES and response.status < 500 else logging.INFO,
            "request",
            extra={
                "method": request.method,
                "route": route,
                "path": request.path,
                "status": response.status,
                "duration_ms": round(elapsed * 1e3, 2),
                "peer": request.remote,
            },
        )
    if isinstance(response, web.HTTPException):
        raise response
    return response


def make_app(settings: ExplorerSettings) -> web.Application:
    gateway = Gateway(settings)
    app = web.Application(middlewares=[observer(settings.access_log)], client_max_size=MAX_JSON_BYTES)

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def close(_: web.Application) -> None:
        await gateway.close()

    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", gateway.ready_route)
    app.router.add_get("/api/search", gateway.search_route)
    app.router.add_post("/api/recommend", gateway.recommend_route)
    app.router.add_get("/api/objects/{id}", gateway.object_route)
    app.router.add_get("/api/objects/{id}/similar", gateway.similar_route)
    app.router.add_get("/api/objects/{id}/suggestions", gateway.suggestions_route)
    app.router.add_post("/api/feedback", gateway.feedback_route)
    app.router.add_get("/api/info", gateway.info_route)
    app.router.add_get("/images/{id}", gateway.image_route)
    app.on_cleanup.append(close)
    return app


def instrument_http() -> None:
    """With tracing on, each request gets a server span (its parent from the `traceparent`
    header, when a caller sent one), the outermost middleware of every Application made after
    this, so the gRPC calls and log lines of a request belong to its trace."""
    if not tracing.enabled():
        return
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    # The instrumentation reads its exclusions from the environment; an operator's own list wins.
    os.environ.setdefault("OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS", ",".join(f"^{p}$" for p in PROBES))
    AioHttpServerInstrumentor().instrument()


async def serve(settings: ExplorerSettings) -> None:
    start_process(SERVICE, settings, secrets=("write_token",))
    instrument_http()
    runner = web.AppRunner(make_app(settings), access_log=None, shutdown_timeout=settings.grace_seconds)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    READY.labels(SERVICE).set(1)
    log.info("serving", extra={"address": f"http://{settings.host}:{settings.port}/"})
    await stop_on_signals().wait()
    log.info("draining", extra={"grace_seconds": settings.grace_seconds})
    READY.labels(SERVICE).set(0)
    with contextlib.suppress(Exception):
        await runner.cleanup()
    log.info("stopped")
    stop_process()


def main(argv: list[str] | None = None) -> None:
    settings = load_settings(ExplorerSettings, ENV_PREFIX, argv, description=__doc__ or "")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
