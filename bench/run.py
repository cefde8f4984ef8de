"""Embedder benchmark: the service against the same model called in-process, in one run.

For each model (texts: MiniLM, MPNet; images: EfficientNet-Lite0 and CLIP on the demo's
painting JPEGs, decoded and prepared in-process too, as the service must): in-process throughput
at the best batch size, service throughput with many single-item callers (micro-batching at work)
and with batched requests, and the latency one single-item request adds over calling the model
directly. Each model gets an embedder of its own, serving only it, and the two sides are measured
in alternating rounds (three by default), each figure the median of its rounds. Results:
bench/results/embedder.json and a markdown summary. Numbers are only comparable within one run on
one machine.

CLIP's weights cannot be had here, so its two architectures (the tests' tiny one and ViT-B-32) run
with random weights. That is enough for speed, which depends on the architecture and not on the
weight values; these rows are marked "speed only" and no quality figure ever comes from them.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import torch

from vitrine.embedder.models.base import EmbeddingModel, Placement, choose_placement
from vitrine.embedder.models.clip import ClipModel
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
TINY_CLIP_CONFIG = ROOT / "tests" / "fixtures" / "tiny_clip.json"
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


@dataclass
class Subject:
    """One measured model: how to build it in-process and how to start an embedder serving it."""

    factory: Callable[[Placement], EmbeddingModel]
    kind: str  # "texts" or "images"
    service_model: str  # the name the service knows it by
    service_env: dict[str, str] = field(default_factory=dict)
    slow: bool = False  # a quarter of the items: about the same minutes as MiniLM
    speed_only: bool = False  # random weights: a speed figure, never a quality one


def subjects(model_dir: Path) -> dict[str, Subject]:
    def clip(architecture: str, config: Path | None) -> Subject:
        env = {"VITRINE_EMBEDDER_CLIP_MODEL": architecture, "VITRINE_EMBEDDER_CLIP_CONFIG": str(config or "")}
        return Subject(lambda p: ClipModel(architecture, "", p, str(config or "")), "images", "clip", env, True, True)

    return {
        "minilm": Subject(minilm, "texts", "minilm"),
        "mpnet": Subject(
            lambda p: mpnet(model_dir, p), "texts", "mpnet", {"VITRINE_EMBEDDER_MODEL_DIR": str(model_dir)}, True
        ),
        **{
            f"mpnet-{backend}{suffix}": Subject(
                lambda p, b=backend, d=dtype: mpnet(model_dir, choose_placement("cpu", d), b),
                "texts",
                "mpnet",
                {
                    "VITRINE_EMBEDDER_MODEL_DIR": str(model_dir),
                    "VITRINE_EMBEDDER_BACKENDS": f"mpnet={backend}",
                    "VITRINE_EMBEDDER_DTYPE": dtype,
                },
                True,
            )
            for backend, dtype, suffix in [
                ("onnx", "float32", ""),
                ("openvino", "float32", ""),
                ("openvino", "bfloat16", "-bf16"),
            ]
        },
        "efficientnet-lite0": Subject(EfficientNetLite0, "images", "efficientnet-lite0", slow=True),
        "clip-tiny": clip("tiny_clip", TINY_CLIP_CONFIG),
        "clip-vit-b-32": clip("ViT-B-32", None),
    }


def embed_in_process(model: EmbeddingModel, items: list[Any]) -> None:
    """What the service does with the items of one batch, called directly."""
    if isinstance(items[0], bytes):
        prepared = [model.prepare_image(decode_image(b, MAX_IMAGE_BYTES, LIMITS.max_image_pixels)) for b in items]
        model.embed_images(prepared)
    else:
        model.embed_texts(items)


def in_process(model: EmbeddingModel, items: list[Any], batch_sizes: list[int]) -> dict[str, Any]:
    """Items a second at each batch size, and one item's median milliseconds."""
    n = len(items)
    embed_in_process(model, items[:8])  # warm-up
    rates = {}
    for batch in batch_sizes:
        start = time.perf_counter()
        for i in range(0, n, batch):
            embed_in_process(model, items[i : i + batch])
        rates[str(batch)] = n / (time.perf_counter() - start)
    single = []
    for item in items[:20]:
        start = time.perf_counter()
        embed_in_process(model, [item])
        single.append(time.perf_counter() - start)
    return {"per_batch_size": rates, "single_ms": statistics.median(single) * 1e3}


def _request(model: str, items: list[Any]) -> tuple[str, Any]:
    """The RPC name and request that embed these items (texts or image bytes)."""
    if items and isinstance(items[0], bytes):
        return "EmbedImages", embedder_pb2.EmbedImagesRequest(
            model=model, images=[common_pb2.Image(data=b) for b in items]
        )
    return "EmbedTexts", embedder_pb2.EmbedTextsRequest(model=model, texts=items)


