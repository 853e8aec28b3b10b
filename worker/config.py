"""The worker's configuration (built by ``greenproof worker run`` from its options)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from worker.policy import PolicyConfig
from worker.server import ServerLimits


class WorkerConfig(BaseModel):
    """Everything the daemon needs besides the chain connection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(description="journal, checkpoints and run files live here")
    device: str = Field("cpu", description="torch device the jobs train on (cpu, cuda, cuda:N)")
    policy: PolicyConfig = PolicyConfig()
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=0, le=65535)
    public_url: str | None = Field(
        None, description="base URL verifiers reach the artifact server at (default http://host:port)"
    )
    limits: ServerLimits = ServerLimits()
    confirmations: int = Field(0, ge=0, description="events are processed up to head - confirmations")
    poll_s: float = Field(1.0, gt=0, description="seconds between passes over the chain")
    max_backoff_s: float = Field(30.0, gt=0, description="longest wait after an RPC failure")
    stop: Literal["never", "once", "idle"] = Field(
        "never", description="never: run forever; once: one pass; idle: exit when all jobs closed"
    )
    energy_source: str | None = Field(None, description="force an energy source (see greenproof.energy)")
    cheat: str | None = Field(None, description="TEST/DEMO ONLY: a greenproof.adversaries.cheats strategy")
    cheat_fraction: float = Field(1.0, ge=0, le=1)
    cheat_seed: int = 0

    @field_validator("public_url")
    @classmethod
    def _strip(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"public url must start with http:// or https://, got {v!r}")
        return v.rstrip("/")

    @property
    def journal_path(self) -> Path:
        return self.data_dir / "journal.sqlite"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    def base_url(self, bound_port: int | None = None) -> str:
        """Where verifiers fetch artifacts (the committed ``result_uri`` prefix)."""
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{bound_port or self.port}"
