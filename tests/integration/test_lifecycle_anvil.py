"""The full honest job lifecycle on a real anvil node, through web3 and the greenproof Chain client.

post -> accept -> commit -> draw -> open (one batch, short end proofs) -> two
verifiers commit and reveal "ok" -> finalize -> settle -> everyone withdraws;
then the market holds nothing and every balance moved by exactly its share.

Run: ``python -m pytest -p no:ape_test tests/integration/test_lifecycle_anvil.py -q``
(the session fixtures in ``tests/integration/conftest.py`` start anvil and deploy).
"""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak
from web3.logs import DISCARD

from greenproof.merkle import commitment_tree

TOKEN = 10**18
PAYMENT, FEE, COLLATERAL = 100 * TOKEN, 10 * TOKEN, 150 * TOKEN
NUM_SEGMENTS, SAMPLES = 32, 8
PAID = 6


def test_honest_lifecycle_on_anvil(anvil, chain_for, test_params):
    req, prov = chain_for("requester"), chain_for("provider")
    voters = [chain_for("verifier"), chain_for("verifier2")]
    market, token = req.market, req.token
    for c in (req, prov, *voters):
        c.transact(c.token.functions.approve(market.address, 2**256 - 1), what="approve market")
        c.transact(c.token.functions.approve(c.stake.address, 2**256 - 1), what="approve stake")
    prov.transact(prov.stake.functions.stake(2 * COLLATERAL), what="stake")
    for v in voters:
        v.transact(v.stake.functions.stake(100 * TOKEN), what="stake")
    start = {c.address: token.functions.balanceOf(c.address).call() for c in (req, prov, *voters)}

    deadline = req.timestamp() + 3_600
    receipt = req.transact(market.functions.post_job(
        keccak(b"spec"), "ipfs://spec", NUM_SEGMENTS, SAMPLES, PAYMENT, FEE, COLLATERAL, deadline, 0
    ), what="post job")
    job = market.events.JobPosted().process_receipt(receipt, errors=DISCARD)[0]["args"]["job_id"]

    hashes = [keccak(encode(["uint256", "uint256"], [job, k])) for k in range(NUM_SEGMENTS + 1)]
    energies = [k * 1_800_000 for k in range(NUM_SEGMENTS + 1)]
    tree = commitment_tree(job, hashes, energies)
    prov.transact(market.functions.accept_job(job, keccak(b"cpu")), what="accept")
    prov.transact(market.functions.commit_result(job, tree.root, hashes[-1], energies[-1], "http://x"),
                  what="commit")
    anvil.mine(test_params["seed_lookahead"] + 1)
    req.transact(market.functions.draw_audit(job), what="draw")
    indices = sorted({int(i) for i in market.functions.audit_indices(job).call()})
    assert len(market.functions.audit_indices(job).call()) == SAMPLES
    openings = [(i, hashes[i], energies[i], hashes[i + 1], energies[i + 1], *tree.segment_proofs(i))
                for i in indices]
    prov.transact(market.functions.open_segments(job, openings), what="open")
    assert all(market.functions.is_opened(job, i).call() for i in indices)

    salts = {v.address: keccak(v.address.encode()) for v in voters}
    for v in voters:
        commitment = keccak(encode(["uint256", "address", "bool", "bytes32"], [job, v.address, False, salts[v.address]]))
        v.transact(market.functions.commit_vote(job, commitment), what="commit vote")
    anvil.evm_increase_time(test_params["vote_commit_window"])
    for v in voters:
        v.transact(market.functions.reveal_vote(job, False, salts[v.address]), what="reveal vote")
    anvil.evm_increase_time(test_params["vote_reveal_window"])
    receipt = req.transact(market.functions.finalize(job), what="finalize")
    finalized = market.events.JobFinalized().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (finalized["outcome"], finalized["paid"], finalized["energy_mj"]) == (PAID, PAYMENT, energies[-1])
    for v in voters:
        req.transact(market.functions.settle_vote(job, v.address), what="settle vote")
    for c in (prov, *voters):
        c.transact(market.functions.withdraw(), what="withdraw")

    assert market.functions.job_state(job).call() == PAID
    assert token.functions.balanceOf(market.address).call() == 0
    end = {c.address: token.functions.balanceOf(c.address).call() for c in (req, prov, *voters)}
    assert end[req.address] == start[req.address] - PAYMENT - FEE
    assert end[prov.address] == start[prov.address] + PAYMENT
    assert [end[v.address] - start[v.address] for v in voters] == [FEE // 2, FEE - FEE // 2]
    assert prov.stake.functions.locked(prov.address).call() == 0
