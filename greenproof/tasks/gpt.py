"""``gpt``: a small decoder-only transformer (nanoGPT-style) on byte-level text."""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator
from torch import nn

from greenproof.data import Dataset, TextData
from greenproof.tasks.base import FamilyConfig, LanguageModelTask


class GPTConfig(FamilyConfig):
    block_size: int = Field(64, ge=2, le=1 << 16)
    n_layer: int = Field(2, ge=1, le=256)
    n_head: int = Field(2, ge=1, le=256)
    n_embd: int = Field(64, ge=1, le=1 << 16)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _heads_divide(self) -> GPTConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        return self


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.attn_dropout = nn.Dropout(cfg.dropout)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        mask = torch.tril(torch.ones(cfg.block_size, cfg.block_size, dtype=torch.bool))
        self.register_buffer("mask", mask.view(1, 1, cfg.block_size, cfg.block_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))
        att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf")).softmax(dim=-1)
        y = self.attn_dropout(att) @ v
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd),
            nn.GELU(),
            nn.Linear(4 * cfg.n_embd, cfg.n_embd),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token + position embeddings, ``n_layer`` pre-norm blocks, an untied head.

    The head is not tied to the embedding so that the state is a dict of
    distinct tensors (safetensors refuses shared storage).
    """

    def __init__(self, cfg: GPTConfig, vocab_size: int):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, vocab_size, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class GPTTask(LanguageModelTask):
    name = "gpt"
    Config = GPTConfig

    def build(self, cfg: GPTConfig, data: Dataset) -> nn.Module:
        assert isinstance(data, TextData)
        if len(data) <= cfg.block_size:
            raise ValueError(f"text of {len(data)} tokens is too short for block_size {cfg.block_size}")
        return GPT(cfg, data.vocab_size)

    def activation_bytes(self, cfg: GPTConfig, data: Dataset, batch_size: int) -> int:
        assert isinstance(data, TextData)
        T, C = cfg.block_size, cfg.n_embd
        per_layer = 16 * T * C + 3 * cfg.n_head * T * T
        return 4 * batch_size * (cfg.n_layer * per_layer + 2 * T * data.vocab_size)
