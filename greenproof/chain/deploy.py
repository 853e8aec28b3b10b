"""Deploy the greenproof contracts with web3 (dev nets, tests, demo, benchmarks).

Operators on public networks may use ``ape run deploy`` instead; both write the
same manifest (:class:`greenproof.chain.manifest.Deployment`).

Order and wiring::

    MockToken (unless --token)          the settlement token
    StakeManager(token, 365 days)       provisional unbonding period: any market
                                        or court parameter change below passes
                                        the "unbonding > longest job" check
    GreenRegistry(token, max_bonus_bps, default_carbon)
    VerifierCourt(stake, seat_stake)
    JobMarket(token, stake, registry, court)
    VerifierCourt.set_market            the court knows the market (once)
    StakeManager.set_market / set_court the two contracts that lock and slash
    GreenRegistry.set_market
    JobMarket.set_<param>(v), VerifierCourt.set_<param>(v)   for each ``params`` entry
    StakeManager.set_unbonding_period   ``unbonding_period`` or, by default, the
                                        market's ``max_job_lifetime() + 1 day``
                                        (which counts every round of the court)
"""

from __future__ import annotations

import logging
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from greenproof.chain.client import Chain
from greenproof.chain.compile import Artifact, compile_contracts
from greenproof.chain.connection import make_web3
from greenproof.chain.errors import ChainError
from greenproof.chain.manifest import Deployment
from greenproof.chain.models import COURT_PARAMS, MARKET_PARAMS, PARAM_BOUNDS, PARAM_DEFAULTS

log = logging.getLogger(__name__)

DAY = 86_400
PROVISIONAL_UNBONDING = 365 * DAY  # StakeManager.MAX_UNBONDING_PERIOD
DEFAULT_MAX_BONUS_BPS = 2_000  # +20 % at 100 % green (docs/protocol.md §2.2)
DEFAULT_CARBON_G_PER_KWH = 400  # a typical grid mix
DEFAULT_SEAT_STAKE = 100 * 10**18  # VerifierCourt.SEAT_STAKE: 100 tokens of 18 decimals per seat
MOCK_TOKEN = ("greenproof test token", "GPT", 18)
#: Every ``--param NAME`` either deployer accepts (the JobMarket and VerifierCourt
#: parameter names of ``greenproof.chain.models``; the two sets share no name).
PARAMS = MARKET_PARAMS + COURT_PARAMS


class DeployError(ChainError):
    """A deployment step failed; the message names the step."""


class ParamError(ValueError):
    """A ``--param NAME=VALUE`` that names no JobMarket or VerifierCourt parameter, or is not a whole number."""


def parse_params(values: tuple[str, ...] | list[str]) -> dict[str, int]:
    """``("open_window=60", …)`` -> ``{"open_window": 60}``; both deploy commands use it."""
    params: dict[str, int] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParamError(f"expected NAME=VALUE (e.g. open_window=600), got {item!r}")
        if name not in PARAMS:
            raise ParamError(
                f"unknown JobMarket parameter {name!r} (nor a VerifierCourt one); "
                f"known: {', '.join(PARAMS)}"
            )
        try:
            value = int(raw.strip().replace("_", ""), 0)
        except ValueError:
            raise ParamError(f"{name}: not an integer: {raw!r}") from None
        if value < 0:
            raise ParamError(f"{name}: must be >= 0, got {value}")
        params[name] = value
    return params


MAX_UNBONDING_PERIOD = 365 * DAY  # StakeManager.MAX_UNBONDING_PERIOD
MAX_BONUS_BPS_LIMIT = 5_000  # GreenRegistry.MAX_BONUS_BPS_LIMIT
MAX_CARBON_G_PER_KWH = 5_000  # GreenRegistry.MAX_CARBON_G_PER_KWH
MAX_SEAT_STAKE = 2**96 - 1  # VerifierCourt.MAX_SEAT_STAKE
LIFETIME_MARGIN = 3_600  # JobMarket.LIFETIME_MARGIN


