"""Embedder benchmark: the service against the same model called in-process, in one run.

For each model (texts: MiniLM, MPNet; images: EfficientNet-Lite0 on the demo's painting JPEGs,
decoded and prepared in-process too, as the service must): in-process throughput at the best
batch size, service throughput with many single-item callers (micro-batching at work) and with
batched requests, and the latency one single-item request adds over calling the model directly.
Results: bench/results/embedder.json and a markdown summary. Numbers are only comparable within
one run on one machine. CLIP is left out: its weights cannot be had here, and random weights
never stand behind a reported figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import torch

from vitrine.embedder.models.base import IMAGE, EmbeddingModel, choose_placement
from vitrine.embedder.models.efficientnet import EfficientNetLite0
from vitrine.embedder.models.images import decode_image
from vitrine.embedder.models.sentence_text import minilm, mpnet
from vitrine.embedder.settings import EmbedderSettings
from vitrine.launcher import start_service
from vitrine.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PAINTINGS = ROOT.parent / "shared" / "data" / "paintings" / "images"
# The service's default limits, which decoding checks in-process too.
LIMITS = EmbedderSettings()
MAX_IMAGE_BYTES = int(LIMITS.max_image_mb * 1024 * 1024)
SLOW_MODELS = {"mpnet", "efficientnet-lite0"}  # a quarter of the items: same minutes as MiniLM
SENTENCES = [
    "Landscape with a river and cattle at sunset, oil on canvas",
    "Portrait of an old woman in a black dress",
    "A sailing ship in a storm off the coast",
    "Study of a seated male nude, graphite on paper",
    "View of the cathedral from the river bank",
]


def texts(n: int) -> list[str]:
    return [f"{SENTENCES[i % len(SENTENCES)]} (no. {i})" for i in range(n)]


def images(n: int) -> list[bytes]:
    """The demo's painting JPEGs (200 px), as a museum system sends them."""
    files = sorted(PAINTINGS.glob("*.jpg"))[:n]
    return [files[i % len(files)].read_bytes() for i in range(n)]


def embed_in_process(model: EmbeddingModel, items: list[Any]) -> None:
    """What the service does with the items of one batch, called directly."""
    if model.modalities == (IMAGE,):
        prepared = [model.prepare_image(decode_image(b, MAX_IMAGE_BYTES, LIMITS.max_image_pixels)) for b in items]
        model.embed_images(prepared)
    else:
        model.embed_texts(items)


def in_process(model: EmbeddingModel, items: list[Any], batch_sizes: list[int]) -> dict[str, Any]:
    n = len(items)
    embed_in_process(model, items[:8])  # warm-up
    best = {}
    for batch in batch_sizes:
        start = time.perf_counter()
        for i in range(0, n, batch):
            embed_in_process(model, items[i : i + batch])
        best[str(batch)] = n / (time.perf_counter() - start)
    single = []
    for item in items[:20]:
        start = time.perf_counter()
        embed_in_process(model, [item])
        single.append(time.perf_counter() - start)
    return {
        "per_batch_size": best,
        "best_items_per_s": max(best.values()),
        "best_batch_size": int(max(best, key=best.__getitem__)),
        "single_ms": statistics.median(single) * 1e3,
    }


def _request(model: str, items: list[Any]) -> tuple[str, Any]:
    """The RPC name and request that embed these items (texts or image bytes)."""
    if items and isinstance(items[0], bytes):
        return "EmbedImages", embedder_pb2.EmbedImagesRequest(
            model=model, images=[common_pb2.Image(data=b) for b in items]
        )
    return "EmbedTexts", embedder_pb2.EmbedTextsRequest(model=model, texts=items)


