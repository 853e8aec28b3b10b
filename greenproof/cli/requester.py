"""``greenproof requester``: post a training job, follow it, cancel it, fetch the model, withdraw.

Every command takes ``--network`` (ape's choices or an RPC URL) and, where it
signs, ``--account``. Local checks (spec validation, amounts) run before any
network is needed, so ``post`` on a bad spec fails without an RPC URL.

Amounts (``--payment``, ``--verifier-fee``, ``--collateral``) are whole tokens
(decimals allowed, e.g. ``12.5``); they are scaled by the token's ``decimals()``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from greenproof.cli.options import (
    account_option,
    confirmations_option,
    deployment_option,
    gateway_from_options,
    network_option,
)

if TYPE_CHECKING:
    from greenproof.chain.gateway import Gateway
    from greenproof.indexer import MarketSnapshot

log = logging.getLogger(__name__)

DEFAULT_DURATION_S = 3600
#: How often ``watch`` re-explains why an OPEN job waits (seconds; it reads every provider).
WATCH_EXPLAIN_S = 15.0
#: JobMarket's ``MAX_URI``: the longest ``spec_uri`` / ``result_uri`` it accepts (bytes).
SPEC_URI_MAX = 4096


def spec_data_uri(spec_path: Path, spec: Any) -> str:
    """The shortest ``data:`` URI that loads to ``spec`` (same spec hash).

    The file's own fields, compact JSON, base64 — defaults are left out because
    every loader fills them in again before hashing — or, if that does not hash
    the same, the full canonical JSON.
    """
    import base64

    import yaml

    from greenproof.spec import parse_spec

    candidates = [spec.to_data_uri()]
    try:
        raw = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
        if isinstance(raw, dict):
            compact = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            uri = "data:application/json;base64," + base64.b64encode(compact.encode()).decode()
            if parse_spec(json.loads(compact)).spec_hash() == spec.spec_hash():
                candidates.append(uri)
    except (OSError, ValueError, yaml.YAMLError):
        pass
    return min(candidates, key=len)


class Amount(click.ParamType):
    """A non-negative token amount in whole tokens, kept as a Decimal until decimals are known."""

    name = "TOKENS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Decimal:
        if isinstance(value, Decimal):
            return value
        try:
            amount = Decimal(str(value).replace("_", ""))
        except InvalidOperation:
            self.fail(f"{value!r} is not a number of tokens (e.g. 10 or 2.5)", param, ctx)
        if not amount.is_finite() or amount < 0:
            self.fail(f"{value!r} must be a non-negative number of tokens", param, ctx)
        return amount


AMOUNT = Amount()


def to_base_units(amount: Decimal, decimals: int, what: str) -> int:
    scaled = amount * (Decimal(10) ** decimals)
    if scaled != scaled.to_integral_value():
        raise click.ClickException(
            f"requester: {what} {amount} has more than {decimals} decimal places"
        )
    return int(scaled)


def _gateway(network: str, account: str | None, deployment: Path | None, confirmations: int = 0,
             *, need_account: bool = True) -> Gateway:
    return gateway_from_options(network, account, deployment, need_account=need_account,
                                confirmations=confirmations)


def _tx_errors() -> tuple[type[BaseException], ...]:
    from greenproof.chain.errors import ChainError

    return (ChainError,)


def _snapshot(gw: Gateway) -> MarketSnapshot:
    from greenproof.indexer import Indexer

    return Indexer(gw).snapshot(live=False)


def _fmt(amount: int, decimals: int) -> str:
    return f"{Decimal(amount) / (Decimal(10) ** decimals):,.4f}".rstrip("0").rstrip(".")


@click.group()
def requester() -> None:
    """Requester: post training jobs, follow them, fetch the trained model."""


# --------------------------------------------------------------------------- post


@dataclass(frozen=True)
class PostPlan:
    """A job ready to post: every value checked as the market and a provider will check it."""

    spec: Any
    spec_hash: bytes
    spec_uri: str
    num_segments: int
    audit_samples: int
    payment: int
    verifier_fee: int
    collateral: int
    deadline: int
    now: int
    min_green_bps: int
    green_premium: int
    decimals: int

    @property
    def escrow(self) -> int:
        """What ``post`` pulls into escrow: payment + verifier fee + green premium."""
        return self.payment + self.verifier_fee + self.green_premium


def _load_checked_spec(spec_path: Path, spec_uri: str | None) -> tuple[Any, str]:
    """The spec and the URI providers will read it from, validated exactly as a provider
    validates them: the spec, its dataset against the pinned sha256, and a hosted copy's hash."""
    from greenproof.spec import JobSpecError, load_spec

    try:
        spec = load_spec(str(spec_path))
    except JobSpecError as exc:
        raise click.ClickException(str(exc)) from None
    except FileNotFoundError:
        raise click.ClickException(f"requester: spec file {spec_path} does not exist") from None
    try:
        spec.load_data()  # what every provider and verifier does first: fetch, check sha256
    except JobSpecError as exc:
        raise click.ClickException(f"requester: the spec's dataset is unusable, no provider "
                                   f"would train it: {exc}") from None
    uri = spec_uri or spec_data_uri(spec_path, spec)
    if len(uri.encode()) > SPEC_URI_MAX:
        raise click.ClickException(
            f"requester: the spec's {'URI' if spec_uri else 'data: URI'} is {len(uri.encode())} "
            f"bytes, more than the market's {SPEC_URI_MAX}-byte limit; host the spec file "
            "(https, IPFS gateway, …) and pass --spec-uri URL"
        )
    if spec_uri is not None:
        try:
            hosted = load_spec(spec_uri)
        except JobSpecError as exc:
            raise click.ClickException(f"requester: --spec-uri {spec_uri} is unusable: {exc}") from None
        if hosted.spec_hash() != spec.spec_hash():
            raise click.ClickException(
                f"requester: --spec-uri {spec_uri} hashes to 0x{hosted.spec_hash().hex()}, "
                f"{spec_path} to 0x{spec.spec_hash().hex()}: providers would skip the job"
            )
    return spec, uri


