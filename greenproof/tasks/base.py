"""What a model family provides to the engine."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from greenproof.data import ClassificationData, Dataset, TextData


class FamilyConfig(BaseModel):
    """Base of every family's hyper-parameter model (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Task(ABC):
    """A registered model family: its hyper-parameters, model, batches and loss."""

    name: ClassVar[str]
    Config: ClassVar[type[FamilyConfig]]
    data_kind: ClassVar[str]  # "classification" | "text"

    @abstractmethod
    def build(self, cfg: FamilyConfig, data: Dataset) -> nn.Module:
        """The model, with torch's default (seeded by the caller) initialisation."""

    @abstractmethod
    def num_examples(self, cfg: FamilyConfig, data: Dataset) -> int:
        """How many examples one epoch permutes."""

    @abstractmethod
    def batch(
        self, cfg: FamilyConfig, data: Dataset, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets for example indices ``idx`` (CPU tensors)."""

    @abstractmethod
    def activation_bytes(self, cfg: FamilyConfig, data: Dataset, batch_size: int) -> int:
        """A generous estimate of the activations kept for backward, in bytes."""

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = model(x)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


class ClassifierTask(Task):
    data_kind: ClassVar[str] = "classification"

    def num_examples(self, cfg: FamilyConfig, data: Dataset) -> int:
        return len(data)

    def batch(self, cfg: FamilyConfig, data: Dataset, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert isinstance(data, ClassificationData)
        return data.x[idx], data.y[idx]


class LanguageModelTask(Task):
    data_kind: ClassVar[str] = "text"

    @staticmethod
    def block_size(cfg: FamilyConfig) -> int:
        return int(cfg.block_size)  # type: ignore[attr-defined]

    def num_examples(self, cfg: FamilyConfig, data: Dataset) -> int:
        return len(data) - self.block_size(cfg)

    def batch(self, cfg: FamilyConfig, data: Dataset, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert isinstance(data, TextData)
        offsets = idx[:, None] + torch.arange(self.block_size(cfg) + 1)
        window = data.tokens[offsets].to(torch.int64)
        return window[:, :-1], window[:, 1:]