def check_deploy_plan(params: dict[str, int], *, unbonding_period: int | None,
                      max_bonus_bps: int, default_carbon: int, seat_stake: int) -> int:
    """Every check the contracts would make during a deployment, made before the first
    transaction (as ``forge script`` simulates before it sends), so that a bad value never
    leaves contracts half deployed. Returns the market's ``max_job_lifetime()`` the
    parameters give; raises :class:`DeployError` naming the bound."""
    errors: list[str] = []
    for name, value in params.items():
        lo, hi = PARAM_BOUNDS[name]
        if not lo <= value <= hi:
            errors.append(f"{name}={value} is out of bounds [{lo}, {hi}]")
    if not 0 < seat_stake <= MAX_SEAT_STAKE:
        errors.append(f"seat stake {seat_stake} is out of bounds [1, {MAX_SEAT_STAKE}]")
    if not 0 <= max_bonus_bps <= MAX_BONUS_BPS_LIMIT:
        errors.append(f"max_bonus_bps={max_bonus_bps} is out of bounds [0, {MAX_BONUS_BPS_LIMIT}]")
    if not 0 <= default_carbon <= MAX_CARBON_G_PER_KWH:
        errors.append(f"default carbon {default_carbon} g/kWh is out of bounds [0, {MAX_CARBON_G_PER_KWH}]")
    v = {**PARAM_DEFAULTS, "min_class_stake": 3 * seat_stake, **params}
    if v["min_job_duration"] > v["max_job_duration"]:
        errors.append(f"min_job_duration={v['min_job_duration']} must be at most "
                      f"max_job_duration={v['max_job_duration']}")
    if v["noshow_slash_bps"] <= v["voter_slash_bps"]:
        errors.append(f"noshow_slash_bps={v['noshow_slash_bps']} must exceed "
                      f"voter_slash_bps={v['voter_slash_bps']} (not looking must never be cheaper)")
    if (v["committee_size"] + 1) << (v["max_rounds"] - 1) > 32:
        errors.append(f"the last round of committee_size={v['committee_size']}, max_rounds={v['max_rounds']} "
                      f"has {((v['committee_size'] + 1) << (v['max_rounds'] - 1)) - 1} seats (max 31)")
    if v["draw_window"] < 24 * v["seed_lookahead"]:
        errors.append(f"draw_window={v['draw_window']} must be at least 24 s per lookahead block "
                      f"({24 * v['seed_lookahead']} s for seed_lookahead={v['seed_lookahead']})")
    if v["min_class_stake"] < seat_stake:
        errors.append(f"min_class_stake={v['min_class_stake']} is below one seat ({seat_stake})")
    lifetime = (v["max_job_duration"] + v["draw_window"] + v["open_window"]
                + v["max_rounds"] * (v["commit_window"] + v["reveal_window"]) + LIFETIME_MARGIN)
    if unbonding_period is not None and not lifetime < unbonding_period <= MAX_UNBONDING_PERIOD:
        errors.append(f"--unbonding-period {unbonding_period} must exceed max_job_lifetime {lifetime} s "
                      f"and be at most {MAX_UNBONDING_PERIOD} s")
    if unbonding_period is None and lifetime + DAY > MAX_UNBONDING_PERIOD:
        errors.append(f"max_job_lifetime {lifetime} s + 1 day exceeds the longest unbonding period "
                      f"{MAX_UNBONDING_PERIOD} s: shorten the windows or max_job_duration")
    if errors:
        raise DeployError("deploy: nothing was sent: " + "; ".join(errors))
    return lifetime


def _deploy(chain: Chain, art: Artifact, *args: Any, what: str) -> tuple[str, int]:
    factory = chain.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    receipt = chain.transact(factory.constructor(*args), what=what)
    address = receipt.get("contractAddress")
    if not address:
        raise DeployError(f"deploy: {what}: no contract address in receipt")
    log.info("deploy: %s at %s", art.name, address)
    return Web3.to_checksum_address(address), int(receipt["blockNumber"])