def _plan(gw: Gateway, spec: Any, uri: str, *, payment: Decimal, verifier_fee: Decimal,
          collateral: Decimal | None, deadline: int | None, duration: int | None,
          audit_samples: int | None, min_green_bps: int, green_premium: Decimal) -> PostPlan:
    """Amounts and terms, checked against the market's parameters with the limit in every error."""
    decimals = gw.token_decimals()
    pay = to_base_units(payment, decimals, "--payment")
    fee = to_base_units(verifier_fee, decimals, "--verifier-fee")
    premium = to_base_units(green_premium, decimals, "--green-premium")
    if pay == 0:
        raise click.ClickException("requester: --payment must be above 0")
    min_bps = gw.param("min_collateral_bps")
    min_coll = -(-pay * min_bps // 10_000)
    coll = min_coll if collateral is None else to_base_units(collateral, decimals, "--collateral")
    if coll < min_coll:
        raise click.ClickException(
            f"requester: collateral too low: {_fmt(coll, decimals)} (min {_fmt(min_coll, decimals)}, "
            f"{min_bps / 100:g} % of the payment)")
    max_samples = gw.param("max_audit_samples")
    # Samples are drawn with replacement: more samples than segments still raise the
    # chance of catching a partial cheat, so the default is not capped by num_segments.
    samples = max_samples if audit_samples is None else audit_samples
    if samples > max_samples:
        raise click.ClickException(f"requester: too many audit samples: {samples} (max {max_samples})")
    now = gw.chain.timestamp()
    due = deadline if deadline is not None else now + (duration or DEFAULT_DURATION_S)
    if due <= now:
        from greenproof.chain.clock import chain_time

        raise click.ClickException(f"requester: deadline {chain_time(due)} is not after the chain's "
                                   f"time, {chain_time(now)}")
    longest = gw.param("max_job_duration")
    if due - now > longest:
        raise click.ClickException(
            f"requester: deadline too far: {due - now} s from now (max {longest} s)")
    shortest = gw.param("min_job_duration")
    if due - now < shortest:
        raise click.ClickException(
            f"requester: deadline too soon: {due - now} s from now (min {shortest} s)")
    return PostPlan(spec=spec, spec_hash=spec.spec_hash(), spec_uri=uri,
                    num_segments=int(spec.num_segments), audit_samples=samples, payment=pay,
                    verifier_fee=fee, collateral=coll, deadline=due, now=now,
                    min_green_bps=min_green_bps, green_premium=premium, decimals=decimals)


def _post_options(fn: Any) -> Any:
    for option in reversed((
        click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path)),
        click.option("--payment", type=AMOUNT, required=True, help="Payment to the provider (tokens)."),
        click.option("--verifier-fee", type=AMOUNT, default=Decimal(0), show_default=True,
                     help="Fee shared by the committee seats that prove an ok replay of a paid job "
                          "(refunded when the job is slashed or no seat wins; tokens)."),
        click.option("--collateral", type=AMOUNT, default=None,
                     help="Provider collateral (tokens); default: the market's minimum ratio of the payment."),
        click.option("--deadline", type=click.IntRange(min=1), default=None,
                     help="Commit deadline as a unix timestamp."),
        click.option("--duration", type=click.IntRange(min=1), default=None,
                     help=f"Commit deadline as seconds from now (default {DEFAULT_DURATION_S})."),
        click.option("--audit-samples", type=click.IntRange(min=1), default=None,
                     help="Audit samples, drawn with replacement (default: the market's max_audit_samples; "
                          "see docs/economics.md)."),
        click.option("--min-green-bps", type=click.IntRange(0, 10_000), default=0, show_default=True,
                     help="Only providers with at least this attested green share (basis points)."),
        click.option("--green-premium", type=AMOUNT, default=Decimal(0), show_default=True,
                     help="Premium for green compute (tokens), escrowed with the job: a paid provider "
                          "gets premium x its attested green share at commit, you get the rest back; "
                          "refunded in full if the job does not pay."),
        click.option("--spec-uri", default=None,
                     help="Where providers fetch the spec (default: the spec itself as a data: URI); "
                          "fetched and checked against SPEC before anything is sent."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
        network_option, account_option, deployment_option, confirmations_option,
    )):
        fn = option(fn)
    return fn


