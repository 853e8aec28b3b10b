"""The full honest job lifecycle on a real anvil node, through the contracts' one gateway.

three verifiers join the court's pool of the provider's class -> post -> accept ->
commit -> draw (the committee of three seats) -> open (one batch, short end proofs)
-> every seat commits and reveals "ok" with the work digests of the audited
segments -> finalize -> every seat settled -> everyone withdraws; then the market
holds nothing but the fee's remainder went back, and every balance moved by
exactly its share.

Run: ``python -m pytest -p no:ape_test tests/integration/test_lifecycle_anvil.py -q``
(the session fixtures in ``tests/integration/conftest.py`` start anvil and deploy).
"""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

from greenproof.chain.models import CaseOutcome, JobFinalized, JobState, Opening, SeatsDrawn
from greenproof.merkle import boundary0_seal, commitment_tree, seal, vote_commitment
from verifier.sampling import audited_segments

TOKEN = 10**18
PAYMENT, FEE, COLLATERAL = 100 * TOKEN, 10 * TOKEN, 150 * TOKEN
NUM_SEGMENTS, SAMPLES = 32, 8


CPU = keccak(b"cpu")


def test_honest_lifecycle_on_anvil(anvil, gateway_for, test_params, seat_verifiers):
    req, prov = gateway_for("requester"), gateway_for("provider")
    voters = [gateway_for("verifier"), gateway_for("verifier2"), gateway_for("verifier3")]
    prov.stake(2 * COLLATERAL)
    seat_verifiers("verifier", "verifier2", "verifier3", seats=1, dclass=CPU)
    start = {gw.address: gw.token_balance() for gw in (req, prov, *voters)}

    job, _ = req.post_job(
        spec_hash=keccak(b"spec"), spec_uri="ipfs://spec", num_segments=NUM_SEGMENTS,
        audit_samples=SAMPLES, payment=PAYMENT, verifier_fee=FEE, collateral=COLLATERAL,
        deadline=req.chain.timestamp() + 3_600, min_green_bps=0,
    )
    hashes = [keccak(encode(["uint256", "uint256"], [job, k])) for k in range(NUM_SEGMENTS + 1)]
    energies = [k * 1_800_000 for k in range(NUM_SEGMENTS + 1)]
    moves = [k * 1_000 for k in range(NUM_SEGMENTS + 1)]
    digests = [keccak(b"losses %d" % k) for k in range(NUM_SEGMENTS + 1)]
    seals = [boundary0_seal(job)] + [seal(job, k, digests[k]) for k in range(1, NUM_SEGMENTS + 1)]
    tree = commitment_tree(job, hashes, energies, moves, seals)
    prov.accept_job(job, CPU)
    prov.commit_result(job, tree.root, hashes[-1], energies[-1], moves[-1], "http://x")
    anvil.mine(test_params["seed_lookahead"] + 1)
    req.draw_audit(job)
    assert len(prov.audit_indices(job)) + len(prov.movement_draws(job)) == SAMPLES
    (drawn,) = req.events(SeatsDrawn, req.deployment.deployment_block, job_id=job)
    assert sorted(drawn.voters) == sorted(v.address for v in voters)  # three seats from three members
    indices = audited_segments(prov.job(job).seed, job, SAMPLES, moves)
    receipts = prov.open_segments(job, [Opening.from_tree(tree, i, hashes, energies, moves, seals) for i in indices])
    assert len(receipts) == 1
    assert prov.next_open_index(job) == indices[-1] + 1
    assert prov.job(job).state is JobState.VOTING

    proof = [digests[i + 1] for i in indices]  # w_{k+1} of each distinct audited segment, ascending
    salts = {v.address: keccak(v.address.encode()) for v in voters}
    for v in voters:
        v.commit_vote(job, vote_commitment(job, v.address, False, salts[v.address], proof))
    anvil.evm_increase_time(test_params["commit_window"])
    for v in voters:
        v.reveal_vote(job, False, salts[v.address], proof, indices)
    anvil.evm_increase_time(test_params["reveal_window"])
    (finalized,) = req.receipt_events(JobFinalized, req.finalize(job))
    assert (finalized.outcome, finalized.paid, finalized.energy_mj) == (JobState.PAID, PAYMENT, energies[-1])
    case = req.case_of(job)
    assert (case.outcome, case.ok_seats, case.reward_per_seat) == (CaseOutcome.OK, 3, FEE // 3)
    for v in voters:
        req.settle_seat(job, 0, v.address)
    for gw in (req, prov, *voters):
        gw.withdraw()

    assert req.job(job).state is JobState.PAID
    assert req.token_balance(req.market_address) == 0
    end = {gw.address: gw.token_balance() for gw in (req, prov, *voters)}
    assert end[req.address] == start[req.address] - PAYMENT - FEE + FEE % 3  # the pot's remainder
    assert end[prov.address] == start[prov.address] + PAYMENT
    assert [end[v.address] - start[v.address] for v in voters] == [FEE // 3] * 3
    assert prov.locked_stake() == 0
    assert all(v.locked_stake() == v.seat_stake() and v.member_of(CPU).free_seats == 1 for v in voters)
