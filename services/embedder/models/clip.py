"""CLIP through open_clip: text and images in one space (text-to-image search).

Loaded by architecture name plus either an open_clip pretrained tag (weights from the model hub
cache) or a local checkpoint file, which is what a cluster mounts. With neither, the weights are
random: such a model is marked `test_model` and exists only so the loading path can be tested
with a tiny architecture (see `clip_config`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vitrine.embedder.models.base import IMAGE, TEXT, EmbeddingModel, Placement, normalise
from vitrine.embedder.models.images import to_pixels


class ClipModel(EmbeddingModel):
    name = "clip"
    modalities = (TEXT, IMAGE)

    def __init__(self, architecture: str, pretrained: str, placement: Placement, config_path: str = "") -> None:
        super().__init__(placement)
        self.architecture = architecture
        self.pretrained = pretrained
        self.config_path = config_path
        self.test_model = not pretrained
        self.source = f"open_clip:{architecture}" + (f"@{pretrained}" if pretrained else " (random weights)")

    def _load(self) -> None:
        # Check the operator's paths before the slow import; open_clip ignores a missing config file.
        if self.config_path and not Path(self.config_path).is_file():
            raise FileNotFoundError(f"clip: config file {self.config_path} does not exist")
        looks_like_file = "/" in self.pretrained or self.pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
        if looks_like_file and not Path(self.pretrained).is_file():
            raise FileNotFoundError(f"clip: checkpoint file {self.pretrained} does not exist")
        import open_clip

        if self.config_path:
            open_clip.add_model_config(Path(self.config_path))
        precision = "fp16" if self.placement.dtype == torch.float16 else "fp32"
        # Without weights the initialisation is seeded: a restarted embedder gives the same vectors
        # as before (tests stop and start it under a tagger trained on its vectors).
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.architecture,
                pretrained=self.pretrained or None,
                precision=precision,
                device=self.placement.device,
            )
        self.model = model.eval()
        # open_clip's preprocessing minus its two tensor steps, which `to_pixels` does in numpy
        # (see there why the decode threads must not run torch arithmetic).
        from torchvision import transforms

        steps = preprocess.transforms
        normalize = next(t for t in steps if isinstance(t, transforms.Normalize))
        self.mean, self.std = tuple(normalize.mean), tuple(normalize.std)
        self.resize = transforms.Compose([t for t in steps if not _is_tensor_step(t)])
        self.tokenizer = open_clip.get_tokenizer(self.architecture)
        with torch.inference_mode():
            probe = self.model.encode_text(self.tokenizer(["probe"]).to(self.placement.device))
        self.dimension = int(probe.shape[-1])

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts).to(self.placement.device)
        with torch.inference_mode():
            features = self.model.encode_text(tokens)
        return normalise(features.float().cpu().numpy())

    def prepare_image(self, image: Image.Image) -> torch.Tensor:
        return to_pixels(self.resize(image), self.mean, self.std)

    def embed_images(self, batch: list[torch.Tensor]) -> np.ndarray:
        pixels = torch.stack(batch).to(self.placement.device, dtype=self.placement.dtype)
        with torch.inference_mode():
            features = self.model.encode_image(pixels)
        return normalise(features.float().cpu().numpy())


def _is_tensor_step(step: object) -> bool:
    """ToTensor / Normalize (torchvision's or open_clip's MaybeToTensor): the steps on tensors."""
    return type(step).__name__ in ("ToTensor", "MaybeToTensor", "Normalize")