def _prepare(spec_path: Path, payment: Decimal, verifier_fee: Decimal, collateral: Decimal | None,
             deadline: int | None, duration: int | None, audit_samples: int | None,
             min_green_bps: int, green_premium: Decimal, spec_uri: str | None, network: str,
             account: str | None, deployment: Path | None, confirmations: int) -> tuple[Gateway, PostPlan]:
    if deadline is not None and duration is not None:
        raise click.UsageError("give --deadline or --duration, not both")
    spec, uri = _load_checked_spec(spec_path, spec_uri)
    gw = _gateway(network, account, deployment, confirmations)
    try:
        plan = _plan(gw, spec, uri, payment=payment, verifier_fee=verifier_fee, collateral=collateral,
                     deadline=deadline, duration=duration, audit_samples=audit_samples,
                     min_green_bps=min_green_bps, green_premium=green_premium)
        balance = gw.token_balance()
    except _tx_errors() as exc:
        raise click.ClickException(str(exc)) from None
    if balance < plan.escrow:
        raise click.ClickException(
            f"requester: {gw.address} holds {_fmt(balance, plan.decimals)} tokens but the job "
            f"escrows {_fmt(plan.escrow, plan.decimals)} (payment + verifier fee + green premium)"
        )
    return gw, plan


@requester.command()
@_post_options
def post(spec_path: Path, payment: Decimal, verifier_fee: Decimal, collateral: Decimal | None,
         deadline: int | None, duration: int | None, audit_samples: int | None,
         min_green_bps: int, green_premium: Decimal, spec_uri: str | None, as_json: bool,
         network: str, account: str | None, deployment: Path | None, confirmations: int) -> None:
    """Validate SPEC (YAML or JSON), escrow the payment and post the job; prints the job id.

    Everything a provider will check is checked first, before any transaction:
    the spec, its dataset against the pinned sha256, a --spec-uri copy's hash,
    and the amounts and deadline against the market's limits.
    """
    gw, plan = _prepare(spec_path, payment, verifier_fee, collateral, deadline, duration,
                        audit_samples, min_green_bps, green_premium, spec_uri, network, account,
                        deployment, confirmations)
    try:
        job_id, receipt = gw.post_job(
            spec_hash=plan.spec_hash, spec_uri=plan.spec_uri, num_segments=plan.num_segments,
            audit_samples=plan.audit_samples, payment=plan.payment, verifier_fee=plan.verifier_fee,
            collateral=plan.collateral, deadline=plan.deadline, min_green_bps=plan.min_green_bps,
            green_premium=plan.green_premium,
        )
    except _tx_errors() as exc:
        raise click.ClickException(str(exc)) from None
    result = _plan_json(plan) | {"job_id": job_id, "tx": receipt["transactionHash"].to_0x_hex()}
    if as_json:
        click.echo(json.dumps(result))
    else:
        d = plan.decimals
        click.echo(
            f"job {job_id} posted: spec 0x{plan.spec_hash.hex()[:16]}…, {plan.num_segments} segments, "
            f"{plan.audit_samples} audited, payment {_fmt(plan.payment, d)} + fee {_fmt(plan.verifier_fee, d)}, "
            f"collateral {_fmt(plan.collateral, d)}"
            + (f", green premium {_fmt(plan.green_premium, d)}" if plan.green_premium else "")
            + f", deadline in {plan.deadline - plan.now} s"
        )
        click.echo(str(job_id))


