"""The interface every embedding model implements, and device/dtype selection.

A model is loaded once (`load`), then called by the micro-batcher with whole batches. Image
models split work in two: `prepare_image` (decode-side preprocessing, run per item in a thread
pool, with PIL and numpy only: see `images.to_pixels`) and `embed_images` (one forward pass over
a stacked batch), so the model thread only runs the network and is the only thread using torch.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

TEXT = "text"
IMAGE = "image"


@dataclasses.dataclass(frozen=True)
class Placement:
    device: str  # "cpu", "cuda", "cuda:1"
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def choose_placement(device: str = "auto", dtype: str = "auto") -> Placement:
    """CUDA with half precision when a GPU is present, CPU float32 otherwise; both overridable."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    if dtype == "auto":
        chosen = torch.float16 if device.startswith("cuda") else torch.float32
    elif dtype in ("float32", "float16", "bfloat16"):
        chosen = getattr(torch, dtype)
    else:
        raise ValueError(f"dtype {dtype!r} is not supported: use auto, float32, float16 or bfloat16")
    return Placement(device, chosen)


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class EmbeddingModel(abc.ABC):
    """One loaded model. Subclasses set the class attributes and implement the hooks they support."""

    name: str
    modalities: tuple[str, ...]
    dimension: int = 0
    source: str = ""
    test_model: bool = False  # random or test weights: never behind a demo or a reported figure
    backend: str = "torch"  # what runs the network (runtimes.py): torch, onnx or openvino
    # Largest micro-batch worth forming on each kind of device: past it a forward pass gains no
    # throughput (measured in-process by `make bench`, bench/results/embedder.json).
    cpu_batch_size: int = 32
    gpu_batch_size: int = 128

    def __init__(self, placement: Placement) -> None:
        self.placement = placement
        self.load_seconds = 0.0

    @property
    def batch_size(self) -> int:
        return self.cpu_batch_size if self.placement.device == "cpu" else self.gpu_batch_size

    def load(self) -> None:
        start = time.perf_counter()
        self._load()
        self.load_seconds = time.perf_counter() - start

    @abc.abstractmethod
    def _load(self) -> None: ...

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError(f"{self.name} does not embed texts")

    def prepare_image(self, image: Image.Image) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} does not embed images")

    def embed_images(self, batch: list[torch.Tensor]) -> np.ndarray:
        raise NotImplementedError(f"{self.name} does not embed images")

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "modalities": self.modalities,
            "dimension": self.dimension,
            "device": self.placement.device,
            "dtype": self.placement.dtype_name,
            "backend": self.backend,
            "source": self.source,
            "test_model": self.test_model,
            "load_seconds": self.load_seconds,
        }
