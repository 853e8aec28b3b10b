"""Gas of an honest greenproof job with its court, and of the committee draw by pool size.

Table 1: for N = 64, 1 024 and 16 384 segments, with 8 audit samples and a
committee of 3 seats (the court's default), it deploys the protocol on a
throwaway anvil and runs every transaction of an honest job: post -> accept ->
commit -> draw (audit + committee) -> open (batches of ``MAX_OPENINGS``) ->
3 x commit_vote -> 3 x reveal_vote (ok, with the replayed work digests) ->
finalize -> 3 x settle -> withdraw (provider, requester, each verifier). One
row per transaction (per-verifier rows are the sum of the three), one column
per N, and the total.

Table 2: the committee draw walks the court's sum tree, one node per level
(``log2 MAX_POOL_MEMBERS`` = 10 levels whatever the pool holds), so its gas
depends on log V, not V: ``join``, ``draw_audit`` (which draws the committee)
and the court's transactions of the same honest job (N = 64) are measured
with pools of 3 and of 300 one-seat members.

Writes ``bench/results/gas.json``::

    {"bench": "gas", "machine": {...},
     "figures": {"total_gas_n64": ..., "total_gas_n1024": ..., "total_gas_n16384": ...,
                 "draw_gas_pool3": ..., "draw_gas_pool300": ...},
     "rows": [{"tx": "post_job", "n64": ..., ...}, ...],
     "pool_rows": [{"tx": "draw_audit", "pool3": ..., "pool300": ...}, ...]}

The Merkle trees are real (``greenproof.merkle`` over fake state hashes and work
digests), so openings carry proofs of the real length and ok votes prove the
replay as the court checks it. Run: ``python bench/gas.py``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.logs import DISCARD
from web3.types import TxReceipt

from greenproof.chain.accounts import dev_account
from greenproof.chain.client import Chain
from greenproof.chain.connection import make_web3
from greenproof.chain.deploy import deploy_system
from greenproof.chain.devnet import Anvil
from greenproof.chain.manifest import Deployment
from greenproof.merkle import ZERO32, boundary0_seal, commitment_tree, seal, vote_commitment
from greenproof.sampling import audited_segments

SIZES = (64, 1024, 16384)
POOLS = (3, 300)
SAMPLES = 8
COMMITTEE = 3
TOKEN = 10**18
PAYMENT = 100 * TOKEN
FEE = 10 * TOKEN  # 3 seats get FEE // 3 each, the requester withdraws the rest
COLLATERAL = 150 * TOKEN
SEAT = 100 * TOKEN
CLASS = keccak(b"bench determinism class")
WINDOW = 30
PARAMS = {"seed_lookahead": 1, "open_window": 60, "commit_window": WINDOW, "reveal_window": WINDOW,
          "committee_size": COMMITTEE}
PAID = 6
TX_ORDER = (
    "post_job",
    "accept_job",
    "commit_result",
    "draw_audit (+ committee of 3)",
    "open_segments",
    "commit_vote (x3)",
    "reveal_vote (x3)",
    "finalize",
    "settle (x3)",
    "withdraw (provider)",
    "withdraw (requester)",
    "withdraw (verifiers, x3)",
)
POOL_ROWS = ("join", "draw_audit (+ committee of 3)", "commit_vote (x3)", "reveal_vote (x3)", "finalize",
             "settle (x3)")
RESULTS = Path(__file__).resolve().parent / "results" / "gas.json"
#: dev accounts by address (the committee is read from ``SeatsDrawn``)
ACCOUNTS: dict[str, LocalAccount] = {}

log = logging.getLogger("bench.gas")


class Actors:
    """One deployment and a ``Chain`` per account that signs."""

    def __init__(self, w3: Web3, deployment: Deployment) -> None:
        self.w3, self.deployment = w3, deployment
        self._chains: dict[str, Chain] = {}

    def __call__(self, account: LocalAccount) -> Chain:
        if account.address not in self._chains:
            self._chains[account.address] = Chain(self.w3, account, self.deployment, poll=0.01)
        return self._chains[account.address]


def send(chain: Chain, role: str, fn: str, *args: Any) -> TxReceipt:
    contract = getattr(chain, role)
    return chain.transact(getattr(contract.functions, fn)(*args), what=f"{role}.{fn}")


def seat_members(actors: Actors, owner: LocalAccount, members: list[LocalAccount]) -> list[int]:
    """Mint, approve, stake one seat and join the class pool; returns each join's gas."""
    gas = []
    for m in members:
        ACCOUNTS[m.address] = m
        send(actors(owner), "token", "mint", m.address, SEAT)
        send(actors(m), "token", "approve", actors.deployment.stake_manager, SEAT)
        send(actors(m), "stake", "stake", SEAT)
        gas.append(int(send(actors(m), "court", "join", CLASS, 1)["gasUsed"]))
    return gas