def _plan_json(plan: PostPlan) -> dict[str, Any]:
    return {
        "spec_hash": "0x" + plan.spec_hash.hex(),
        "num_segments": plan.num_segments,
        "audit_samples": plan.audit_samples,
        "payment": plan.payment,
        "verifier_fee": plan.verifier_fee,
        "collateral": plan.collateral,
        "deadline": plan.deadline,
        "min_green_bps": plan.min_green_bps,
        "green_premium": plan.green_premium,
    }


@requester.command()
@_post_options
def quote(spec_path: Path, payment: Decimal, verifier_fee: Decimal, collateral: Decimal | None,
          deadline: int | None, duration: int | None, audit_samples: int | None,
          min_green_bps: int, green_premium: Decimal, spec_uri: str | None, as_json: bool,
          network: str, account: str | None, deployment: Path | None, confirmations: int) -> None:
    """Dry run of `post`: check everything, send nothing, and say which providers would take it.

    Each provider known to the market (staked, or seen on a job) is judged with
    the default worker policy (`greenproof worker run --help`) from its on-chain
    standing: green share, free stake, and the deadline against an estimate of
    the training time. Providers with stricter settings may still refuse.
    """
    from worker.policy import Offer

    gw, plan = _prepare(spec_path, payment, verifier_fee, collateral, deadline, duration,
                        audit_samples, min_green_bps, green_premium, spec_uri, network, account,
                        deployment, confirmations)
    offer = Offer(job_id=0, payment=plan.payment, collateral=plan.collateral, deadline=plan.deadline,
                  min_green_bps=plan.min_green_bps, total_steps=plan.spec.total_steps,
                  memory_bytes=int(plan.spec.estimate_memory_bytes()))
    try:
        snap = _snapshot(gw)
        verdicts = _verdicts(gw, offer, plan.now, _known_providers(gw, snap))
        court = _court_gap(gw, snap)
    except _tx_errors() as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(_plan_json(plan) | {"providers": verdicts, "court": court}))
        return
    d = plan.decimals
    click.echo(f"ok to post: {plan.num_segments} segments, {plan.audit_samples} audited, payment "
               f"{_fmt(plan.payment, d)} + fee {_fmt(plan.verifier_fee, d)}, collateral "
               f"{_fmt(plan.collateral, d)}, deadline in {plan.deadline - plan.now} s (nothing sent)")
    if court:
        click.echo(court)
    if not verdicts:
        click.echo("no provider known to this market yet")
    for v in verdicts:
        click.echo(f"  {v['provider']}: {'would accept' if v['accept'] else 'would refuse'} ({v['reason']})")


def _verdicts(gw: Gateway, offer: Any, now: int, providers: list[str]) -> list[dict[str, Any]]:
    """The default worker policy (``worker.policy``) on ``offer`` for each provider, from its
    on-chain standing: green share, free stake, the deadline against the training time."""
    from worker.policy import PolicyConfig, Standing, evaluate

    verdicts = []
    for who in providers:
        standing = Standing(now=now, green_bps=gw.green_bps(who), free_stake=gw.free_stake(who))
        decision = evaluate(offer, standing, PolicyConfig())
        verdicts.append({"provider": who, "accept": decision.accept, "reason": decision.reason})
    return verdicts


def _known_providers(gw: Gateway, snap: MarketSnapshot) -> list[str]:
    """Providers known to the market: seen on a job, or holding stake (``Staked``) without
    having joined a court pool (those are verifiers)."""
    from eth_utils import to_checksum_address

    known = {p.address.lower(): p.address for p in snap.providers}
    verifiers = {v.address.lower() for v in snap.verifiers}
    verifiers |= {m.address.lower() for pool in snap.pools for m in pool.members}
    for entry in gw.chain.logs("Staked", gw.deployment.deployment_block, None, "stake"):
        who = to_checksum_address(entry["args"]["account"])
        if who.lower() not in verifiers:
            known.setdefault(who.lower(), who)
    return sorted(known.values(), key=str.lower)


def _court_gap(gw: Gateway, snap: MarketSnapshot) -> str:
    """Why no provider can accept any job, if that is so: no verifier pool holds the court's
    ``min_class_stake`` (``accept_job`` reverts); empty when some pool does."""
    need = gw.court_param("min_class_stake")
    best = max((gw.pool_stake(bytes.fromhex(p.dclass.removeprefix("0x"))) for p in snap.pools), default=0)
    if best >= need:
        return ""
    return (f"no provider can accept yet: no verifier pool holds the court's min_class_stake "
            f"({_fmt(need, gw.token_decimals())} tokens; the fullest holds {_fmt(best, gw.token_decimals())}); "
            "verifiers add stake with `greenproof verifier stake` and `greenproof verifier join`")


