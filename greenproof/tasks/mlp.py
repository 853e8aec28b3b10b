"""``mlp``: a multi-layer perceptron classifier (e.g. on ``builtin://digits``)."""

from __future__ import annotations

import math

from pydantic import Field
from torch import nn

from greenproof.data import ClassificationData, Dataset
from greenproof.tasks.base import ClassifierTask, FamilyConfig


class MLPConfig(FamilyConfig):
    hidden: int = Field(128, ge=1, le=1 << 20)
    depth: int = Field(2, ge=1, le=64)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class MLPTask(ClassifierTask):
    name = "mlp"
    Config = MLPConfig

    def build(self, cfg: MLPConfig, data: Dataset) -> nn.Module:
        assert isinstance(data, ClassificationData)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(data.x.shape[1:])
        for _ in range(cfg.depth):
            layers += [nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = cfg.hidden
        layers.append(nn.Linear(width, data.num_classes))
        return nn.Sequential(*layers)

    def activation_bytes(self, cfg: MLPConfig, data: Dataset, batch_size: int) -> int:
        assert isinstance(data, ClassificationData)
        per_example = math.prod(data.x.shape[1:]) + 4 * cfg.depth * cfg.hidden + data.num_classes
        return 4 * batch_size * per_example
