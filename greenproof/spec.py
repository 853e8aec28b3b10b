"""The job spec (docs/protocol.md §3): what to train, on what, for how long, how to replay it.

``spec_hash = keccak256(canonical JSON)``; canonical JSON is
``json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` of the validated spec with every default filled in
(including the model family's defaults), so two files that mean the same job
hash the same.

Precision: ``fp32`` everywhere, ``bf16`` = bf16 autocast on CUDA (parameters
and optimizer state stay fp32). On a CPU device a ``bf16`` spec is *allowed*
and runs in fp32: CPU bf16 autocast is slow and would not match any GPU's bf16
bits anyway. The effective precision is part of the determinism class, so a
CPU replay of a bf16 job is a cross-class replay judged by ``tolerance``.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from eth_utils import keccak
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from greenproof.tasks import TASKS
from greenproof.uri import FetchError, FetchLimits, read_uri

SPEC_VERSION = 1
DEFAULT_SEGMENT_STEPS = 100
"""Default steps per segment: amortises one boundary's hash and durable checkpoint to well
under 1 % of training for the bundled families while keeping a verifier's replay of one
audited segment short (docs/engine.md, "Segment length")."""


SPEC_LIMITS = FetchLimits(max_bytes=1 << 20, deadline_s=30.0, connect_timeout_s=10.0, read_timeout_s=10.0)
"""A spec is a small text: 1 MiB and 30 s are generous, and all a requester's server may take."""


class JobSpecError(ValueError):
    """A job spec that cannot be run as written; the message says what to change."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetRef(_Strict):
    uri: str = Field(min_length=1)
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")

    @field_validator("sha256", mode="before")
    @classmethod
    def _digits_as_text(cls, v: Any) -> Any:
        # YAML reads a hash of digits only as a number: take its original spelling
        return v.text if isinstance(v, _YamlInt) else v

    @field_validator("sha256")
    @classmethod
    def _lower(cls, v: str | None) -> str | None:
        return v.lower() if v else v

    @model_validator(mode="after")
    def _pinned(self) -> DatasetRef:
        if self.sha256 is None and not self.uri.startswith("builtin://"):
            raise ValueError(f"dataset.sha256 is required for non-builtin dataset {self.uri!r}")
        return self


class OptimizerSpec(_Strict):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0, le=10)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)


class ScheduleSpec(_Strict):
    """``lr(t)``: linear warm-up for ``warmup_steps``, then constant, cosine or linear decay
    to ``min_lr_ratio * lr`` at ``total_steps``."""

    name: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)


#: Default cross-class tolerance: 30x the worst honest per-tensor noise that
#: ``bench/tolerance.py`` measured over every CPU class of this machine (6.4e-4,
#: a gpt attention bias), rounded up to one digit; the cheapest cheat it measured
#: (one skipped step) sits at 0.37 (docs/engine.md, "Cross-class tolerance").
DEFAULT_TOLERANCE = 0.02


class Tolerance(_Strict):
    """Cross-class replay: the largest relative L2 distance allowed, per floating tensor of
    the state, between the replayed and the claimed end state (integers must be equal)."""

    rel_l2: float = Field(DEFAULT_TOLERANCE, gt=0, lt=1)


class JobSpec(_Strict):
    version: Literal[1] = SPEC_VERSION
    task: str
    model: dict[str, Any] = Field(default_factory=dict)
    dataset: DatasetRef
    optimizer: OptimizerSpec = OptimizerSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    batch_size: int = Field(ge=1, le=1 << 20)
    total_steps: int = Field(ge=1, le=1 << 31)
    segment_steps: int = Field(DEFAULT_SEGMENT_STEPS, ge=1)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    precision: str = "fp32"
    tolerance: Tolerance = Tolerance()

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        if v not in TASKS:
            raise ValueError(f"unknown task {v!r} (known: {', '.join(sorted(TASKS))})")
        return v

    @field_validator("precision")
    @classmethod
    def _known_precision(cls, v: str) -> str:
        if v not in ("fp32", "bf16"):
            raise ValueError(f"unknown precision {v!r} (known: fp32, bf16)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        if self.total_steps % self.segment_steps:
            raise ValueError(
                f"total_steps ({self.total_steps}) must be a multiple of segment_steps ({self.segment_steps})"
            )
        if self.schedule.warmup_steps > self.total_steps:
            raise ValueError(f"schedule.warmup_steps ({self.schedule.warmup_steps}) exceeds total_steps ({self.total_steps})")
        family = TASKS[self.task]
        try:
            cfg = family.Config.model_validate(self.model)
        except ValidationError as e:
            raise ValueError(f"model hyper-parameters for task {self.task!r}: {_brief(e)}") from None
        # fill the family's defaults in so the canonical JSON (and spec_hash) is unambiguous
        object.__setattr__(self, "model", cfg.model_dump(mode="json"))
        return self

    # ------------------------------------------------------------------ derived

    @property
    def num_segments(self) -> int:
        return self.total_steps // self.segment_steps

    @property
    def family_config(self) -> Any:
        return TASKS[self.task].Config.model_validate(self.model)

    def canonical_json(self) -> bytes:
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")

    def spec_hash(self) -> bytes:
        return keccak(self.canonical_json())

    def to_data_uri(self) -> str:
        return "data:application/json;base64," + base64.b64encode(self.canonical_json()).decode()

    # ------------------------------------------------------------------ machine checks

    def load_data(self):  # -> greenproof.data.Dataset
        """The dataset, fetched and verified against ``dataset.sha256`` (JobSpecError otherwise)."""
        from greenproof.data import DatasetError, load_dataset

        try:
            return load_dataset(self.dataset.uri, self.dataset.sha256)
        except DatasetError as e:
            raise JobSpecError(str(e)) from None

    def estimate_memory_bytes(self) -> int:
        """Parameters, gradients, optimizer slots, activations and the dataset itself, in bytes."""
        import torch

        data = self.load_data()
        task, cfg = TASKS[self.task], self.family_config
        try:
            with torch.device("meta"):
                model = task.build(cfg, data)
        except ValueError as e:
            raise JobSpecError(f"task {self.task!r} cannot build its model: {e}") from None
        params = sum(p.numel() for p in model.parameters())
        slots = 2 if self.optimizer.name == "adamw" else (1 if self.optimizer.momentum else 0)
        # params + grads + optimizer slots, the start state kept for the checkpoint writer
        state = 4 * params * (2 + 2 * slots)
        data_bytes = sum(t.numel() * t.element_size() for t in vars(data).values() if hasattr(t, "numel"))
        return state + task.activation_bytes(cfg, data, self.batch_size) + data_bytes

    def check_fits(self, device: Any = None) -> int:
        """Raise JobSpecError when the job cannot fit in this machine's memory; return the estimate."""
        need = self.estimate_memory_bytes()
        have, where = available_memory(device)
        if need > have:
            raise JobSpecError(
                f"job too large: needs about {need / 2**30:.2f} GiB but {where} has "
                f"{have / 2**30:.2f} GiB available (reduce the model, batch_size or dataset)"
            )
        return need


