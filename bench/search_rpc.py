"""The Search RPC end to end on a benchmark collection, query embedding excluded (issue #13).

`rpc_probe` starts a real search service (`vitrine.search.server`) on a stored collection and a
*table embedder*: a gRPC EmbedderService in a child process that answers each benchmark query text
with its precomputed vector at once. So the figure is everything a Search costs (gRPC, spelling
check, keyword, tag and dense candidates from the store, fusion, payloads) except running the
text model, which the embedder benchmark measures on its own (bench/results/embedder.json).

    python -m bench.search_rpc embedder <port> <vectors.npy> <texts.json>   (the child)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from vitrine.launcher import free_port, start_service
from vitrine.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc, search_pb2, search_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
TABLE_MODEL = "mpnet"  # the name search asks for; the vectors are the benchmark's own


class TableEmbedder(embedder_pb2_grpc.EmbedderServiceServicer):
    """Known texts get their vector; any other text a stable pseudo-random unit vector."""

    def __init__(self, vectors: np.ndarray, texts: Sequence[str]) -> None:
        self.dim = int(vectors.shape[1])
        self.table = {text: vectors[i] for i, text in enumerate(texts)}

    def _vector(self, text: str) -> np.ndarray:
        if text in self.table:
            return self.table[text]
        rng = np.random.default_rng(abs(hash(text)) % 2**32)
        v = rng.standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def EmbedTexts(self, request: embedder_pb2.EmbedTextsRequest, context: grpc.ServicerContext):
        return embedder_pb2.EmbedTextsResponse(
            vectors=[common_pb2.Vector(values=self._vector(t).tolist()) for t in request.texts],
            model=request.model,
            dimension=self.dim,
        )

    def ListModels(self, request: embedder_pb2.ListModelsRequest, context: grpc.ServicerContext):
        info = embedder_pb2.ModelInfo(
            name=TABLE_MODEL, modalities=[embedder_pb2.MODALITY_TEXT], dimension=self.dim, device="table"
        )
        return embedder_pb2.ListModelsResponse(models=[info], text_to_image_available=False)


def serve_table(port: int, vectors_file: str, texts_file: str) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    embedder_pb2_grpc.add_EmbedderServiceServicer_to_server(
        TableEmbedder(np.load(vectors_file), json.loads(Path(texts_file).read_text())), server
    )
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def _percentiles(latencies_ms: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(latencies_ms, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies_ms, 99)), 2),
        "mean_ms": round(float(np.mean(latencies_ms)), 2),
    }


def rpc_probe(
    data_dir: Path, collection: str, vectors: np.ndarray, texts: list[str], passes: int = 2
) -> dict[str, Any]:
    """Search RPC latencies over the benchmark queries (one at a time, page of 12), with the
    service's default fusion and with the dense text signal alone; the table embedder's own
    round trip is measured too, so it can be subtracted."""
    work = Path(tempfile.mkdtemp(prefix="vitrine-bench-rpc-"))
    files = ("vectors.npy", "texts.json")
    np.save(work / files[0], vectors)
    (work / files[1]).write_text(json.dumps(texts))
    port = free_port()
    table = subprocess.Popen(
        [sys.executable, "-m", "bench.search_rpc", "embedder", str(port), *(str(work / f) for f in files)],
        cwd=ROOT,
    )
    env = {
        **os.environ,
        "VITRINE_SEARCH_DATA_DIR": str(data_dir),
        "VITRINE_SEARCH_COLLECTION": collection,
        "VITRINE_SEARCH_EMBEDDER_ADDRESS": f"127.0.0.1:{port}",
        "VITRINE_SEARCH_TEXT_MODEL": TABLE_MODEL,
        "VITRINE_SEARCH_INDEX_MIN_NEW_OBJECTS": "0",  # the benchmark built the index already
        "VITRINE_SEARCH_LOG_LEVEL": "WARNING",
    }
    service = start_service("search", work / "logs", env)
    try:
        service.wait_serving(300)
        channel = grpc.insecure_channel(service.address)
        stub = search_pb2_grpc.SearchServiceStub(channel)
        embedder = embedder_pb2_grpc.EmbedderServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        modes = {"fused (default weights)": {}, "text signal alone": {"keyword": 0.0, "tags": 0.0}}
        results: dict[str, Any] = {}
        for name, weights in modes.items():
            for text in texts[:10]:  # warm-up
                stub.Search(search_pb2.SearchRequest(query=text, signal_weights=weights), timeout=60)
            latencies, hits = [], []
            for _ in range(passes):
                for text in texts:
                    start = time.perf_counter()
                    answer = stub.Search(search_pb2.SearchRequest(query=text, signal_weights=weights), timeout=60)
                    latencies.append((time.perf_counter() - start) * 1e3)
                    hits.append(len(answer.hits))
            results[name] = {**_percentiles(latencies), "mean_hits": round(float(np.mean(hits)), 1)}
        table_ms = []
        for text in texts:
            start = time.perf_counter()
            embedder.EmbedTexts(embedder_pb2.EmbedTextsRequest(model=TABLE_MODEL, texts=[text]), timeout=30)
            table_ms.append((time.perf_counter() - start) * 1e3)
        results["table embedder round trip (included above)"] = _percentiles(table_ms)
        results["queries"] = len(texts) * passes
        return results
    finally:
        service.stop()
        table.kill()
        table.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["embedder"] and len(sys.argv) == 5:
        serve_table(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(__doc__)
