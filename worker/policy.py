"""The accept policy: which posted jobs this worker takes.

A pure function of the job on offer, the provider's own on-chain standing and
the operator's limits (including the per-job checkpoint disk budget, which fixes the
sparse checkpoint interval m and refuses jobs whose audited boundaries could not be
regenerated within a safe share of the open window, :mod:`worker.checkpoints`), so that it can be tested without a chain and a reason is
always given for a refusal (the daemon logs it and journals it).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

GIB = 1024**3


class PolicyConfig(BaseModel):
    """Operator limits (``greenproof worker run --min-price-per-step …``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_price_per_step: int = Field(
        0, ge=0, description="minimum payment per training step, token base units"
    )
    max_steps: int = Field(1_000_000, gt=0, description="largest total_steps accepted")
    max_memory_gb: float = Field(8.0, gt=0, description="largest estimated training memory, GiB")
    steps_per_second: float = Field(
        20.0,
        gt=0,
        description="throughput assumed for a model family this worker has not measured yet",
    )
    safety_factor: float = Field(
        1.5, ge=1.0, description="multiplies the estimated training time before the deadline check"
    )
    commit_margin_s: int = Field(
        60, ge=0, description="seconds kept free before the deadline for the commit transaction"
    )
    disk_budget_gb: float | None = Field(
        None,
        gt=0,
        description="checkpoint disk per job, GiB (None: keep every boundary); sets the sparse "
        "checkpoint interval m (worker.checkpoints)",
    )
    regen_window_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="share of the open window the worst-case regeneration of audited boundaries may take",
    )

    @property
    def disk_budget_bytes(self) -> float | None:
        return None if self.disk_budget_gb is None else self.disk_budget_gb * GIB


class Offer(BaseModel):
    """A posted job, as far as the policy cares (from JobPosted + the spec)."""

    model_config = ConfigDict(frozen=True)

    job_id: int
    payment: int
    collateral: int
    deadline: int
    min_green_bps: int
    total_steps: int
    memory_bytes: int
    steps_per_second: float | None = None  # measured for this model family, if known
    # sparse checkpoints (only looked at with a disk budget)
    num_segments: int = 0
    segment_steps: int = 0
    state_bytes: int = 0  # greenproof.store.state_size_cap(spec)
    audit_samples: int = 0  # the job's audit sample count (segments opened at most)
    open_window_s: int = 0  # seconds between the audit draw and the open deadline


class Standing(BaseModel):
    """The provider's own position when the offer is evaluated."""

    model_config = ConfigDict(frozen=True)

    now: int  # chain time (block.timestamp)
    green_bps: int
    free_stake: int
    queued_seconds: float = 0.0  # estimated training time of jobs already queued on the device


@dataclass(frozen=True)
class Decision:
    accept: bool
    reason: str

    def __bool__(self) -> bool:
        return self.accept


def estimated_seconds(offer: Offer, config: PolicyConfig) -> float:
    """Training time for the whole job, with the safety factor applied."""
    rate = offer.steps_per_second or config.steps_per_second
    return offer.total_steps / rate * config.safety_factor


def checkpoint_interval(offer: Offer, config: PolicyConfig) -> int | None:
    """The job's sparse checkpoint interval ``m`` under ``--disk-budget-gb`` (1 without a
    budget; None when even ``m = N`` does not fit), :func:`worker.checkpoints.keep_every`."""
    from worker.checkpoints import keep_every

    return keep_every(offer.num_segments, offer.state_bytes, config.disk_budget_bytes)


def sparse_checkpoint_refusal(offer: Offer, config: PolicyConfig) -> str | None:
    """Why the job's sparse checkpoints do not work out under the disk budget, or None.

    Refused: a job whose ``ceil(N/m) + 2`` states exceed the budget even at ``m = N``,
    and one whose worst-case regeneration after the draw, ``min(samples, ceil(N/m)) *
    (m - 1)`` segment replays at the estimated seconds per segment (safety factor
    applied), exceeds ``regen_window_fraction`` of the open window.
    """
    if config.disk_budget_bytes is None:
        return None
    from worker.checkpoints import states_on_disk, worst_replays

    n = max(1, offer.num_segments)
    m = checkpoint_interval(offer, config)
    if m is None:
        return (
            f"checkpoints do not fit --disk-budget-gb {config.disk_budget_gb:g}: even keeping only the "
            f"last of {n} boundaries needs {states_on_disk(n, n)} states x {offer.state_bytes / GIB:.3f} GiB "
            f"= {states_on_disk(n, n) * offer.state_bytes / GIB:.3f} GiB"
        )
    replays = worst_replays(n, m, offer.audit_samples)
    if replays == 0:
        return None
    rate = offer.steps_per_second or config.steps_per_second
    segment_s = offer.segment_steps / rate * config.safety_factor
    need = replays * segment_s
    allowed = config.regen_window_fraction * offer.open_window_s
    if need > allowed:
        return (
            f"openings cannot be regenerated in time: --disk-budget-gb {config.disk_budget_gb:g} gives "
            f"m = {m} ({states_on_disk(n, m)} states of {offer.state_bytes / GIB:.3f} GiB), worst case "
            f"{replays} segment replays x ~{segment_s:.1f}s = ~{need:.0f}s, more than "
            f"{config.regen_window_fraction:g} of the {offer.open_window_s}s open window ({allowed:.0f}s)"
        )
    return None


def evaluate(offer: Offer, standing: Standing, config: PolicyConfig) -> Decision:
    """Accept or refuse ``offer``; a refusal names the first rule that failed."""
    if offer.total_steps <= 0:
        return Decision(False, "spec has no training steps")
    price = offer.payment // offer.total_steps
    if price < config.min_price_per_step:
        return Decision(
            False,
            f"price per step {price} below --min-price-per-step {config.min_price_per_step}",
        )
    if offer.total_steps > config.max_steps:
        return Decision(False, f"total_steps {offer.total_steps} above --max-steps {config.max_steps}")
    mem_gb = offer.memory_bytes / GIB
    if mem_gb > config.max_memory_gb:
        return Decision(
            False, f"estimated memory {mem_gb:.2f} GiB above --max-memory-gb {config.max_memory_gb}"
        )
    if standing.green_bps < offer.min_green_bps:
        return Decision(
            False,
            f"job needs green share {offer.min_green_bps} bps, our attestation gives {standing.green_bps}",
        )
    if standing.free_stake < offer.collateral:
        return Decision(
            False, f"collateral {offer.collateral} exceeds free stake {standing.free_stake}"
        )
    if (refusal := sparse_checkpoint_refusal(offer, config)) is not None:
        return Decision(False, refusal)
    need = standing.queued_seconds + estimated_seconds(offer, config) + config.commit_margin_s
    available = offer.deadline - standing.now
    if need > available:
        return Decision(
            False,
            f"deadline unreachable: need ~{need:.0f}s (queue + training + commit margin), "
            f"{available}s left",
        )
    sparse = ""
    if config.disk_budget_bytes is not None:
        sparse = f", checkpoints every {checkpoint_interval(offer, config)} of {offer.num_segments} boundaries"
    return Decision(True, f"price per step {price}, ~{need:.0f}s of {available}s to deadline{sparse}")
