"""Embedder benchmark: the service against the same model called in-process, in one run.

For each text model: in-process throughput at the best batch size, service throughput with many
single-text callers (micro-batching at work) and with batched requests, and the latency one
single-text request adds over calling the model directly. Results: bench/results/embedder.json
and a markdown summary. Numbers are only comparable within one run on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path

import grpc
import torch

from vitrine.embedder.models.base import choose_placement
from vitrine.embedder.models.sentence_text import SentenceTextModel, minilm, mpnet
from vitrine.launcher import start_service
from vitrine.v1 import embedder_pb2, embedder_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SENTENCES = [
    "Landscape with a river and cattle at sunset, oil on canvas",
    "Portrait of an old woman in a black dress",
    "A sailing ship in a storm off the coast",
    "Study of a seated male nude, graphite on paper",
    "View of the cathedral from the river bank",
]


def texts(n: int) -> list[str]:
    return [f"{SENTENCES[i % len(SENTENCES)]} (no. {i})" for i in range(n)]


def in_process(model: SentenceTextModel, n: int, batch_sizes: list[int]) -> dict[str, float]:
    items = texts(n)
    model.embed_texts(items[:8])  # warm-up
    best = {}
    for batch in batch_sizes:
        start = time.perf_counter()
        for i in range(0, n, batch):
            model.embed_texts(items[i : i + batch])
        best[str(batch)] = n / (time.perf_counter() - start)
    single = []
    for text in items[:20]:
        start = time.perf_counter()
        model.embed_texts([text])
        single.append(time.perf_counter() - start)
    return {
        "per_batch_size": best,
        "best_texts_per_s": max(best.values()),
        "single_ms": statistics.median(single) * 1e3,
    }


async def service(address: str, model: str, n: int, concurrency: int, per_request: int) -> float:
    items = texts(n)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
        await stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model=model, texts=items[:8]))
        chunks = [items[i : i + per_request] for i in range(0, n, per_request)]
        semaphore = asyncio.Semaphore(concurrency)

        async def call(chunk: list[str]) -> None:
            async with semaphore:
                await stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model=model, texts=chunk), timeout=600)

        start = time.perf_counter()
        await asyncio.gather(*(call(c) for c in chunks))
        return n / (time.perf_counter() - start)


async def single_latency(address: str, model: str) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
        samples = []
        for text in texts(20):
            start = time.perf_counter()
            await stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model=model, texts=[text]))
            samples.append(time.perf_counter() - start)
        return statistics.median(samples) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="minilm,mpnet")
    parser.add_argument("--texts", type=int, default=512, help="texts per measurement (mpnet uses a quarter)")
    args = parser.parse_args()
    names = args.models.split(",")
    placement = choose_placement()
    model_dir = Path(os.environ.get("VITRINE_EMBEDDER_MODEL_DIR", Path.home() / ".cache/vitrine/models"))
    factories = {"minilm": lambda: minilm(placement), "mpnet": lambda: mpnet(model_dir, placement)}
    results: dict[str, object] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "device": placement.device,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "models": {},
    }
    server = start_service(
        "embedder",
        RESULTS / "logs",
        {**os.environ, "VITRINE_EMBEDDER_MODELS": ",".join(names), "VITRINE_EMBEDDER_LOG_LEVEL": "WARNING"},
        cwd=ROOT,
    )
    try:
        server.wait_serving(300)
        for name in names:
            n = args.texts if name != "mpnet" else args.texts // 4
            model = factories[name]()
            model.load()
            raw = in_process(model, n, [8, 32, 64])
            del model
            many_single = asyncio.run(service(server.address, name, n, concurrency=64, per_request=1))
            batched = asyncio.run(service(server.address, name, n, concurrency=4, per_request=32))
            latency = asyncio.run(single_latency(server.address, name))
            results["models"][name] = {  # type: ignore[index]
                "texts": n,
                "in_process": raw,
                "service_64_single_text_clients_texts_per_s": many_single,
                "service_batched_32_texts_per_s": batched,
                "ratio_single_clients_vs_in_process": many_single / raw["best_texts_per_s"],
                "ratio_batched_vs_in_process": batched / raw["best_texts_per_s"],
                "single_request_ms": latency,
                "single_request_overhead_ms": latency - raw["single_ms"],
            }
            print(name, json.dumps(results["models"][name], indent=1), flush=True)  # type: ignore[index]
    finally:
        server.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "embedder.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Embedder benchmark (service vs in-process, same run)",
        "",
        f"Machine: {results['machine']}",
        "",
        "| model | in-process best texts/s | service, 64 single-text clients | ratio | service, batches of 32 | ratio "
        "| single request ms (overhead) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results["models"].items():  # type: ignore[union-attr]
        lines.append(
            f"| {name} | {r['in_process']['best_texts_per_s']:.1f} "
            f"| {r['service_64_single_text_clients_texts_per_s']:.1f} "
            f"| {r['ratio_single_clients_vs_in_process']:.2f}× | {r['service_batched_32_texts_per_s']:.1f} "
            f"| {r['ratio_batched_vs_in_process']:.2f}× | {r['single_request_ms']:.1f} "
            f"({r['single_request_overhead_ms']:+.1f}) |"
        )
    (RESULTS / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
