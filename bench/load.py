"""Load test of the running system (issue #8): N concurrent clients for S seconds against each
service on loopback, one service after another; throughput, latency percentiles, errors and the
service process's peak memory. Run it against `make run` (its ports are the defaults):

    make run                      # in one terminal: the system with the demo collection
    make load                     # in another: python -m bench.load, 64 clients, 60 s each

Each client is a grpc.aio call loop (what ghz does), all clients on one channel per service
(HTTP/2 multiplexes them). The calls are the ones museum systems make most:
- embedder: EmbedTexts of one catalogue text with MPNet (micro-batching merges the clients' calls);
- tagger: SuggestTags for a demo object, k=10, with explanations;
- search: Search with two-word subject queries (query embedding included, as a client sees it).
Results: bench/results/load.json and load.md. Errors must be 0: any non-OK status is counted by
code and the run says so. Peak memory is the service process's VmHWM (Linux, same machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from vitrine.v1 import (
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
    tagger_pb2,
    tagger_pb2_grpc,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
QUERIES = [
    "storm at sea",
    "portrait woman",
    "river landscape",
    "ships harbour",
    "mountain lake",
    "cathedral interior",
    "horse rider",
    "flowers still life",
    "winter village",
    "moonlight coast",
    "old man reading",
    "battle soldiers",
]
TEXTS = [f"{q}, oil on canvas, 19th century (no. {i})" for i, q in enumerate(QUERIES * 8)]
OBJECT = common_pb2.CollectionObject(
    id="LOAD-1",
    title="A Fishing Boat in a Storm off the Coast",
    artist="Joseph Mallord William Turner",
    date="c.1830",
    medium="Watercolour on paper",
)

Call = Callable[[int], Awaitable[Any]]


def _calls(service: str, channel: grpc.aio.Channel, text_model: str) -> Call:
    if service == "embedder":
        embedder = embedder_pb2_grpc.EmbedderServiceStub(channel)
        return lambda n: embedder.EmbedTexts(
            embedder_pb2.EmbedTextsRequest(model=text_model, texts=[TEXTS[n % len(TEXTS)]]), timeout=120
        )
    if service == "tagger":
        tagger = tagger_pb2_grpc.TaggerServiceStub(channel)
        return lambda n: tagger.SuggestTags(tagger_pb2.SuggestTagsRequest(object=OBJECT, k=10), timeout=120)
    search = search_pb2_grpc.SearchServiceStub(channel)
    return lambda n: search.Search(search_pb2.SearchRequest(query=QUERIES[n % len(QUERIES)]), timeout=120)


def _process_of(service: str) -> int | None:
    """The pid of the local `vitrine.<service>.server` process, when there is exactly one."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"vitrine.{service}.server" in cmdline:
            found.append(int(entry.name))
    return found[0] if len(found) == 1 else None


def _memory_mb(pid: int | None) -> dict[str, float]:
    if pid is None:
        return {}
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    values = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith("Vm")}
    return {"rss_mb": round(int(values["VmRSS"]) / 1024, 1), "peak_rss_mb": round(int(values["VmHWM"]) / 1024, 1)}


async def load(service: str, address: str, clients: int, seconds: float, text_model: str) -> dict[str, Any]:
    """`clients` loops calling the service for `seconds`; latencies of the calls that finished."""
    pid = _process_of(service)
    before = _memory_mb(pid)
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(address) as channel:
        call = _calls(service, channel, text_model)
        await call(0)  # warm-up: models and caches loaded before the clock starts
        deadline = time.perf_counter() + seconds

        async def client(k: int) -> None:
            n = k
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    await call(n)
                    codes["OK"] += 1
                    latencies.append(time.perf_counter() - start)
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code().name] += 1
                n += clients

        started = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    return {
        "address": address,
        "clients": clients,
        "seconds": round(elapsed, 1),
        "calls_ok": codes["OK"],
        "errors": {code: n for code, n in codes.items() if code != "OK"},
        "throughput_per_s": round(codes["OK"] / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "memory_before": before,
        "memory_after": _memory_mb(pid),
    }


def report(results: dict[str, Any]) -> list[str]:
    lines = [
        "# Load test (bench/load.py against a running system)",
        "",
        f"Machine: {results['machine']['cpu_count']} cores, {results['machine']['platform']}. "
        f"{results['clients']} concurrent clients for {results['seconds']} s against each service, one "
        "service at a time, loopback.",
        "",
        "| service | call | calls/s | p50 ms | p95 ms | p99 ms | errors | peak RSS MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    what = {
        "embedder": "EmbedTexts, 1 text",
        "tagger": "SuggestTags k=10 + explanations",
        "search": "Search, 2-word query",
    }
    for name, row in results["services"].items():
        errors = ", ".join(f"{c} {n}" for c, n in row["errors"].items()) or "0"
        peak = row["memory_after"].get("peak_rss_mb", "—")
        lines.append(
            f"| {name} | {what[name]} | {row['throughput_per_s']} | {row['p50_ms']} | {row['p95_ms']} | "
            f"{row['p99_ms']} | {errors} | {peak} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--embedder", default="127.0.0.1:50051")
    parser.add_argument("--tagger", default="127.0.0.1:50052")
    parser.add_argument("--search", default="127.0.0.1:50053")
    parser.add_argument("--services", default="embedder,tagger,search", help="which, comma-separated")
    parser.add_argument("--text-model", default="mpnet")
    parser.add_argument("--out", default=str(RESULTS / "load"), help="results file stem (.json and .md)")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "clients": args.clients,
        "seconds": args.seconds,
        "services": {},
    }
    for service in args.services.split(","):
        print(f"{service}: {args.clients} clients for {args.seconds:g} s ...", flush=True)
        row = asyncio.run(load(service, getattr(args, service), args.clients, args.seconds, args.text_model))
        results["services"][service] = row
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = report(results)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    failed = {name: row["errors"] for name, row in results["services"].items() if row["errors"]}
    if failed:
        raise SystemExit(f"errors under load: {failed}")


if __name__ == "__main__":
    main()
