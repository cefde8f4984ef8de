"""Model runtimes other than PyTorch for the transformer of a text model: ONNX Runtime and OpenVINO.

The model (tokeniser, pooling, normalisation) stays in sentence_text.py; a runtime only runs the
transformer graph, input ids and attention mask in, last hidden state out. The graph is exported
once from the PyTorch weights with torch.onnx and kept beside the other exported models
(`<model_dir>/exported/<name>-<weights fingerprint>/model.onnx`, written atomically), so a restart loads it in seconds.
OpenVINO compiles the same ONNX file for the CPU it runs on.

sentence-transformers' own ONNX and OpenVINO backends would do the same through optimum, but
optimum-onnx and optimum-intel pin transformers below the version this project is locked to.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("vitrine.embedder.runtimes")

TORCH = "torch"
ONNX = "onnx"
OPENVINO = "openvino"
BACKENDS = (TORCH, ONNX, OPENVINO)

# input ids, attention mask (int64, batch × tokens) -> last hidden state (batch × tokens × width)
RunGraph = Callable[[np.ndarray, np.ndarray], np.ndarray]


class _HiddenStates(torch.nn.Module):
    def __init__(self, transformer: torch.nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def weights_fingerprint(folder: Path) -> str:
    """Changes when the model folder's weights change, so a stale export is never reused."""
    digest = hashlib.sha256()
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        stat = weights.stat()
        digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def export_onnx(transformer: torch.nn.Module, sample: dict[str, torch.Tensor], target: Path) -> Path:
    """The transformer as an ONNX graph with dynamic batch and sequence axes, at `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".partial-{os.getpid()}-{target.name}")
    dynamic = {0: "batch", 1: "tokens"}
    with torch.inference_mode():
        torch.onnx.export(
            _HiddenStates(transformer.eval()),
            (sample["input_ids"], sample["attention_mask"]),
            str(partial),
            input_names=["input_ids", "attention_mask"],
            output_names=["hidden"],
            dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "hidden": dynamic},
            opset_version=17,
            dynamo=False,
        )
    partial.replace(target)  # a killed export leaves a .partial- file, never a broken model.onnx
    return target


def onnx_session(path: Path, threads: int) -> RunGraph:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]

    return run


def openvino_session(path: Path, threads: int, precision: str) -> RunGraph:
    """`precision` "bf16" runs the matrix products in bfloat16 where the CPU has the instructions
    (AVX-512 BF16, AMX); OpenVINO falls back to f32 on CPUs without them."""
    import openvino as ov

    config: dict[str, str] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "THROUGHPUT"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        answer = request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
        return np.asarray(answer[compiled.output(0)])

    return run


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean pooling: the average of the real (unpadded) tokens' states."""
    mask = attention_mask[..., None].astype(np.float32)
    return (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
