"""Text embeddings for training and evaluation, cached by content.

MPNet embeds about 50 Tate records a second on two CPU cores, so nothing is embedded twice: each
vector is stored under a hash of (model, text) in a small SQLite file (WAL mode, safe to share
between runs and to interrupt). Encoders are either the embedder model in-process (training
from the command line) or the embedder service (the running system); both give the same
normalised vectors.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

# A function that embeds a batch of texts into unit-length float32 rows.
Encode = Callable[[list[str]], np.ndarray]

DEFAULT_CACHE = Path("~/.cache/vitrine/embeddings.sqlite3").expanduser()


def text_key(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\0{text}".encode()).hexdigest()


class EmbeddingCache:
    """(model, text) -> vector, in SQLite. Vectors are float32 blobs."""

    def __init__(self, path: str | Path = DEFAULT_CACHE) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, blob in self.db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)",
                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )

    def close(self) -> None:
        self.db.close()


def embed_cached(
    texts: Sequence[str],
    model: str,
    encode: Encode,
    cache: EmbeddingCache | None,
    batch_size: int = 64,
    progress: str | None = None,
) -> np.ndarray:
    """Embed `texts` (one row each, same order), computing only those the cache lacks. Texts
    are embedded longest first so that batches pad little; results are saved batch by batch,
    so an interrupted run loses at most one batch."""
    keys = [text_key(model, t) for t in texts]
    known = cache.get_many(sorted(set(keys))) if cache else {}
    todo = sorted(
        {k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items(), key=lambda kv: -len(kv[1])
    )
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=progress, unit="text")
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        vectors = encode([t for _, t in batch])
        fresh = {k: v for (k, _), v in zip(batch, vectors, strict=True)}
        known.update(fresh)
        if cache:
            cache.put_many(fresh)
        if bar:
            bar.update(len(batch))
    if bar:
        bar.close()
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([known[k] for k in keys]).astype(np.float32, copy=False)


def local_encoder(model: str, model_dir: str | Path | None = None, threads: int = 0) -> Encode:
    """The embedder's own model class, loaded in this process."""
    import torch

    from vitrine.embedder.models.base import choose_placement
    from vitrine.embedder.models.sentence_text import minilm, mpnet
    from vitrine.embedder.settings import EmbedderSettings

    if threads:
        torch.set_num_threads(threads)
    placement = choose_placement("auto", "auto")
    if model == "mpnet":
        directory = Path(model_dir or EmbedderSettings().model_dir).expanduser()
        loaded = mpnet(directory, placement)
    elif model == "minilm":
        loaded = minilm(placement)
    else:
        raise ValueError(f"no local text model {model!r}: choose mpnet or minilm")
    loaded.load()
    return loaded.embed_texts


def service_encoder(model: str, address: str, timeout_s: float = 120.0) -> Encode:
    """The embedder service's model, over gRPC (what the running system uses)."""
    import grpc

    from vitrine.v1 import embedder_pb2, embedder_pb2_grpc

    channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    stub = embedder_pb2_grpc.EmbedderServiceStub(channel)

    def encode(texts: list[str]) -> np.ndarray:
        answer = stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model=model, texts=texts), timeout=timeout_s)
        return np.asarray([v.values for v in answer.vectors], dtype=np.float32)

    return encode