def open_job_reasons(gw: Gateway, job: Any, snap: MarketSnapshot) -> list[str]:
    """Why an OPEN job may still be waiting for a provider: its deadline, the court's pools,
    and the default worker policy's verdict for each provider known to the market (the
    workers' own limits may be stricter; their logs say why they skip a job)."""
    from greenproof.chain.clock import chain_time
    from greenproof.spec import JobSpecError, load_spec
    from worker.policy import Offer

    now = gw.chain.timestamp()
    if job.deadline and now >= job.deadline:
        return [f"its deadline passed {now - job.deadline} s ago: no provider can accept it; "
                f"`greenproof requester close {job.job_id}` refunds it"]
    lines = [f"no provider has accepted it yet; it can be accepted until its deadline, "
             f"{job.deadline - now} s from now, at {chain_time(job.deadline)}"]
    gap = _court_gap(gw, snap)
    if gap:
        lines.append(gap)
    try:
        spec = load_spec(job.spec_uri)
        memory = int(spec.estimate_memory_bytes())
    except (JobSpecError, ValueError) as exc:
        return [*lines, f"its spec is unusable, every provider skips it: {exc}"]
    offer = Offer(job_id=job.job_id, payment=job.payment, collateral=job.collateral, deadline=job.deadline,
                  min_green_bps=job.min_green_bps, total_steps=spec.total_steps, memory_bytes=memory)
    providers = _known_providers(gw, snap)
    if not providers:
        lines.append("no provider has staked on this market yet")
    for v in _verdicts(gw, offer, now, providers):
        lines.append(f"{v['provider'][:10]}… {'would accept' if v['accept'] else 'would refuse'}: {v['reason']}")
    lines.append("(the default worker policy on each provider's on-chain standing: a provider whose "
                 "worker is not running, or whose own limits are stricter, does not take it, and its "
                 "log says why; `greenproof requester quote` checks new terms before posting)")
    return lines


# --------------------------------------------------------------------------- status / watch


def _court_cell(job: Any) -> tuple[str, str]:
    """(seats drawn in the current round with its counted ok/fraud seats, decision)."""
    if job.case is None or not job.case.rounds:
        return "—", "—"
    last = job.case.rounds[-1]
    seats = (f"r{last.round}: " if last.round else "") + f"{last.drawn_seats} ({last.ok_seats}/{last.fraud_seats})"
    return seats, job.case.outcome.value if job.case.decided_round is not None else "—"


#: ``requester status``'s columns, short enough that the table keeps its headers at 80 columns
JOB_COLUMNS = ("job", "state", "provider", "audit", "seats", "decision", "payment", "paid", "slashed", "Wh")


def print_jobs(jobs: list[Any], decimals: int, console: Any = None) -> None:
    """The jobs table: rich on a terminal, plain aligned text when piped (greenproof.cli.tables)."""
    from greenproof.cli.tables import Col, print_table

    columns = [Col(c, "left" if c in ("state", "provider", "decision") else "right", key=c in ("job", "state", "provider"))
               for c in JOB_COLUMNS]
    rows = [
        [str(j.job_id), j.state.value + ("*" if j.unaudited else ""),
         f"{j.provider[:6]}…{j.provider[-4:]}" if j.provider else "—",
         f"{len(set(j.audit_indices))}/{len(j.opened)}", *_court_cell(j),
         _fmt(j.payment, decimals), _fmt(j.paid + j.bonus, decimals), _fmt(j.slashed, decimals),
         f"{j.energy_wh:.4f}"]
        for j in jobs
    ]
    notes = ["audit: segments drawn/opened; seats: the last round's seats (counted ok/fraud); "
             "paid: payment + green bonus"]
    if any(j.unaudited for j in jobs):
        notes.append("*: unaudited, no committee seat proved a replay (the court paid optimistically)")
    print_table(f"jobs ({len(jobs)})", columns, rows, caption="\n".join(notes), console=console)


def _seat_line(seat: Any, decimals: int) -> str:
    money = ""
    if seat.reward:
        money = f"  +{_fmt(seat.reward, decimals)}"
    elif seat.penalty:
        money = f"  -{_fmt(seat.penalty, decimals)}"
    plural = "s" if seat.seats > 1 else ""
    unsettled = ", not settled yet" if seat.result and not seat.settled else ""
    voter = f"{seat.voter[:8]}…{seat.voter[-4:]}"
    return f"  {voter}  {seat.seats} seat{plural}  {seat.vote} -> {seat.result or 'pending'}{money}{unsettled}"


