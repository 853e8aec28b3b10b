"""The full honest job lifecycle on a real anvil node, through the contracts' one gateway.

post -> accept -> commit -> draw -> open (one batch, short end proofs) -> two
verifiers commit and reveal "ok" -> finalize -> settle -> everyone withdraws;
then the market holds nothing and every balance moved by exactly its share.

Run: ``python -m pytest -p no:ape_test tests/integration/test_lifecycle_anvil.py -q``
(the session fixtures in ``tests/integration/conftest.py`` start anvil and deploy).
"""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

from greenproof.chain.models import JobFinalized, JobState, Opening
from greenproof.merkle import boundary0_seal, commitment_tree, seal

TOKEN = 10**18
PAYMENT, FEE, COLLATERAL = 100 * TOKEN, 10 * TOKEN, 150 * TOKEN
NUM_SEGMENTS, SAMPLES = 32, 8


def test_honest_lifecycle_on_anvil(anvil, gateway_for, test_params):
    req, prov = gateway_for("requester"), gateway_for("provider")
    voters = [gateway_for("verifier"), gateway_for("verifier2")]
    prov.stake(2 * COLLATERAL)
    for v in voters:
        v.stake(100 * TOKEN)
    start = {gw.address: gw.token_balance() for gw in (req, prov, *voters)}

    job, _ = req.post_job(
        spec_hash=keccak(b"spec"), spec_uri="ipfs://spec", num_segments=NUM_SEGMENTS,
        audit_samples=SAMPLES, payment=PAYMENT, verifier_fee=FEE, collateral=COLLATERAL,
        deadline=req.chain.timestamp() + 3_600, min_green_bps=0,
    )
    hashes = [keccak(encode(["uint256", "uint256"], [job, k])) for k in range(NUM_SEGMENTS + 1)]
    energies = [k * 1_800_000 for k in range(NUM_SEGMENTS + 1)]
    seals = [boundary0_seal(job)] + [seal(job, k, keccak(b"losses %d" % k)) for k in range(1, NUM_SEGMENTS + 1)]
    tree = commitment_tree(job, hashes, energies, seals)
    prov.accept_job(job, keccak(b"cpu"))
    prov.commit_result(job, tree.root, hashes[-1], energies[-1], "http://x")
    anvil.mine(test_params["seed_lookahead"] + 1)
    req.draw_audit(job)
    assert len(prov.audit_indices(job)) == SAMPLES
    indices = sorted(set(prov.audit_indices(job)))
    receipts = prov.open_segments(job, [Opening.from_tree(tree, i, hashes, energies, seals) for i in indices])
    assert len(receipts) == 1
    assert all(prov.is_opened(job, i) for i in indices)
    assert prov.job(job).state is JobState.VOTING

    salts = {v.address: keccak(v.address.encode()) for v in voters}
    for v in voters:
        commitment = keccak(encode(["uint256", "address", "bool", "bytes32"], [job, v.address, False, salts[v.address]]))
        v.commit_vote(job, commitment)
    anvil.evm_increase_time(test_params["vote_commit_window"])
    for v in voters:
        v.reveal_vote(job, False, salts[v.address])
    anvil.evm_increase_time(test_params["vote_reveal_window"])
    (finalized,) = req.receipt_events(JobFinalized, req.finalize(job))
    assert (finalized.outcome, finalized.paid, finalized.energy_mj) == (JobState.PAID, PAYMENT, energies[-1])
    for v in voters:
        req.settle_vote(job, v.address)
    for gw in (prov, *voters):
        gw.withdraw()

    assert req.job(job).state is JobState.PAID
    assert req.token_balance(req.market_address) == 0
    end = {gw.address: gw.token_balance() for gw in (req, prov, *voters)}
    assert end[req.address] == start[req.address] - PAYMENT - FEE
    assert end[prov.address] == start[prov.address] + PAYMENT
    assert [end[v.address] - start[v.address] for v in voters] == [FEE // 2, FEE - FEE // 2]
    assert prov.locked_stake() == 0
