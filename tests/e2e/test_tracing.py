"""One explorer request is one trace across every process it touches, read back from a real OTLP
receiver (tests/otlp.py) that the session's services export to, and the JSON log lines of those
processes carry its trace id.

The request is the page's tag suggestions for an object: the explorer asks search for the object
(GetObject), then the tagger for suggestions (SuggestTags), and the tagger embeds the object's
text through the embedder (EmbedTexts). The test sends its own W3C `traceparent`, as a browser
instrumentation or an ingress would, so it knows the trace id before any span exists.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from collections.abc import Iterable

from tests.e2e.conftest import DEMO_OBJECT, System
from tests.otlp import Collector, ReceivedSpan
from tests.servers import ServiceProcess

SERVICES = ("vitrine-explorer", "vitrine-search", "vitrine-tagger", "vitrine-embedder")


def one(spans: Iterable[ReceivedSpan], **match: object) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one span with {match}, found {len(found)}: {found}"
    return found[0]


def log_lines_with(service: ServiceProcess, trace_id: str) -> list[dict[str, object]]:
    lines = []
    for line in service.log_path.read_text(errors="replace").splitlines():
        if trace_id in line:
            entry = json.loads(line)
            if entry.get("trace_id") == trace_id:
                lines.append(entry)
    return lines


def test_one_explorer_request_is_one_trace_across_every_process(
    system: System, explorer: ServiceProcess, collector: Collector
) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    request = urllib.request.Request(
        explorer.url + f"api/objects/{DEMO_OBJECT}/suggestions?k=5",
        headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        assert answer.status == 200
        assert json.load(answer)["suggestions"], "the tagger suggested nothing for the demo object"

    # Each process sends its spans in its own batches, each span when it ends (the explorer's
    # request span last): wait for one of each kind expected, then for stragglers of a last batch.
    expected = {
        ("vitrine-explorer", "SERVER", "GET /api/objects/{id}/suggestions"),
        ("vitrine-explorer", "CLIENT", "/vitrine.v1.SearchService/GetObject"),
        ("vitrine-explorer", "CLIENT", "/vitrine.v1.TaggerService/SuggestTags"),
        ("vitrine-search", "SERVER", "/vitrine.v1.SearchService/GetObject"),
        ("vitrine-tagger", "SERVER", "/vitrine.v1.TaggerService/SuggestTags"),
        ("vitrine-tagger", "CLIENT", "/vitrine.v1.EmbedderService/EmbedTexts"),
        ("vitrine-embedder", "SERVER", "/vitrine.v1.EmbedderService/EmbedTexts"),
    }

    def complete(spans: list[ReceivedSpan]) -> bool:
        return expected <= {(s.service, s.kind_name, s.name) for s in spans if s.trace_id == trace_id}

    collector.wait_for(complete, timeout_s=20)
    time.sleep(1.0)  # ten times the services' OTEL_BSP_SCHEDULE_DELAY
    spans = [s for s in collector.spans() if s.trace_id == trace_id]
    assert {s.service for s in spans} == set(SERVICES)

    # explorer: the HTTP server span, child of the caller's span, parent of its two gRPC calls.
    explorer_spans = [s for s in spans if s.service == "vitrine-explorer"]
    http = one(explorer_spans, kind_name="SERVER")
    assert http.parent_span_id == caller_span
    assert http.name == "GET /api/objects/{id}/suggestions"
    get_object = one(explorer_spans, kind_name="CLIENT", name="/vitrine.v1.SearchService/GetObject")
    suggest = one(explorer_spans, kind_name="CLIENT", name="/vitrine.v1.TaggerService/SuggestTags")
    assert get_object.parent_span_id == http.span_id and suggest.parent_span_id == http.span_id

    # search and tagger: each server span is the child of the explorer's client span, across processes.
    search_server = one(spans, service="vitrine-search", kind_name="SERVER")
    assert search_server.name == "/vitrine.v1.SearchService/GetObject"
    assert search_server.parent_span_id == get_object.span_id
    tagger_server = one(spans, service="vitrine-tagger", kind_name="SERVER")
    assert tagger_server.name == "/vitrine.v1.TaggerService/SuggestTags"
    assert tagger_server.parent_span_id == suggest.span_id

    # tagger -> embedder: the tagger's EmbedTexts call is inside its SuggestTags span, and the
    # embedder's server span is the child of that call.
    embed_calls = [s for s in spans if s.service == "vitrine-tagger" and s.kind_name == "CLIENT"]
    embedder_methods = {"/vitrine.v1.EmbedderService/EmbedTexts", "/vitrine.v1.EmbedderService/EmbedImages"}
    assert embed_calls and {s.name for s in embed_calls} <= embedder_methods
    assert all(s.parent_span_id == tagger_server.span_id for s in embed_calls)
    embedder_servers = [s for s in spans if s.service == "vitrine-embedder"]
    assert embedder_servers and all(s.kind_name == "SERVER" for s in embedder_servers)
    assert {s.parent_span_id for s in embedder_servers} <= {s.span_id for s in embed_calls}

    # Every span of the trace hangs off the caller's span: no process started a trace of its own.
    by_id = {s.span_id: s for s in spans}
    for span in spans:
        root = span
        while root.parent_span_id in by_id:
            root = by_id[root.parent_span_id]
        assert root.parent_span_id == caller_span, f"{span.service} {span.name} is not under the request"

    # The access log lines of each process carry the trace id, with the span that was active.
    for service, method in [
        (explorer, None),
        (system.search, "vitrine.v1.SearchService/GetObject"),
        (system.tagger, "vitrine.v1.TaggerService/SuggestTags"),
        (system.embedder, "vitrine.v1.EmbedderService/EmbedTexts"),
    ]:
        lines = log_lines_with(service, trace_id)
        access = [line for line in lines if line.get("logger") == "vitrine.access"]
        assert access, f"{service.name}: no access log line with trace_id {trace_id}"
        ids = {s.span_id for s in spans if s.service == f"vitrine-{service.name}"}
        assert all(line["span_id"] in ids for line in lines), f"{service.name}: a log line names a foreign span"
        if method is None:
            assert access[0]["route"] == "/api/objects/{id}/suggestions" and access[0]["status"] == 200
        else:
            assert method in {line["grpc_method"] for line in access}
            assert all(line["grpc_code"] == "OK" for line in access)