def _court_lines(job: Any, decimals: int) -> list[str]:
    """The committee of every round, each seat's vote and settlement, and the decision."""
    case = job.case
    if case is None:
        if job.state.final:
            return ["court        no case (no audit was drawn)"]
        return ["court        no case yet (the committee is drawn with the audit)"]
    lines = [f"court        committee {case.committee_size} seats, up to {case.max_rounds} rounds, "
             f"class {case.dclass[:10]}…"]
    for rnd in case.rounds:
        plural = "" if rnd.drawn_seats == 1 else "s"
        lines.append(f"round {rnd.round:<6} {rnd.drawn_seats} seat{plural} drawn, counted ok {rnd.ok_seats} / "
                     f"fraud {rnd.fraud_seats}")
        lines.extend(_seat_line(seat, decimals) for seat in rnd.seats)
    if case.decided_round is None:
        lines.append("decision     pending")
    else:
        pot = (f": pot {_fmt(case.pot, decimals)} over {case.winning_seats} winning seats "
               f"({_fmt(case.reward_per_seat, decimals)} each)" if case.winning_seats else "")
        lines.append(f"decision     {case.outcome.value} in round {case.decided_round}{pot}")
    return lines


def _job_lines(job: Any, decimals: int, waiting: list[str] | None = None) -> list[str]:
    """What ``status JOB_ID`` and ``watch`` show of one job, line by line; ``waiting``: why an
    OPEN job has no provider yet (:func:`open_job_reasons`)."""
    lines = [
        f"state        {job.state.value}"
        + (" — UNAUDITED: no committee seat proved a replay; the court paid optimistically"
           if job.unaudited else ""),
        f"requester    {job.requester}",
        f"provider     {job.provider or '—'}",
        *(f"{'waiting' if i == 0 else '':13}{line}" for i, line in enumerate(waiting or [])),
        f"segments     {job.num_segments}, audit samples {job.audit_samples}",
        f"audited      {sorted(set(job.audit_indices)) or '—'}, opened {sorted(job.opened) or '—'}",
        *_court_lines(job, decimals),
        f"payment      {_fmt(job.payment, decimals)} + fee {_fmt(job.verifier_fee, decimals)}, "
        f"collateral {_fmt(job.collateral, decimals)}",
        f"result       {job.result_uri or '—'}",
        f"final hash   {job.final_state_hash or '—'}",
        f"energy       {job.energy_wh:.4f} Wh, {job.carbon_mg} mg CO2",
    ]
    if job.state.final:
        lines.append(
            f"outcome      {job.outcome or job.state.value}: paid {_fmt(job.paid, decimals)} "
            f"+ green premium {_fmt(job.premium, decimals)} of {_fmt(job.green_premium, decimals)} "
            f"+ bonus {_fmt(job.bonus, decimals)}, slashed {_fmt(job.slashed, decimals)}"
        )
    return lines


def _job_panel(job: Any, decimals: int, waiting: list[str] | None = None) -> Any:
    """The job's lines in a panel, as a two-column grid so that a long value wraps under
    itself, not under the labels."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for line in _job_lines(job, decimals, waiting):
        label, value = line[:12].rstrip(), line[13:]
        if len(line) <= 13 or line[12] != " " or label.startswith(" "):
            label, value = "", line.strip() if not line.startswith("  ") else "  " + line.strip()
        grid.add_row(label, Text(value))
    return Panel(grid, title=f"job {job.job_id}")


def print_job(job: Any, decimals: int, waiting: list[str] | None = None, console: Any = None) -> None:
    """One job: a panel on a terminal, plain lines (no border to wrap) when piped."""
    from rich.console import Console

    console = console or Console()
    if console.is_terminal:
        console.print(_job_panel(job, decimals, waiting))
    else:
        console.file.write("\n".join([f"job {job.job_id}", *_job_lines(job, decimals, waiting)]) + "\n")


def _waiting(gw: Gateway, job: Any, snap: MarketSnapshot) -> list[str] | None:
    """Why an OPEN job waits (:func:`open_job_reasons`), or None for any other job; a failing
    read costs only the explanation."""
    if job.state.value != "OPEN":
        return None
    try:
        return open_job_reasons(gw, job, snap)
    except Exception as exc:  # noqa: BLE001 - the explanation is a courtesy, the status is not
        log.debug("cannot explain why job %d waits: %s", job.job_id, exc)
        return ["no provider has accepted it yet (`greenproof requester quote` says which would)"]



@requester.command()
@click.argument("job_id", required=False, type=click.IntRange(min=0))
@click.option("--all", "all_jobs", is_flag=True, help="List every job, not just this account's.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@network_option
@account_option
@deployment_option
def status(job_id: int | None, all_jobs: bool, as_json: bool, network: str, account: str | None,
           deployment: Path | None) -> None:
    """Show one job (JOB_ID) or this account's jobs (all jobs with --all or no --account).

    An OPEN job says why it may still wait: its deadline, whether any verifier pool can
    judge a job, and the default worker policy's verdict for each known provider."""
    gw = _gateway(network, account, deployment, need_account=False)
    try:
        snap = _snapshot(gw)
        decimals = gw.token_decimals()
    except _tx_errors() as exc:
        raise click.ClickException(str(exc)) from None
    if job_id is not None:
        job = snap.job(job_id)
        if job is None:
            raise click.ClickException(f"requester: job {job_id} not found on this deployment")
        if as_json:
            click.echo(job.model_dump_json(indent=2))
        else:
            print_job(job, decimals, _waiting(gw, job, snap))
        return
    jobs = snap.jobs
    if account and not all_jobs:
        me = gw.address.lower()
        jobs = [j for j in jobs if j.requester.lower() == me]
    if as_json:
        click.echo(json.dumps([j.model_dump(mode="json") for j in jobs], indent=2))
    else:
        print_jobs(jobs, decimals)


