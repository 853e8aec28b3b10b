"""Gas of an honest greenproof job lifecycle on anvil (issue 2 target: <= 1.0 M in total).

For N = 64, 1 024 and 16 384 segments, with 8 audit samples, it deploys the
protocol on a throwaway anvil, runs post -> accept -> commit -> draw -> open
(batches of ``MAX_OPENINGS``) -> finalize -> withdraw (provider, then requester),
prints one row per transaction and one column per N, and writes
``bench/results/gas.json``::

    {"bench": "gas", "machine": {...},
     "figures": {"total_gas_n64": ..., "total_gas_n1024": ..., "total_gas_n16384": ...},
     "rows": [{"tx": "post_job", "n64": ..., ...}, ...]}

The Merkle trees are real (``greenproof.merkle`` over fake state hashes), so
the openings carry proofs of the real length. Run: ``python bench/gas.py``.
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
from eth_utils import keccak
from web3.types import TxReceipt

from greenproof.chain.accounts import dev_account
from greenproof.chain.client import Chain
from greenproof.chain.connection import make_web3
from greenproof.chain.deploy import deploy_system
from greenproof.chain.devnet import Anvil
from greenproof.chain.gateway import Gateway
from greenproof.chain.models import JobState, Opening
from greenproof.merkle import commitment_tree

SIZES = (64, 1024, 16384)
SAMPLES = 8
TOKEN = 10**18
PAYMENT = 100 * TOKEN
FEE = 10 * TOKEN
COLLATERAL = 150 * TOKEN
PARAMS = {"seed_lookahead": 1, "open_window": 60, "vote_commit_window": 30, "vote_reveal_window": 30}
TX_ORDER = (
    "post_job",
    "accept_job",
    "commit_result",
    "draw_audit",
    "open_segments",
    "finalize",
    "withdraw (provider)",
    "withdraw (requester)",
)
RESULTS = Path(__file__).resolve().parent / "results" / "gas.json"

log = logging.getLogger("bench.gas")


def lifecycle_gas(node: Anvil, num_segments: int, samples: int = SAMPLES) -> dict[str, int]:
    """Deploy a fresh system on ``node`` and run one honest job; gas used per transaction."""
    w3 = make_web3(node.rpc_url)
    owner, requester, provider, keeper = (dev_account(i) for i in range(4))
    deployment = deploy_system(w3, owner, params=PARAMS, save=False)
    as_ = {a.address: Gateway(Chain(w3, a, deployment, poll=0.01))
           for a in (owner, requester, provider, keeper)}
    req, prov, anyone, own = as_[requester.address], as_[provider.address], as_[keeper.address], as_[owner.address]

    # set-up, not measured: tokens, the requester's escrow approval, provider stake
    for gw in (req, prov):
        own.mint(gw.address, 10**6 * TOKEN)
    req.chain.ensure_allowance(req.market_address, 2**256 - 1)  # unlimited, so post_job never re-approves
    prov.stake(10 * COLLATERAL)

    gas: dict[str, int] = {}

    def measure(label: str, *receipts: TxReceipt) -> None:
        gas[label] = sum(int(r["gasUsed"]) for r in receipts)

    deadline = req.chain.timestamp() + 3600
    job_id, receipt = req.post_job(
        spec_hash=keccak(b"bench spec"), spec_uri="ipfs://bench-spec", num_segments=num_segments,
        audit_samples=samples, payment=PAYMENT, verifier_fee=FEE, collateral=COLLATERAL,
        deadline=deadline, min_green_bps=0,
    )
    measure("post_job", receipt)

    hashes = [keccak(abi_encode(["uint256", "uint256"], [job_id, k])) for k in range(num_segments + 1)]
    energies = [k * 3_600_000 for k in range(num_segments + 1)]
    tree = commitment_tree(job_id, hashes, energies)

    measure("accept_job", prov.accept_job(job_id, keccak(b"cpu")))
    measure("commit_result", prov.commit_result(job_id, tree.root, hashes[-1], energies[-1],
                                                "http://127.0.0.1:8765/artifacts"))
    node.mine(2)
    measure("draw_audit", anyone.draw_audit(job_id))
    indices = sorted(set(prov.audit_indices(job_id)))
    openings = [Opening.from_tree(tree, i, hashes, energies) for i in indices]
    measure("open_segments", *prov.open_segments(job_id, openings))
    node.call("evm_increaseTime", PARAMS["vote_commit_window"] + PARAMS["vote_reveal_window"])
    node.mine(1)
    measure("finalize", anyone.finalize(job_id))
    measure("withdraw (provider)", prov.withdraw())
    measure("withdraw (requester)", req.withdraw())
    state = prov.job(job_id).state
    if state is not JobState.PAID:
        raise RuntimeError(f"bench: job {job_id} ended in state {state}, expected PAID")
    log.info("N=%d: %d distinct audited segments, total gas %d", num_segments, len(indices), sum(gas.values()))
    return gas


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


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    per_n: dict[int, dict[str, int]] = {}
    with Anvil() as node:
        for n in SIZES:
            per_n[n] = lifecycle_gas(node, n)
    rows = [{"tx": tx, **{f"n{n}": per_n[n][tx] for n in SIZES}} for tx in TX_ORDER]
    totals = {n: sum(per_n[n].values()) for n in SIZES}
    rows.append({"tx": "total", **{f"n{n}": totals[n] for n in SIZES}})

    width = max(len(tx) for tx in TX_ORDER) + 2
    header = "tx".ljust(width) + "".join(f"N={n:,}".rjust(12) for n in SIZES)
    print(f"gas of an honest lifecycle, {SAMPLES} audit samples, anvil")
    print(header)
    print("-" * len(header))
    for row in rows:
        if row["tx"] == "total":
            print("-" * len(header))
        print(row["tx"].ljust(width) + "".join(f"{row[f'n{n}']:,}".rjust(12) for n in SIZES))

    out = {
        "bench": "gas",
        "machine": machine(),
        "figures": {f"total_gas_n{n}": totals[n] for n in SIZES},
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {RESULTS}")
    target = 1_000_000
    worst = max(totals.values())
    print(f"target <= {target:,} gas: {'met' if worst <= target else 'NOT met'} (worst {worst:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
