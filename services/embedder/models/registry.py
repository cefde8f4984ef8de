"""Builds the models named in the settings. The one place that knows every model family."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from vitrine.embedder.models.base import EmbeddingModel, choose_placement
from vitrine.embedder.settings import EmbedderSettings

log = logging.getLogger("vitrine.embedder.models")

KNOWN_MODELS = ("mpnet", "minilm", "efficientnet-lite0", "clip")


def build_models(settings: EmbedderSettings) -> dict[str, EmbeddingModel]:
    """Create (not yet load) each model the settings name."""
    unknown = [m for m in settings.model_names if m not in KNOWN_MODELS]
    if unknown:
        raise ValueError(f"unknown models {unknown}: choose from {', '.join(KNOWN_MODELS)}")
    backend_of = settings.backend_of
    text_models = ("mpnet", "minilm")
    misplaced = [m for m in backend_of if m not in text_models or m not in settings.model_names]
    if misplaced:
        raise ValueError(f"backends names {misplaced}: only loaded text models ({', '.join(text_models)}) take one")
    placement = choose_placement(settings.device, settings.dtype)
    model_dir = Path(settings.model_dir).expanduser()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    models: dict[str, EmbeddingModel] = {}
    for name in settings.model_names:
        if name == "mpnet":
            from vitrine.embedder.models.sentence_text import mpnet

            models[name] = mpnet(model_dir, placement, backend_of.get(name, "torch"), settings.torch_threads)
        elif name == "minilm":
            from vitrine.embedder.models.sentence_text import minilm

            models[name] = minilm(
                placement, backend_of.get(name, "torch"), model_dir / "exported", settings.torch_threads
            )
        elif name == "efficientnet-lite0":
            from vitrine.embedder.models.efficientnet import EfficientNetLite0

            models[name] = EfficientNetLite0(placement)
        elif name == "clip":
            if not settings.clip_model:
                raise ValueError("model 'clip' needs VITRINE_EMBEDDER_CLIP_MODEL (an open_clip architecture name)")
            from vitrine.embedder.models.clip import ClipModel

            models[name] = ClipModel(settings.clip_model, settings.clip_pretrained, placement, settings.clip_config)
    if settings.clip_model and "clip" not in models:
        from vitrine.embedder.models.clip import ClipModel

        models["clip"] = ClipModel(settings.clip_model, settings.clip_pretrained, placement, settings.clip_config)
    return models


def load_all(models: dict[str, EmbeddingModel]) -> None:
    for model in models.values():
        model.load()
        log.info("model loaded", extra={f"model_{k}": v for k, v in model.info().items()})