async def service(address: str, model: str, items: list[Any], concurrency: int, per_request: int) -> float:
    n = len(items)
    async with grpc.aio.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
        method, warm_up = _request(model, items[:8])
        await getattr(stub, method)(warm_up)
        chunks = [items[i : i + per_request] for i in range(0, n, per_request)]
        semaphore = asyncio.Semaphore(concurrency)

        async def call(chunk: list[Any]) -> None:
            async with semaphore:
                method, request = _request(model, chunk)
                await getattr(stub, method)(request, timeout=600)

        start = time.perf_counter()
        await asyncio.gather(*(call(c) for c in chunks))
        return n / (time.perf_counter() - start)


async def micro_batch_sizes(address: str) -> dict[str, int]:
    async with grpc.aio.insecure_channel(address) as channel:
        listing = await embedder_pb2_grpc.EmbedderServiceStub(channel).ListModels(embedder_pb2.ListModelsRequest())
        return {m.name: m.max_batch_size for m in listing.models}


async def single_latency(address: str, model: str, items: list[Any]) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
        samples = []
        for item in items[:20]:
            method, request = _request(model, [item])
            start = time.perf_counter()
            await getattr(stub, method)(request)
            samples.append(time.perf_counter() - start)
        return statistics.median(samples) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="minilm,mpnet,efficientnet-lite0")
    parser.add_argument("--texts", type=int, default=512, help="items per measurement (mpnet uses a quarter)")
    args = parser.parse_args()
    names = args.models.split(",")
    placement = choose_placement()
    model_dir = Path(os.environ.get("VITRINE_EMBEDDER_MODEL_DIR", Path.home() / ".cache/vitrine/models"))
    factories: dict[str, Callable[[], EmbeddingModel]] = {
        "minilm": lambda: minilm(placement),
        "mpnet": lambda: mpnet(model_dir, placement),
        "efficientnet-lite0": lambda: EfficientNetLite0(placement),
    }
    results: dict[str, Any] = {
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
        micro_batch = asyncio.run(micro_batch_sizes(server.address))
        for name in names:
            model = factories[name]()
            n = args.texts // 4 if name in SLOW_MODELS else args.texts
            items = images(n) if model.modalities == (IMAGE,) else texts(n)
            model.load()
            raw = in_process(model, items, [8, 16, 32, 64, 128])
            del model
            many_single = asyncio.run(service(server.address, name, items, concurrency=64, per_request=1))
            batched = asyncio.run(service(server.address, name, items, concurrency=4, per_request=32))
            latency = asyncio.run(single_latency(server.address, name, items))
            results["models"][name] = {
                "items": n,
                "kind": "images" if isinstance(items[0], bytes) else "texts",
                "in_process": raw,
                "service_micro_batch": micro_batch[name],
                "service_64_single_item_clients_per_s": many_single,
                "service_batched_32_per_s": batched,
                "ratio_single_clients_vs_in_process": many_single / raw["best_items_per_s"],
                "ratio_batched_vs_in_process": batched / raw["best_items_per_s"],
                "single_request_ms": latency,
                "single_request_overhead_ms": latency - raw["single_ms"],
            }
            print(name, json.dumps(results["models"][name], indent=1), flush=True)
    finally:
        server.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "embedder.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Embedder benchmark (service vs in-process, same run)",
        "",
        f"Machine: {results['machine']}",
        "",
        "| model | items | in-process best /s (batch) | service micro-batch | service, 64 single-item clients "
        "| ratio | service, batches of 32 | ratio | single request ms (overhead) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results["models"].items():
        lines.append(
            f"| {name} | {r['kind']} "
            f"| {r['in_process']['best_items_per_s']:.1f} ({r['in_process']['best_batch_size']}) "
            f"| {r['service_micro_batch']} "
            f"| {r['service_64_single_item_clients_per_s']:.1f} "
            f"| {r['ratio_single_clients_vs_in_process']:.2f}× | {r['service_batched_32_per_s']:.1f} "
            f"| {r['ratio_batched_vs_in_process']:.2f}× | {r['single_request_ms']:.1f} "
            f"({r['single_request_overhead_ms']:+.1f}) |"
        )
    (RESULTS / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