def court_param_order(params: dict[str, int], current: dict[str, int]) -> list[str]:
    """The order to apply court parameters so that no intermediate value breaks a
    cross rule: the last round must fit ``MAX_COMMITTEE`` (shrink ``max_rounds``
    before growing ``committee_size``) and a no-show must lose more than a loser
    (raise ``noshow_slash_bps`` before ``voter_slash_bps``, lower them the other way)."""
    order = [n for n in COURT_PARAMS if n in params]

    def first(a: str, b: str) -> None:
        if a in order and b in order and order.index(a) > order.index(b):
            order.remove(a)
            order.insert(order.index(b), a)

    if params.get("max_rounds", current["max_rounds"]) < current["max_rounds"]:
        first("max_rounds", "committee_size")
    if params.get("voter_slash_bps", 0) >= current["noshow_slash_bps"]:
        first("noshow_slash_bps", "voter_slash_bps")
    else:
        first("voter_slash_bps", "noshow_slash_bps")
    return order


def deploy_system(
    w3_or_chain: Web3 | Chain | str,
    deployer: LocalAccount,
    *,
    token: str | None = None,
    params: dict[str, int] | None = None,
    unbonding_period: int | None = None,
    max_bonus_bps: int = DEFAULT_MAX_BONUS_BPS,
    default_carbon: int = DEFAULT_CARBON_G_PER_KWH,
    seat_stake: int = DEFAULT_SEAT_STAKE,
    out: Any | None = None,
    force: bool = False,
    save: bool = True,
) -> Deployment:
    """Deploy token (mock unless ``token``), StakeManager, GreenRegistry, VerifierCourt,
    JobMarket; wire them.

    Args:
        w3_or_chain: a ``Web3``, a ``Chain`` or an RPC URL.
        deployer: signs everything and becomes every contract's owner.
        token: an existing ERC20 to settle in (None: deploy ``MockToken``).
        params: JobMarket and VerifierCourt parameters by name (``open_window=60``,
            ``commit_window=30`` …), applied with setters.
        unbonding_period: seconds (default: ``max_job_lifetime() + 1 day``).
        max_bonus_bps: green bonus at 100 % green, in bps.
        default_carbon: grid intensity (g/kWh) for providers without an attestation.
        seat_stake: token base units locked per court seat (fixed for the court's life).
        out: manifest file or folder (default ``deployments/<chain id>.json``).
        force: overwrite an existing manifest.
        save: write the manifest (tests may skip it).

    Returns:
        The :class:`~greenproof.chain.manifest.Deployment` (saved unless ``save=False``).
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise DeployError(f"deploy: unknown parameter(s) {unknown}; known: {', '.join(PARAMS)}")
    if isinstance(w3_or_chain, Chain):
        chain = Chain(w3_or_chain.w3, deployer, confirmations=w3_or_chain.confirmations,
                      poll=w3_or_chain.poll, retry=w3_or_chain.retry, network=w3_or_chain.network)
    else:
        w3 = make_web3(w3_or_chain) if isinstance(w3_or_chain, str) else w3_or_chain
        chain = Chain(w3, deployer, poll=0.05,
                      network=w3_or_chain if isinstance(w3_or_chain, str) else "")
    check_deploy_plan(params, unbonding_period=unbonding_period, max_bonus_bps=max_bonus_bps,
                      default_carbon=default_carbon, seat_stake=int(seat_stake))
    if save and not force:
        from greenproof.chain.manifest import manifest_target

        target = manifest_target(chain.chain_id, out)
        if target.exists():
            raise DeployError(f"deploy: nothing was sent: {target} exists (a deployment on chain "
                              f"{chain.chain_id}); pass --force to replace it, or --out elsewhere")
    if token is not None and not chain.w3.eth.get_code(Web3.to_checksum_address(token)):
        raise DeployError(f"deploy: nothing was sent: no contract at --token {token} on chain {chain.chain_id}")
    arts = compile_contracts()

    first_block: int | None = None
    mock_token = token is None
    if token is None:
        token, first_block = _deploy(chain, arts["MockToken"], *MOCK_TOKEN, what="deploy MockToken")
    token = Web3.to_checksum_address(token)
    stake, block = _deploy(chain, arts["StakeManager"], token, PROVISIONAL_UNBONDING,
                           what="deploy StakeManager")
    first_block = first_block if first_block is not None else block
    registry, _ = _deploy(chain, arts["GreenRegistry"], token, max_bonus_bps, default_carbon,
                          what="deploy GreenRegistry")
    court, _ = _deploy(chain, arts["VerifierCourt"], stake, int(seat_stake), what="deploy VerifierCourt")
    rules, _ = _deploy(chain, arts["AuditRules"], what="deploy AuditRules")
    market, _ = _deploy(chain, arts["JobMarket"], token, stake, registry, court, rules, what="deploy JobMarket")

    c_market = chain.w3.eth.contract(address=market, abi=arts["JobMarket"].abi)
    c_court = chain.w3.eth.contract(address=court, abi=arts["VerifierCourt"].abi)
    c_stake = chain.w3.eth.contract(address=stake, abi=arts["StakeManager"].abi)
    c_registry = chain.w3.eth.contract(address=registry, abi=arts["GreenRegistry"].abi)
    chain.transact(c_court.functions.set_market(market), what="wire VerifierCourt -> JobMarket")
    chain.transact(c_stake.functions.set_market(market), what="wire StakeManager -> JobMarket")
    chain.transact(c_stake.functions.set_court(court), what="wire StakeManager -> VerifierCourt")
    chain.transact(c_registry.functions.set_market(market), what="wire GreenRegistry -> JobMarket")
    for name in MARKET_PARAMS:
        if name in params:
            chain.transact(getattr(c_market.functions, f"set_{name}")(int(params[name])),
                           what=f"set {name}", context={"value": params[name]})
    current = {n: int(chain.call(getattr(c_court.functions, n)())) for n in COURT_PARAMS}
    for name in court_param_order(params, current):
        chain.transact(getattr(c_court.functions, f"set_{name}")(int(params[name])),
                       what=f"set {name}", context={"value": params[name]})
    lifetime = int(chain.call(c_market.functions.max_job_lifetime()))
    target = int(unbonding_period) if unbonding_period is not None else lifetime + DAY
    if target != PROVISIONAL_UNBONDING:
        chain.transact(c_stake.functions.set_unbonding_period(target), what="set unbonding period",
                       context={"seconds": target, "max_job_lifetime": lifetime})

    values = {name: int(chain.call(getattr(c_market.functions, name)())) for name in MARKET_PARAMS}
    values.update({name: int(chain.call(getattr(c_court.functions, name)())) for name in COURT_PARAMS})
    values.update(unbonding_period=target, max_bonus_bps=max_bonus_bps,
                  default_carbon_g_per_kwh=default_carbon, max_job_lifetime=lifetime,
                  seat_stake=int(seat_stake))
    deployment = _manifest(
        chain, deployer.address, first_block,
        {"Token": (token, arts["MockToken"].abi if mock_token else _erc20_abi(arts)),
         "StakeManager": (stake, arts["StakeManager"].abi),
         "GreenRegistry": (registry, arts["GreenRegistry"].abi),
         "JobMarket": (market, arts["JobMarket"].abi),
         "VerifierCourt": (court, arts["VerifierCourt"].abi),
         "AuditRules": (rules, arts["AuditRules"].abi)},
        values, mock_token=mock_token,
    )
    if save:
        from greenproof.chain.manifest import ManifestError

        try:
            path = deployment.save(out, force=force)
        except ManifestError as exc:
            raise DeployError(f"deploy: contracts deployed but the manifest was not written: {exc}") from None
        log.info("deploy: manifest written to %s", path)
    return deployment


def _erc20_abi(arts: dict[str, Artifact]) -> list[dict[str, Any]]:
    """MockToken's ABI minus ``mint``: the ERC20 surface greenproof uses on a real token."""
    return [i for i in arts["MockToken"].abi if i.get("name") not in ("mint",)]


def _manifest(chain: Chain, deployer: str, block: int, contracts: dict[str, tuple[str, list[Any]]],
              params: dict[str, int], *, mock_token: bool) -> Deployment:
    return Deployment(
        chain_id=chain.chain_id,
        network=chain.network,
        token=contracts["Token"][0],
        stake_manager=contracts["StakeManager"][0],
        green_registry=contracts["GreenRegistry"][0],
        job_market=contracts["JobMarket"][0],
        verifier_court=contracts["VerifierCourt"][0],
        audit_rules=contracts["AuditRules"][0],
        deployment_block=block,
        deployment_block_hash="0x" + bytes(chain.w3.eth.get_block(block)["hash"]).hex(),
        deployer=deployer,
        abis={name: abi for name, (_, abi) in contracts.items()},
        parameters=params,
        mock_token=mock_token,
    )
