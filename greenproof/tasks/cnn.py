"""``cnn``: a small convolutional classifier on images ``[C, H, W]`` (digits, synthetic).

Down-sampling uses a stride-2 convolution rather than max-pooling, whose CUDA
backward has no deterministic implementation.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from greenproof.data import ClassificationData, Dataset
from greenproof.tasks.base import ClassifierTask, FamilyConfig


class CNNConfig(FamilyConfig):
    channels: tuple[int, int] = (16, 32)
    hidden: int = Field(64, ge=1, le=1 << 16)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class CNNTask(ClassifierTask):
    name = "cnn"
    Config = CNNConfig

    def build(self, cfg: CNNConfig, data: Dataset) -> nn.Module:
        assert isinstance(data, ClassificationData)
        if data.x.dim() != 4:
            raise ValueError(f"cnn needs image data [N, C, H, W], got x of shape {tuple(data.x.shape)}")
        c, h, w = data.x.shape[1:]
        c1, c2 = cfg.channels
        return nn.Sequential(
            nn.Conv2d(c, c1, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(c2 * ((h + 1) // 2) * ((w + 1) // 2), cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, data.num_classes),
        )

    def activation_bytes(self, cfg: CNNConfig, data: Dataset, batch_size: int) -> int:
        assert isinstance(data, ClassificationData)
        c, h, w = data.x.shape[1:]
        per_example = c * h * w + 3 * cfg.channels[0] * h * w + 3 * cfg.channels[1] * h * w + 4 * cfg.hidden
        return 4 * batch_size * per_example