async def service(
    address: str, model: str, items: list[Any], concurrency: int, per_request: int
) -> tuple[float, float]:
    """Items a second through the service, and the CPU cores this calling process used meanwhile
    (the clients share the machine's cores with the service on loopback)."""
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

        start, cpu_start = time.perf_counter(), time.process_time()
        await asyncio.gather(*(call(c) for c in chunks))
        wall = time.perf_counter() - start
        return n / wall, (time.process_time() - cpu_start) / wall


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


def measure(subject: Subject, placement: Placement, n_texts: int, rounds: int) -> dict[str, Any]:
    """The model in-process and an embedder serving only it, measured in alternating rounds;
    each figure is the median of its rounds (this shared machine's speed drifts by tens of
    percent within minutes, and alternating puts both sides under the same drift)."""
    n = n_texts // 4 if subject.slow else n_texts
    items = images(n) if subject.kind == "images" else texts(n)
    model = subject.factory(placement)
    model.load()
    env = {
        **os.environ,
        "VITRINE_EMBEDDER_MODELS": subject.service_model,
        "VITRINE_EMBEDDER_LOG_LEVEL": "WARNING",
        **subject.service_env,
    }
    server = start_service("embedder", RESULTS / "logs", env, cwd=ROOT)
    raw_rounds, single_rounds, batched_rounds, latency_rounds = [], [], [], []
    try:
        server.wait_serving(300)
        address, name = server.address, subject.service_model
        micro_batch = asyncio.run(micro_batch_sizes(address))[name]
        for _ in range(rounds):
            raw_rounds.append(in_process(model, items, [8, 16, 32, 64, 128]))
            single_rounds.append(asyncio.run(service(address, name, items, concurrency=64, per_request=1)))
            batched_rounds.append(asyncio.run(service(address, name, items, concurrency=4, per_request=32))[0])
            latency_rounds.append(asyncio.run(single_latency(address, name, items)))
    finally:
        server.stop()
    batch_sizes = raw_rounds[0]["per_batch_size"]
    per_batch = {b: statistics.median(r["per_batch_size"][b] for r in raw_rounds) for b in batch_sizes}
    best = max(per_batch.values())
    single_ms = statistics.median(r["single_ms"] for r in raw_rounds)
    many_single = statistics.median(rate for rate, _ in single_rounds)
    batched = statistics.median(batched_rounds)
    latency = statistics.median(latency_rounds)
    return {
        "items": n,
        "rounds": rounds,
        "kind": subject.kind,
        "weights": "random (speed only)" if subject.speed_only else "real",
        "in_process": {
            "per_batch_size": per_batch,
            "best_items_per_s": best,
            "best_batch_size": int(max(per_batch, key=per_batch.__getitem__)),
            "single_ms": single_ms,
            "rounds": raw_rounds,
        },
        "service_micro_batch": micro_batch,
        "service_64_single_item_clients_per_s": many_single,
        "cpu_cores_used_by_the_64_clients": statistics.median(cores for _, cores in single_rounds),
        "service_batched_32_per_s": batched,
        "service_rounds": {"single_clients": [r for r, _ in single_rounds], "batched": batched_rounds},
        "ratio_single_clients_vs_in_process": many_single / best,
        "ratio_batched_vs_in_process": batched / best,
        "single_request_ms": latency,
        "single_request_overhead_ms": latency - single_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--models",
        default="minilm,mpnet,mpnet-onnx,mpnet-openvino,mpnet-openvino-bf16,efficientnet-lite0,clip-tiny,clip-vit-b-32",
    )
    parser.add_argument("--texts", type=int, default=512, help="items per measurement (slow models use a quarter)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating in-process / service rounds (medians)")
    args = parser.parse_args()
    placement = choose_placement()
    model_dir = Path(os.environ.get("VITRINE_EMBEDDER_MODEL_DIR", Path.home() / ".cache/vitrine/models"))
    known = subjects(model_dir)
    results: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "device": placement.device,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "models": {},
    }
    for name in args.models.split(","):
        results["models"][name] = measure(known[name], placement, args.texts, args.rounds)
        print(name, json.dumps(results["models"][name], indent=1), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "embedder.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Embedder benchmark (service vs in-process, same run, medians of alternating rounds)",
        "",
        f"Machine: {results['machine']}",
        "",
        "| model | items | weights | in-process best /s (batch) | service micro-batch "
        "| service, 64 single-item clients (their CPU cores) "
        "| ratio | service, batches of 32 | ratio | single request ms (overhead) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results["models"].items():
        lines.append(
            f"| {name} | {r['kind']} | {r['weights']} "
            f"| {r['in_process']['best_items_per_s']:.1f} ({r['in_process']['best_batch_size']}) "
            f"| {r['service_micro_batch']} "
            f"| {r['service_64_single_item_clients_per_s']:.1f} ({r['cpu_cores_used_by_the_64_clients']:.2f}) "
            f"| {r['ratio_single_clients_vs_in_process']:.2f}× | {r['service_batched_32_per_s']:.1f} "
            f"| {r['ratio_batched_vs_in_process']:.2f}× | {r['single_request_ms']:.1f} "
            f"({r['single_request_overhead_ms']:+.1f}) |"
        )
    (RESULTS / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