def available_memory(device: Any = None) -> tuple[int, str]:
    """Free bytes on ``device`` (CUDA: free VRAM; CPU: MemAvailable) and a description."""
    import torch

    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free), f"GPU {torch.cuda.get_device_name(dev)}"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "this machine's RAM"
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"), "this machine's RAM"


def _brief(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def parse_spec(obj: Any) -> JobSpec:
    """Validate a decoded spec object; every failure is one readable JobSpecError."""
    if not isinstance(obj, dict):
        raise JobSpecError(f"a job spec must be a mapping, got {type(obj).__name__}")
    try:
        return JobSpec.model_validate(obj)
    except ValidationError as e:
        raise JobSpecError(_brief(e)) from None


def _read_spec_text(path_or_uri: str | Path) -> tuple[str, str]:
    """The spec's text and a name whose suffix says YAML or JSON (``data:`` URIs are JSON)."""
    s = str(path_or_uri)
    try:
        raw = read_uri(s, SPEC_LIMITS)
    except FetchError as e:
        raise JobSpecError(f"cannot read spec: {e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise JobSpecError(f"cannot read spec {s}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    scheme = urlsplit(s).scheme.lower()
    return text, "spec.json" if scheme == "data" else urlsplit(s).path if scheme else Path(s).name


class _YamlInt(int):
    """An int that remembers how YAML spelled it: a sha256 of digits only (``0123…``) parses
    as an int (octal even, with a leading 0), and only the original text is the hash."""

    text: str


def _load_yaml(text: str) -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
        value = _YamlInt(yaml.SafeLoader.construct_yaml_int(loader, node))
        value.text = node.value
        return value

    Loader.add_constructor("tag:yaml.org,2002:int", construct_int)
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass


def load_spec(path_or_uri: str | Path, *, check: bool = False, device: Any = None) -> JobSpec:
    """Load a YAML or JSON spec from a path, ``file://``, ``http(s)://`` or ``data:`` URI
    (through :mod:`greenproof.uri`, capped at 1 MiB and 30 s: ``SPEC_LIMITS``).

    With ``check=True`` also fetch and verify the dataset and check the job fits
    in ``device``'s memory (what a worker does before accepting a job).
    """
    text, name = _read_spec_text(path_or_uri)
    try:
        if name.endswith((".yaml", ".yml")):
            obj = _load_yaml(text)
        else:
            obj = json.loads(text)
    except Exception as e:  # yaml and json raise different types
        raise JobSpecError(f"cannot parse spec {path_or_uri}: {e}") from None
    spec = parse_spec(obj)
    if check:
        spec.check_fits(device)
    return spec
