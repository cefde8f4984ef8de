"""`vitrine-search eval`: search and recommend quality measured through the service's own RPCs
(issue #13; the steps are in the command's help, services/search/cli.py). Starts the services it
needs (processes), ingests the collection without its subjects and runs the protocols, then
writes metrics.json, metrics.md, queries.jsonl and per_query.jsonl (report)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from vitrine.evaluation.errors import EvalError
from vitrine.evaluation.metrics import method_metrics
from vitrine.evaluation.processes import Services
from vitrine.evaluation.protocols import (
    ATTEMPTS,
    LIKES,
    SEARCH_METHODS,
    TRIALS,
    check_store,
    ingest_collection,
    list_models,
    painting_groups,
    per_query,
    recommend_quality,
    run_method,
    subject_groups,
)
from vitrine.evaluation.queries import Collection, Query, generate_queries, read_collection, read_queries, write_jsonl
from vitrine.evaluation.report import checks, search_markdown
from vitrine.evaluation.tfidf import TfidfBaseline
from vitrine.launcher import ServiceProcess
from vitrine.search.ingest import open_channel
from vitrine.v1 import embedder_pb2, search_pb2, search_pb2_grpc

# The search service's sources, digested into the report (services/search).
SEARCH_SOURCES = Path(__file__).resolve().parents[1] / "search"


def _paintings_file(value: str) -> Path:
    path = Path(value)
    return path / "metadata.jsonl" if path.is_dir() else path


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the evaluation like Ctrl-C does (and so stops its services)."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_eval(args: argparse.Namespace) -> int:
    data = Path(args.data)
    if not data.is_file():
        raise EvalError(f"no such file: {data}")
    paintings = None if args.no_paintings else _paintings_file(args.paintings or args.default_paintings)
    if paintings is not None and not paintings.is_file():
        if args.paintings:
            raise EvalError(f"no paintings metadata at {paintings} (--paintings DIR, or --no-paintings)")
        paintings = None  # the default folder is not on this machine: no image side
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def say(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    collection = read_collection(data, args.limit)
    tagger_model = _tagger_model(args.tagger_model, collection) if args.tagger_model else None
    if args.queries:
        queries = read_queries(Path(args.queries))
        queries_source = str(args.queries)
    else:
        queries = generate_queries(collection.subjects, args.max_queries, args.seed, args.min_relevant)
        if not queries:
            raise EvalError(f"{data}: no subject has {args.min_relevant} objects: give --queries")
        write_jsonl(out / "queries.jsonl", (q.to_json() for q in queries))
        queries_source = str(out / "queries.jsonl")
    say(f"{len(collection.texts)} objects, {len(queries)} queries ({queries_source})")

    with _sigterm_as_interrupt(), Services(out / "logs", args.ready_timeout, args.quiet) as services:
        if args.start_embedder:
            models = args.embedder_models or ",".join(
                dict.fromkeys([args.text_model, *([args.image_model or "efficientnet-lite0"] if paintings else [])])
            )
            embedder = services.start_embedder(models)
        else:
            embedder = args.embedder
        tagger = services.start_tagger(tagger_model, embedder) if tagger_model else ""
        metrics = asyncio.run(_evaluate(args, services, embedder, tagger, collection, queries, paintings, say))
    metrics["info"].update(queries_file=queries_source, seconds=round(time.perf_counter() - started, 1))
    metrics["checks"] = checks(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    table = search_markdown(metrics)
    (out / "metrics.md").write_text(table)
    print(table)
    say(f"wrote {out / 'metrics.json'}, {out / 'metrics.md'} in {metrics['info']['seconds']:.0f} s")
    return 0


def _tagger_model(folder: str, collection: Collection) -> Path:
    """The tagger version folder, checked: trained, and never on an object being evaluated (its
    machine tags would then repeat the curators' subjects the queries are made of)."""
    path = Path(folder).resolve()
    meta = path / "meta.json"
    if not meta.is_file():
        raise EvalError(f"{path} is not a trained tagger version (no meta.json)")
    ids_file = path / json.loads(meta.read_text()).get("training_ids_file", "training_ids.txt")
    if not ids_file.is_file():
        raise EvalError(f"{path} lists no training ids ({ids_file.name}): cannot check it never saw these objects")
    overlap = set(ids_file.read_text().split()) & set(collection.ids)
    if overlap:
        raise EvalError(
            f"the tagger version {path.name} trained on {len(overlap)} of the evaluated objects "
            f"(e.g. {sorted(overlap)[:3]}): evaluate on objects it never saw"
        )
    return path


async def _evaluate(
    args: argparse.Namespace,
    services: Services,
    embedder: str,
    tagger: str,
    collection: Collection,
    queries: list[Query],
    paintings: Path | None,
    say: Any,
) -> dict[str, Any]:
    try:
        models = await list_models(embedder)
    except grpc.aio.AioRpcError as exc:
        raise EvalError(f"no embedder at {embedder} ({exc.code().name}): start one, or pass --start-embedder") from exc
    by_name = {m.name: m for m in models.models}
    text_info = by_name.get(args.text_model)
    if text_info is None:
        raise EvalError(f"the embedder at {embedder} has no model {args.text_model!r}: it has {', '.join(by_name)}")
    notes: list[str] = []
    if text_info.test_model:
        notes.append(f"text model {args.text_model} has test weights: these figures are not for reporting")
    timings: dict[str, float] = {}
    info: dict[str, Any] = {
        "data": str(collection.path),
        "text_model": args.text_model,
        "embedder": embedder,
        "text_to_image_available": models.text_to_image_available,
        "search_build": _git_build(),
        "search_source_sha256": _source_digest(),
        "seed": args.seed,
        "tagger_model": args.tagger_model or "",
    }
    metrics: dict[str, Any] = {"methods": {}, "recommend": {}, "info": info, "notes": notes}

    # -- the objects' store: search, then text-side Recommend --------------------------------
    search = services.start_search(embedder, args.text_model, "", tagger)
    async with open_channel(search.address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        clock = time.perf_counter()
        summary = await ingest_collection(search.address, collection, args)
        timings["ingest_objects"] = time.perf_counter() - clock
        for line in summary.lines():
            say(line)
        clock = time.perf_counter()
        store = await check_store(stub, collection.ids)
        timings["check_store"] = time.perf_counter() - clock
        if store.with_subjects:
            raise EvalError(f"{len(store.with_subjects)} stored objects carry subjects, e.g. {store.with_subjects[0]}")
        info["index"] = {**store.summary(), "records": len(collection.rows), "skipped": sum(summary.skipped.values())}
        present = set(store.present)
        texts = {i: t for i, t in collection.texts.items() if i in present}

        clock = time.perf_counter()
        methods = dict(SEARCH_METHODS)
        if not tagger:
            del methods["tags"]
            notes.append("tags: no machine tags (give --tagger-model); the tags signal had nothing to match")
        if not models.text_to_image_available:
            del methods["image"]
            notes.append(
                "image: skipped, the embedder has no CLIP weights (ListModels text_to_image_available is false)"
            )
        signals_seen: dict[str, dict[str, int]] = {}
        search_runs: dict[str, dict[str, Any]] = {}
        ranked: dict[str, list[list[str]]] = {}
        dense = ["text", *(["image"] if models.text_to_image_available else [])]
        for name, weights in methods.items():
            say(f"searching: {name} ({len(queries)} queries)")
            run = await run_method(stub, queries, weights, args.concurrency, dense)
            metrics["methods"][name] = method_metrics(queries, run.results)
            ranked[name] = run.results
            signals_seen[name] = dict(run.signals)
            search_runs[name] = {
                "degraded_answers": run.degraded,
                "retries": run.retries,
                "latency_s_mean": round(float(np.mean(run.latencies_s)), 3) if run.latencies_s else None,
                "latency_s_p95": round(float(np.percentile(run.latencies_s, 95)), 3) if run.latencies_s else None,
            }
            if run.degraded:
                notes.append(
                    f"{name}: {run.degraded} answers came without a signal the method asks for (embedder too slow "
                    f"even after {ATTEMPTS} tries): the figure understates the method"
                )
            if name in ("keyword", "image") and run.signals and set(run.signals) == {"text"}:
                notes.append(
                    f"{name}: every hit came from the text signal: this search build ignores signal_weights "
                    "(no hybrid search yet), so the figure is the text signal's"
                )
            if name == "image" and "image" in run.unavailable:
                notes.append("image: the service reported the image signal unavailable")
        tfidf = TfidfBaseline(texts)
        ranked["tfidf"] = [tfidf.search(q.query) for q in queries]
        metrics["methods"]["tfidf"] = method_metrics(queries, ranked["tfidf"])
        timings["search"] = time.perf_counter() - clock
        info["signals_seen"] = signals_seen
        info["search_calls"] = search_runs
        info["queries"] = {
            "clean": sum(q.typo_of is None for q in queries),
            "typo": sum(q.typo_of is not None for q in queries),
        }

        clock = time.perf_counter()
        groups = subject_groups(collection, store.present, args.max_groups, args.seed)
        if groups:
            say(f"recommend, text side: {len(groups)} subjects × {TRIALS} trials")
            part = await recommend_quality(
                stub, groups, store.present, search_pb2.VECTOR_SPACE_TEXT, "subject", args.seed, args.concurrency
            )
            metrics["recommend"]["text_subject"] = {**part, "model": args.text_model, "space": "text"}
        else:
            notes.append(f"text-side Recommend skipped: no subject has more than {LIKES} objects in the data")
        timings["recommend_text"] = time.perf_counter() - clock
    services.stop(search)
    write_jsonl(Path(args.out) / "per_query.jsonl", per_query(queries, ranked))

    # -- the paintings' store: image-side Recommend ------------------------------------------
    if paintings is not None:
        clock = time.perf_counter()
        await _image_side(args, services, embedder, models, paintings, metrics, say)
        timings["paintings"] = time.perf_counter() - clock
    info["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    return metrics


async def _image_side(
    args: argparse.Namespace,
    services: Services,
    embedder: str,
    models: embedder_pb2.ListModelsResponse,
    paintings: Path,
    metrics: dict[str, Any],
    say: Any,
) -> None:
    notes: list[str] = metrics["notes"]
    image_models = {m.name: m for m in models.models if embedder_pb2.MODALITY_IMAGE in m.modalities}
    if not image_models:
        notes.append(f"image-side Recommend skipped: the embedder at {embedder} has no image model")
        return
    collection = read_collection(paintings, args.paintings_limit)
    search = services.start_search(embedder, args.text_model, args.image_model)
    try:
        await _image_side_on(args, search, collection, paintings, image_models, metrics, say)
    finally:
        services.stop(search)


async def _image_side_on(
    args: argparse.Namespace,
    search: ServiceProcess,
    collection: Collection,
    paintings: Path,
    image_models: Mapping[str, embedder_pb2.ModelInfo],
    metrics: dict[str, Any],
    say: Any,
) -> None:
    notes: list[str] = metrics["notes"]
    async with open_channel(search.address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        info = await stub.GetCollectionInfo(search_pb2.GetCollectionInfoRequest(), timeout=30)
        image_model = info.image_model
        if image_models[image_model].test_model:
            notes.append(f"image-side Recommend skipped: {image_model} has test weights (never a reported figure)")
            return
        clock = time.perf_counter()
        summary = await ingest_collection(search.address, collection, args)
        for line in summary.lines():
            say(line)
        store = await check_store(stub, collection.ids)
        metrics["info"]["paintings"] = {
            "data": str(paintings),
            "image_model": image_model,
            "ingest_s": round(time.perf_counter() - clock, 1),
            **store.summary(),
        }
        for kind, groups in painting_groups(collection, store.with_image).items():
            say(f"recommend, image side ({kind}): {len(groups)} groups × {TRIALS} trials")
            part = await recommend_quality(
                stub, groups, store.with_image, search_pb2.VECTOR_SPACE_IMAGE, kind, args.seed, args.concurrency
            )
            metrics["recommend"][f"image_{kind}"] = {**part, "model": image_model, "space": "image"}


def _source_digest() -> str:
    """A digest of the search service's source files as they are now (the running services
    loaded them at start): tells apart uncommitted builds."""
    digest = hashlib.sha256()
    for path in sorted(SEARCH_SOURCES.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _git_build() -> str:
    """The checkout the services run from: commit, '+dirty' when services/ or protos/ differ from
    it (changed or new files); best effort."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "services", "protos"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{commit}{'+dirty' if dirty else ''}" if commit else ""