def setup(
    node: Anvil, verifiers: list[LocalAccount]
) -> tuple[Actors, LocalAccount, LocalAccount, LocalAccount, list[int]]:
    """A fresh deployment, a funded requester and provider, and ``verifiers`` seated."""
    w3 = make_web3(node.rpc_url)
    owner, requester, provider = (dev_account(i) for i in range(3))
    deployment = deploy_system(w3, owner, params=PARAMS, save=False)
    actors = Actors(w3, deployment)
    for a in (requester, provider):
        send(actors(owner), "token", "mint", a.address, 10**6 * TOKEN)
        send(actors(a), "token", "approve", deployment.job_market, 2**256 - 1)
        send(actors(a), "token", "approve", deployment.stake_manager, 2**256 - 1)
    send(actors(provider), "stake", "stake", 10 * COLLATERAL)
    joins = seat_members(actors, owner, verifiers)
    return actors, owner, requester, provider, joins


def post_and_commit(actors: Actors, requester: LocalAccount, provider: LocalAccount,
                    num_segments: int, gas: dict[str, int]) -> tuple[int, Any]:
    """post, accept, commit; returns the job id and its run (hashes, energies, moves, digests, seals, tree)."""
    req, prov = actors(requester), actors(provider)
    deadline = req.timestamp() + 3600
    receipt = send(req, "market", "post_job", keccak(b"bench spec"), "ipfs://bench-spec", num_segments,
                   SAMPLES, PAYMENT, FEE, COLLATERAL, deadline, 0, 0)
    job_id = int(req.market.events.JobPosted().process_receipt(receipt, errors=DISCARD)[0]["args"]["job_id"])
    gas["post_job"] = int(receipt["gasUsed"])
    hashes = [keccak(abi_encode(["uint256", "uint256"], [job_id, k])) for k in range(num_segments + 1)]
    energies = [k * 3_600_000 for k in range(num_segments + 1)]
    moves = [k * 1_000_000 for k in range(num_segments + 1)]
    digests = [ZERO32] + [keccak(b"w" + abi_encode(["uint256", "uint256"], [job_id, k])) for k in range(1, num_segments + 1)]
    seals = [boundary0_seal(job_id)] + [seal(job_id, k, digests[k]) for k in range(1, num_segments + 1)]
    tree = commitment_tree(job_id, hashes, energies, moves, seals)
    gas["accept_job"] = int(send(prov, "market", "accept_job", job_id, CLASS)["gasUsed"])
    gas["commit_result"] = int(send(prov, "market", "commit_result", job_id, tree.root, hashes[-1], energies[-1],
                                    moves[-1], "http://127.0.0.1:8765/artifacts")["gasUsed"])
    return job_id, (hashes, energies, moves, digests, seals, tree)


def run_job(node: Anvil, actors: Actors, requester: LocalAccount, provider: LocalAccount,
            num_segments: int) -> dict[str, int]:
    """One honest job from post to the last withdrawal; gas used per transaction.

    The committee is whoever ``SeatsDrawn`` names; each seated verifier votes ok
    with the replayed digests, is settled and withdraws its reward."""
    req, prov, keeper = actors(requester), actors(provider), actors(dev_account(3))
    gas: dict[str, int] = {}
    job_id, (hashes, energies, moves, digests, seals, tree) = post_and_commit(actors, requester, provider,
                                                                               num_segments, gas)
    node.mine(2)
    draw = send(keeper, "market", "draw_audit", job_id)
    gas["draw_audit (+ committee of 3)"] = int(draw["gasUsed"])
    seated = keeper.court.events.SeatsDrawn().process_receipt(draw, errors=DISCARD)[0]["args"]["voters"]
    if len(seated) != COMMITTEE:
        raise RuntimeError(f"bench: drew {len(seated)} seats, expected {COMMITTEE}")
    verifiers = [ACCOUNTS[a] for a in dict.fromkeys(seated)]  # distinct, in draw order
    seed = prov.call(prov.market.functions.get_job(job_id))[20]  # Job.seed
    indices = audited_segments(seed, job_id, SAMPLES, moves)
    max_openings = int(prov.call(prov.market.functions.MAX_OPENINGS()))
    openings = []
    for i in indices:
        start, end = tree.segment_proofs(i)
        openings.append((i, hashes[i], energies[i], moves[i], seals[i], hashes[i + 1], energies[i + 1],
                         moves[i + 1], seals[i + 1], start, end))
    gas["open_segments"] = sum(
        int(send(prov, "market", "open_segments", job_id, openings[k:k + max_openings])["gasUsed"])
        for k in range(0, len(openings), max_openings)
    )
    replayed = [digests[i + 1] for i in indices]
    salt = {v.address: keccak(b"salt" + bytes.fromhex(v.address[2:])) for v in verifiers}
    gas["commit_vote (x3)"] = sum(
        int(send(actors(v), "court", "commit_vote", job_id,
                 vote_commitment(job_id, v.address, False, salt[v.address], replayed))["gasUsed"])
        for v in verifiers
    )
    node.call("evm_increaseTime", WINDOW)
    node.mine(1)
    gas["reveal_vote (x3)"] = sum(
        int(send(actors(v), "court", "reveal_vote", job_id, False, salt[v.address], replayed, indices)["gasUsed"])
        for v in verifiers
    )
    node.call("evm_increaseTime", WINDOW)
    node.mine(1)
    gas["finalize"] = int(send(keeper, "market", "finalize", job_id)["gasUsed"])
    gas["settle (x3)"] = sum(int(send(keeper, "court", "settle", job_id, 0, v.address)["gasUsed"]) for v in verifiers)
    gas["withdraw (provider)"] = int(send(prov, "market", "withdraw")["gasUsed"])
    gas["withdraw (requester)"] = int(send(req, "market", "withdraw")["gasUsed"])  # the fee's rest
    gas["withdraw (verifiers, x3)"] = sum(int(send(actors(v), "market", "withdraw")["gasUsed"]) for v in verifiers)
    state = int(req.call(req.market.functions.job_state(job_id)))
    if state != PAID:
        raise RuntimeError(f"bench: job {job_id} ended in state {state}, expected PAID")
    log.info("N=%d: %d distinct audited segments, total gas %d", num_segments, len(indices), sum(gas.values()))
    return gas


