"""The accept policy: which posted jobs this worker takes.

A pure function of the job on offer, the provider's own on-chain standing and
the operator's limits, so that it can be tested without a chain and a reason is
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
    need = standing.queued_seconds + estimated_seconds(offer, config) + config.commit_margin_s
    available = offer.deadline - standing.now
    if need > available:
        return Decision(
            False,
            f"deadline unreachable: need ~{need:.0f}s (queue + training + commit margin), "
            f"{available}s left",
        )
    return Decision(True, f"price per step {price}, ~{need:.0f}s of {available}s to deadline")
