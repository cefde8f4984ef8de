"""Text and image embeddings for training and evaluation, cached by content.

MPNet embeds about 50 Tate records a second on two CPU cores, so nothing is embedded twice: each
vector is stored under a hash of (model, text) in a small SQLite file (WAL mode, safe to share
between runs and to interrupt). Encoders are either the embedder model in-process (training
from the command line) or the embedder service (the running system); both give the same
normalised vectors. Images (and the tag names they are matched against) go through the
embedder service's image model (CLIP), which is the only place that decodes untrusted images.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.common.objects import object_text
from vitrine.v1 import common_pb2

# A function that embeds a batch of texts into unit-length float32 rows.
Encode = Callable[[list[str]], np.ndarray]
# The same for images.
EncodeImages = Callable[[list[common_pb2.Image]], np.ndarray]


@dataclass
class Encoders:
    """What a model version is embedded with: its text model and, optionally, an image model
    with a text tower in the same space (CLIP): images of objects, and tag names to match."""

    text: Encode
    image_model: str = ""
    image: EncodeImages | None = None
    image_text: Encode | None = None


DEFAULT_CACHE = Path("~/.cache/vitrine/embeddings.sqlite3").expanduser()


def text_key(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\0{text}".encode()).hexdigest()


def image_key(model: str, image: common_pb2.Image) -> str:
    source = image.data if image.WhichOneof("source") == "data" else f"uri:{image.uri}".encode()
    return hashlib.sha256(f"{model}\0image\0".encode() + source).hexdigest()


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
    items: Sequence[Any],
    model: str,
    encode: Callable[[list[Any]], np.ndarray],
    cache: EmbeddingCache | None,
    batch_size: int = 64,
    progress: str | None = None,
    key: Callable[[str, Any], str] = text_key,
) -> np.ndarray:
    """Embed `items` (texts by default; images with `key=image_key`), one row each in the same
    order, computing only those the cache lacks. Texts are embedded longest first so that
    batches pad little; results are saved batch by batch, so an interrupted run loses at most
    one batch."""
    keys = [key(model, item) for item in items]
    known = cache.get_many(sorted(set(keys))) if cache else {}
    todo = sorted(
        {k: item for k, item in zip(keys, items, strict=True) if k not in known}.items(),
        key=lambda kv: -len(kv[1]) if isinstance(kv[1], str) else 0,
    )
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=progress, unit="item")
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        vectors = encode([item for _, item in batch])
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
    stub = _embedder_stub(address)

    def encode(texts: list[str]) -> np.ndarray:
        answer = stub.EmbedTexts(_embedder_pb2().EmbedTextsRequest(model=model, texts=texts), timeout=timeout_s)
        return np.asarray([v.values for v in answer.vectors], dtype=np.float32)

    return encode


def service_image_encoder(model: str, address: str, timeout_s: float = 120.0) -> EncodeImages:
    """The embedder service's image model (it decodes and checks the images)."""
    stub = _embedder_stub(address)

    def encode(images: list[common_pb2.Image]) -> np.ndarray:
        answer = stub.EmbedImages(_embedder_pb2().EmbedImagesRequest(model=model, images=images), timeout=timeout_s)
        return np.asarray([v.values for v in answer.vectors], dtype=np.float32)

    return encode


def _embedder_pb2() -> Any:
    from vitrine.v1 import embedder_pb2

    return embedder_pb2


def _embedder_stub(address: str) -> Any:
    """A blocking stub (training runs outside an event loop), balanced over every embedder pod
    like the services' own channels."""
    import grpc

    from vitrine.common.channels import channel_options
    from vitrine.v1 import embedder_pb2_grpc

    return embedder_pb2_grpc.EmbedderServiceStub(grpc.insecure_channel(address, options=channel_options(64)))


@dataclass
class ObjectVectors:
    """A batch of objects embedded: text rows (zero for objects without text) and, when the
    version has an image model, image rows (zero where the object has no image)."""

    text: np.ndarray
    image: np.ndarray | None = None
    has_image: np.ndarray | None = None


@dataclass
class ToEmbed:
    """What a batch of objects needs embedded: the texts of those with text, the images of
    those with an image (when images are read at all), and where each goes."""

    size: int
    text_rows: list[int]
    texts: list[str]
    image_rows: list[int] | None
    images: list[common_pb2.Image]

    @classmethod
    def plan(
        cls,
        objects: Sequence[common_pb2.CollectionObject],
        read_images: bool,
        have_text: Container[int] = (),
    ) -> ToEmbed:
        """`have_text`: rows whose text vectors the caller already has (not embedded again)."""
        texts = [object_text(o) for o in objects]
        text_rows = [i for i, t in enumerate(texts) if t and i not in have_text]
        image_rows = [i for i, o in enumerate(objects) if o.image.WhichOneof("source")] if read_images else None
        images = [objects[i].image for i in image_rows or []]
        return cls(len(objects), text_rows, [texts[i] for i in text_rows], image_rows, images)

    def assemble(
        self, dimension: int, text_vectors: np.ndarray | None, image_vectors: np.ndarray | None
    ) -> ObjectVectors:
        text = np.zeros((self.size, dimension), dtype=np.float32)
        if self.text_rows:
            text[self.text_rows] = text_vectors
        if self.image_rows is None:
            return ObjectVectors(text)
        has_image = np.zeros(self.size, dtype=bool)
        has_image[self.image_rows] = True
        if not self.image_rows or image_vectors is None:
            return ObjectVectors(text, None, has_image)
        image = np.zeros((self.size, image_vectors.shape[1]), dtype=np.float32)
        image[self.image_rows] = image_vectors
        return ObjectVectors(text, image, has_image)


def embed_objects(
    objects: Sequence[common_pb2.CollectionObject],
    text_model: str,
    dimension: int,
    encoders: Encoders,
    cache: EmbeddingCache | None,
    progress: bool = True,
) -> ObjectVectors:
    todo = ToEmbed.plan(objects, read_images=encoders.image is not None)
    label = f"{text_model}: objects" if progress else None
    text = embed_cached(todo.texts, text_model, encoders.text, cache, progress=label)
    image = None
    if todo.images and encoders.image is not None:
        label = f"{encoders.image_model}: images" if progress else None
        image = embed_cached(todo.images, encoders.image_model, encoders.image, cache, 32, label, image_key)
    return todo.assemble(dimension, text, image)