@requester.command()
@click.argument("job_id", type=click.IntRange(min=0))
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="Give up after this many seconds (default: wait for a final state).")
@network_option
@deployment_option
def watch(job_id: int, interval: float, timeout: float | None, network: str,
          deployment: Path | None) -> None:
    """Follow JOB_ID live (state, audited/opened segments, the committee and its votes per
    round, the decision) until it is final. While it is OPEN it says why it may wait
    (as `status JOB_ID` does). Piped or redirected, it prints a line per change of state
    and the job once final, instead of redrawing a panel."""
    from rich.console import Console
    from rich.live import Live

    from greenproof.indexer import Indexer

    gw = _gateway(network, None, deployment, need_account=False)
    console = Console()
    try:
        indexer = Indexer(gw)
        decimals = gw.token_decimals()
        started = time.monotonic()
        snap = indexer.snapshot(live=False)
        job = snap.job(job_id)
        if job is None:
            raise click.ClickException(f"requester: job {job_id} not found on this deployment")
        waiting, explained = _waiting(gw, job, snap), time.monotonic()

        def timed_out() -> bool:
            return timeout is not None and time.monotonic() - started >= timeout

        def refresh() -> None:
            nonlocal snap, job, waiting, explained
            time.sleep(interval)
            snap = indexer.snapshot(live=False)
            job = snap.job(job_id) or job
            if job.state.value != "OPEN":
                waiting = None
            elif waiting is None or time.monotonic() - explained > WATCH_EXPLAIN_S:
                waiting, explained = _waiting(gw, job, snap), time.monotonic()

        if console.is_terminal:
            with Live(_job_panel(job, decimals, waiting), console=console, refresh_per_second=4) as live:
                while not job.state.final and not timed_out():
                    refresh()
                    live.update(_job_panel(job, decimals, waiting))
        else:  # a transcript: one line per state, the reasons an OPEN job waits once
            click.echo(f"job {job_id}: {job.state.value}")
            for line in waiting or []:
                click.echo(f"  {line}")
            seen = job.state
            while not job.state.final and not timed_out():
                refresh()
                if job.state != seen:
                    seen = job.state
                    click.echo(f"job {job_id}: {job.state.value}")
            if job.state.final:
                click.echo("")
                print_job(job, decimals, console=console)
                click.echo("")
    except _tx_errors() as exc:
        raise click.ClickException(str(exc)) from None
    if not job.state.final:
        raise click.ClickException(f"requester: job {job_id} still {job.state.value} after {timeout:.0f} s"
                                   + (" (`greenproof requester status "
                                      f"{job_id}` says why no provider took it)" if waiting else ""))
    click.echo(f"job {job_id}: {job.state.value}"
               + (" (unaudited: no seat proved a replay)" if job.unaudited else ""))


# --------------------------------------------------------------------------- cancel / withdraw


@requester.command()
@click.argument("job_id", type=click.IntRange(min=0))
@network_option
@account_option
@deployment_option
@confirmations_option
def cancel(job_id: int, network: str, account: str | None, deployment: Path | None,
           confirmations: int) -> None:
    """Cancel JOB_ID while it is still OPEN (full refund of payment and fee)."""
    gw = _gateway(network, account, deployment, confirmations)
    try:
        if not gw.job(job_id).exists:
            raise click.ClickException(f"requester: job {job_id} does not exist on this deployment")
        gw.cancel_job(job_id)
    except _tx_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"job {job_id} cancelled; payment, fee and green premium refunded")