def lifecycle_gas(node: Anvil, num_segments: int) -> dict[str, int]:
    """A fresh deployment with a pool of exactly 3 one-seat verifiers, one honest job."""
    actors, _, requester, provider, _ = setup(node, [dev_account(i) for i in range(4, 4 + COMMITTEE)])
    return run_job(node, actors, requester, provider, num_segments)


def member(i: int) -> LocalAccount:
    """Pool member ``i`` of table 2: a deterministic key (anvil funds only 10 dev accounts)."""
    return Account.from_key(keccak(b"greenproof bench pool member" + i.to_bytes(4, "big")))


def pool_gas(pool_size: int) -> dict[str, int]:
    """``join`` (the last member's), then one honest job at N = 64 whose committee of 3
    is drawn from a pool of ``pool_size`` one-seat members."""
    with Anvil() as node:
        members = [member(i) for i in range(pool_size)]
        for m in members:
            node.set_balance(m.address, 10**18)
        actors, _, requester, provider, joins = setup(node, members)
        return {"join": joins[-1], **run_job(node, actors, requester, provider, 64)}


def machine() -> dict[str, Any]:
    anvil_version = "unknown"
    try:
        import subprocess

        from greenproof.chain.devnet import anvil_binary

        anvil_version = subprocess.run([anvil_binary(), "--version"], capture_output=True, text=True,
                                       check=True).stdout.splitlines()[0]
    except Exception:  # noqa: BLE001 - informational only
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "anvil": anvil_version,
    }


def print_table(title: str, rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    width = max(len(r["tx"]) for r in rows) + 2
    header = "tx".ljust(width) + "".join(label.rjust(12) for _, label in columns)
    print(title)
    print(header)
    print("-" * len(header))
    for row in rows:
        if row["tx"] == "total":
            print("-" * len(header))
        print(row["tx"].ljust(width) + "".join(f"{row[key]:,}".rjust(12) for key, _ in columns))
    print()


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    per_n: dict[int, dict[str, int]] = {}
    with Anvil() as node:
        for n in SIZES:
            per_n[n] = lifecycle_gas(node, n)
    rows = [{"tx": tx, **{f"n{n}": per_n[n][tx] for n in SIZES}} for tx in TX_ORDER]
    totals = {n: sum(per_n[n].values()) for n in SIZES}
    rows.append({"tx": "total", **{f"n{n}": totals[n] for n in SIZES}})
    print_table(f"gas of an honest job, {SAMPLES} audit samples, a committee of {COMMITTEE}, anvil",
                rows, [(f"n{n}", f"N={n:,}") for n in SIZES])

    per_pool = {v: pool_gas(v) for v in POOLS}
    pool_rows = [{"tx": tx, **{f"pool{v}": per_pool[v][tx] for v in POOLS}} for tx in POOL_ROWS]
    print_table("the committee draw by pool size (one seat per member, N = 64)",
                pool_rows, [(f"pool{v}", f"V={v}") for v in POOLS])
    draw = {v: per_pool[v]["draw_audit (+ committee of 3)"] for v in POOLS}
    growth = draw[POOLS[1]] / draw[POOLS[0]]
    print(f"100x the members costs {growth:.3f}x the draw: the walk visits log2(1024) = 10 tree "
          "levels per seat whatever the pool holds (O(log V), never O(V))")

    out = {
        "bench": "gas",
        "machine": machine(),
        "figures": {
            **{f"total_gas_n{n}": totals[n] for n in SIZES},
            **{f"draw_gas_pool{v}": draw[v] for v in POOLS},
        },
        "rows": rows,
        "pool_rows": pool_rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
