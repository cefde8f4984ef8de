"""Every setting of the embedder, read once at start (flags > VITRINE_EMBEDDER_* env > defaults)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vitrine.common.settings import ServerSettings, setting

ENV_PREFIX = "VITRINE_EMBEDDER_"
DEFAULT_MODEL_DIR = str(Path.home() / ".cache" / "vitrine" / "models")


@dataclasses.dataclass(frozen=True)
class EmbedderSettings(ServerSettings):
    port: int = setting(50051, "gRPC port.")
    metrics_port: int = setting(9101, "Port of the Prometheus /metrics HTTP endpoint (0 disables it).")
    models: str = setting(
        "mpnet,efficientnet-lite0",
        "Models to load, comma-separated: mpnet (768-d text), minilm (384-d text, small, for tests), "
        "efficientnet-lite0 (1360-d image features + ImageNet labels), clip (needs clip_model).",
    )
    model_dir: str = setting(
        DEFAULT_MODEL_DIR, "Folder `make models` fills; mpnet is read from <model_dir>/all-mpnet-base-v2."
    )
    clip_model: str = setting(
        "", "open_clip architecture name (e.g. ViT-B-32). Empty: no CLIP, no text-to-image search."
    )
    clip_pretrained: str = setting(
        "",
        "open_clip pretrained tag (e.g. laion2b_s34b_b79k, weights in the HF cache) or a checkpoint file.",
    )
    clip_config: str = setting("", "Extra open_clip model config JSON to register (custom or test architectures).")
    backends: str = setting(
        "",
        "What runs each text model, comma-separated model=backend: torch, onnx (ONNX Runtime) or openvino, "
        "e.g. mpnet=openvino,minilm=onnx. Models not named run on torch. onnx and openvino run on the CPU "
        "from an ONNX export made once into <model_dir>/exported.",
    )
    device: str = setting("auto", "auto (CUDA when present, else CPU), cpu, cuda or cuda:N.")
    dtype: str = setting(
        "auto",
        "auto (float16 on CUDA, float32 on CPU), float32, float16 or bfloat16 (CPU: openvino runs its matrix "
        "products in bfloat16 where the CPU has AVX-512 BF16 or AMX).",
    )
    torch_threads: int = setting(0, "CPU threads torch may use (0: torch's default, one per core).")
    max_batch_size: int = setting(
        0, "Largest micro-batch handed to a model (0: each model's own, the best measured for its device)."
    )
    max_wait_ms: float = setting(
        5.0, "How long the first item of a micro-batch waits for others (only after a batch of several)."
    )
    max_queue: int = setting(4096, "Items waiting per model; beyond it calls get RESOURCE_EXHAUSTED.")
    max_batch_items: int = setting(256, "Most texts or images in one EmbedTexts / EmbedImages request.")
    max_text_chars: int = setting(8192, "Longest text accepted (characters). Models truncate to their own token limit.")
    max_image_mb: float = setting(20.0, "Largest encoded image accepted, in MiB (bytes or fetched URI).")
    max_image_pixels: int = setting(
        40_000_000, "Largest decoded image (width × height); guards against decompression bombs."
    )
    image_roots: str = setting("", "Comma-separated folders that file-path image URIs may read from (empty: none).")
    fetch_timeout_s: float = setting(10.0, "Timeout for fetching an http(s) image URI.")

    @property
    def model_names(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]

    @property
    def backend_of(self) -> dict[str, str]:
        """model name -> backend, from `backends` (models not named: torch)."""
        chosen: dict[str, str] = {}
        for entry in (e.strip() for e in self.backends.split(",")):
            if not entry:
                continue
            model, sep, backend = (part.strip() for part in entry.partition("="))
            if not sep or not model or not backend:
                raise ValueError(f"backends entry {entry!r}: write model=backend, e.g. mpnet=openvino")
            chosen[model] = backend
        return chosen