@requester.command()
@click.argument("job_id", type=click.IntRange(min=0))
@network_option
@account_option
@deployment_option
@confirmations_option
def close(job_id: int, network: str, account: str | None, deployment: Path | None,
          confirmations: int) -> None:
    """End JOB_ID if it waits past a deadline, with the exit anyone may call.

    OPEN or ACCEPTED past its deadline: expire (an OPEN job is refunded, an ACCEPTED
    one slashes its provider); COMMITTED past its draw deadline: slash as undrawn;
    AUDITING past its open window: slash as unopened; VOTING past the round's reveal
    end: finalize. Otherwise it says when the exit opens (docs/protocol.md §2.3.4).
    """
    from greenproof.chain.clock import chain_time
    from greenproof.chain.models import JobState

    gw = _gateway(network, account, deployment, confirmations)
    try:
        job = gw.job(job_id)
        if not job.exists:
            raise click.ClickException(f"requester: job {job_id} does not exist on this deployment")
        if job.state.final:
            click.echo(f"job {job_id} is already final: {job.state.value}")
            return
        now = gw.chain.timestamp()
        exits = {
            JobState.OPEN: (job.deadline, "its deadline", gw.expire_job),
            JobState.ACCEPTED: (job.deadline, "its deadline", gw.expire_job),
            JobState.COMMITTED: (job.draw_deadline, "its draw deadline (until then anyone may draw it)",
                                 gw.slash_undrawn),
            JobState.AUDITING: (job.open_deadline, "its open window", gw.slash_unopened),
            JobState.VOTING: (gw.voting_ends(job_id), "the court round's reveal end", gw.finalize),
        }
        due, what, call = exits[job.state]
        if now < due:
            raise click.ClickException(
                f"requester: job {job_id} is {job.state.value} and waits for {what}: "
                f"{due - now} s from now, at {chain_time(due)}")
        call(job_id)
        after = gw.job(job_id).state
    except _tx_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"job {job_id}: {job.state.value} -> {after.value}")


@requester.command()
@network_option
@account_option
@deployment_option
@confirmations_option
def withdraw(network: str, account: str | None, deployment: Path | None, confirmations: int) -> None:
    """Withdraw everything the market owes this account (refunds, collateral shares)."""
    from greenproof.cli.provider import withdraw_claims

    gw = _gateway(network, account, deployment, confirmations)
    try:
        decimals = gw.token_decimals()
        owed = withdraw_claims(gw)
    except _tx_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"withdrew {_fmt(owed, decimals)} tokens to {gw.address}" if owed else "nothing to withdraw")


# --------------------------------------------------------------------------- fetch


@requester.command()
@click.argument("job_id", type=click.IntRange(min=0))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("model.safetensors"), show_default=True,
              help="Where to write the final training state (safetensors).")
@network_option
@deployment_option
def fetch(job_id: int, out: Path, network: str, deployment: Path | None) -> None:
    """Download JOB_ID's final model from its result URI and check it against the committed hash."""
    from safetensors.torch import save_file

    from greenproof.store import fetch_state

    gw = _gateway(network, None, deployment, need_account=False)
    try:
        job = _snapshot(gw).job(job_id)
    except _tx_errors() as exc:
        raise click.ClickException(str(exc)) from None
    if job is None:
        raise click.ClickException(f"requester: job {job_id} does not exist on this deployment")
    if job.state.value in ("SLASHED", "CANCELLED", "EXPIRED"):
        raise click.ClickException(
            f"requester: job {job_id} is {job.state.value}: there is no verified model "
            "(`greenproof requester withdraw` pays out what the job owes you)")
    if not job.final_state_hash or not job.result_uri:
        raise click.ClickException(
            f"requester: job {job_id} is {job.state.value}; no result has been committed yet"
        )
    expected = bytes.fromhex(job.final_state_hash.removeprefix("0x"))
    try:
        state = fetch_state(job.result_uri, expected)
    except Exception as exc:  # network error, 404, or a hash mismatch: all are the provider's fault
        raise click.ClickException(
            f"requester: cannot fetch job {job_id}'s final state from {job.result_uri}: {exc}"
        ) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    click.echo(f"job {job_id}: final state {job.final_state_hash[:18]}… verified, "
               f"{len(state)} tensors written to {out}")
    click.echo(f'load it: python -c "from safetensors.torch import load_file; '
               f"s = load_file('{out}'); print(sorted(s)[:5])\"")
