"""The Chain client on a real anvil: deployment wiring, reverts, nonces, logs, faults.

These tests build raw contract calls on purpose: they test the client under the
gateway (``test_gateway.py`` tests the typed reads, transactions and events).
"""

from __future__ import annotations

import threading

import pytest

from greenproof.attestation import digest, sign_attestation
from greenproof.chain.client import Chain, RetryPolicy
from greenproof.chain.connection import make_web3
from greenproof.chain.errors import ChainError, TxError, decode_revert_data
from greenproof.chain.models import MARKET_PARAMS

TOKEN = 10**18
FAST_RETRY = RetryPolicy(attempts=6, base_delay=0.2, max_delay=2.0)

ERROR_STRING = (  # abi-encoded Error("market: job not open")
    "0x08c379a0" + "20".rjust(64, "0") + "14".rjust(64, "0")
    + b"market: job not open".hex().ljust(64, "0")
)


def test_deployment_is_wired_and_parameters_applied(chain_for, gateway_for, deployment, test_params):
    chain, gw = chain_for("owner"), gateway_for("owner")
    assert chain.call(chain.stake.functions.market()) == gw.market_address
    assert chain.call(chain.registry.functions.market()) == gw.market_address
    params = gw.params() | gw.court_params()  # the market's and the court's
    for name, value in test_params.items():
        assert params[name] == value, name
        assert deployment.parameters[name] == value
    assert set(MARKET_PARAMS) <= set(deployment.parameters)
    assert gw.unbonding_period() > gw.max_job_lifetime()


def test_revert_reason_surfaces_before_any_gas_is_spent(chain_for):
    provider = chain_for("provider")
    nonce_before = provider.w3.eth.get_transaction_count(provider.address)
    with pytest.raises(TxError, match="market: job not open") as err:
        provider.transact(provider.market.functions.accept_job(424242, b"\x01" * 32),
                          what="accept job", context={"job": 424242})
    assert err.value.reason == "market: job not open"
    assert err.value.context == {"job": 424242}
    assert "job=424242" in str(err.value)
    assert provider.w3.eth.get_transaction_count(provider.address) == nonce_before


def test_view_reverts_are_tx_errors_too(chain_for):
    provider = chain_for("provider")
    with pytest.raises(TxError, match="stake: amount exceeds free stake"):
        provider.transact(provider.stake.functions.request_unstake(5 * TOKEN), what="unstake")


def test_mined_failure_raises_with_status_zero(chain_for):
    provider = chain_for("provider")
    provider.ensure_allowance(provider.stake.address, 10 * TOKEN)
    with pytest.raises(TxError, match="out of gas") as err:
        provider.transact(provider.stake.functions.stake(10 * TOKEN), what="stake", gas=30_000)
    assert err.value.tx_hash is not None
    receipt = provider.w3.eth.get_transaction_receipt(err.value.tx_hash)
    assert receipt["status"] == 0


def test_raw_revert_data_decoding():
    assert decode_revert_data(ERROR_STRING) == "market: job not open"
    assert decode_revert_data("0x") == "reverted without a reason"
    panic = "0x4e487b71" + "11".rjust(64, "0")
    assert decode_revert_data(panic) == "panic 0x11"
    assert decode_revert_data("0xdeadbeef").startswith("reverted with data 0xdeadbeef")


def test_allowance_is_only_approved_when_needed(chain_for):
    provider = chain_for("provider")
    first = provider.ensure_allowance(provider.stake.address, 50 * TOKEN)
    assert first is not None and first["status"] == 1
    assert provider.ensure_allowance(provider.stake.address, 20 * TOKEN) is None
    assert provider.call(provider.token.functions.allowance(provider.address, provider.stake.address)) == 50 * TOKEN


def test_nonce_follows_another_process_using_the_same_account(anvil, deployment, chain_for):
    one = chain_for("provider")
    other = Chain(make_web3(anvil.rpc_url), one.account, deployment, poll=0.02, retry=FAST_RETRY)
    one.transact(one.token.functions.approve(one.stake.address, 1), what="approve 1")
    other.transact(other.token.functions.approve(other.stake.address, 2), what="approve 2")
    one.transact(one.token.functions.approve(one.stake.address, 3), what="approve 3")  # stale local nonce
    assert one.call(one.token.functions.allowance(one.address, one.stake.address)) == 3


def test_nonce_recovers_after_the_chain_forgets_our_transactions(anvil, chain_for):
    provider = chain_for("provider")
    snapshot = anvil.snapshot()
    provider.transact(provider.token.functions.approve(provider.stake.address, 7), what="approve")
    anvil.revert(snapshot)  # the node forgets the tx; our local counter is now ahead
    provider._last_send = 0.0  # as if the revert happened a while after our send
    provider.transact(provider.token.functions.approve(provider.stake.address, 8), what="approve again")
    assert provider.call(provider.token.functions.allowance(provider.address, provider.stake.address)) == 8


def test_logs_are_fetched_in_chunks_in_chain_order(anvil, chain_for):
    provider = chain_for("provider")
    start = provider.block_number() + 1
    for amount in (1, 2, 3, 4, 5):
        provider.transact(provider.token.functions.approve(provider.stake.address, amount), what="approve")
        anvil.mine(2)
    whole = provider.logs("Approval", start, None, contract="token")
    provider.log_chunk = 2
    chunked = provider.logs("Approval", start, None, contract="token")
    assert [e["args"]["value"] for e in chunked] == [1, 2, 3, 4, 5]
    assert [(e["blockNumber"], e["logIndex"]) for e in chunked] == [(e["blockNumber"], e["logIndex"]) for e in whole]
    every = provider.events(start, None, contract="token")
    assert [e["event"] for e in every] == ["Approval"] * 5


def test_filtered_logs_by_indexed_argument(chain_for):
    provider, verifier = chain_for("provider"), chain_for("verifier")
    start = provider.block_number() + 1
    provider.transact(provider.token.functions.approve(provider.market.address, 11), what="approve")
    verifier.transact(verifier.token.functions.approve(verifier.market.address, 22), what="approve")
    mine = provider.logs("Approval", start, None, contract="token", args={"owner": provider.address})
    assert [e["args"]["value"] for e in mine] == [11]


def test_time_and_block_helpers(anvil, chain_for):
    chain = chain_for("outsider")
    before, t0 = chain.block_number(), chain.timestamp()
    anvil.evm_increase_time(3600)
    assert chain.timestamp() >= t0 + 3600
    anvil.mine(3)
    assert chain.wait_until_block(before + 4, timeout=5) >= before + 4


def test_attestation_digest_matches_the_registry(chain_for, attestor, provider):
    owner, prov = chain_for("owner"), chain_for("provider")
    now = prov.timestamp()
    signed = sign_attestation(attestor, prov.registry.address, prov.chain_id, provider=provider.address,
                              green_bps=7500, carbon_g_per_kwh=30, region="EU-NO",
                              valid_from=now - 10, valid_until=now + 86_400, nonce=1)
    on_chain = prov.call(prov.registry.functions.attestation_digest(*signed.attestation.call_args()))
    assert bytes(on_chain) == digest(signed.attestation, prov.registry.address, prov.chain_id)
    with pytest.raises(TxError, match="registry: signer not an attestor"):
        prov.transact(prov.registry.functions.submit_attestation(*signed.submit_args()), what="attest")
    owner.transact(owner.registry.functions.add_attestor(attestor.address), what="add attestor")
    prov.transact(prov.registry.functions.submit_attestation(*signed.submit_args()), what="attest")
    assert prov.call(prov.registry.functions.green_bps_of(provider.address)) == 7500


def test_client_rides_out_a_node_restart(private_anvil, account_for):
    """anvil goes away for ~2 s mid-session and comes back with its state: the client recovers."""
    node, deployment, _ = private_anvil
    chain = Chain(make_web3(node.rpc_url), account_for("provider"), deployment, poll=0.02,
                  retry=FAST_RETRY)
    chain.ensure_allowance(chain.stake.address, 100 * TOKEN)
    block_before = chain.block_number()
    node.halt()
    restarter = threading.Timer(2.0, node.start)
    restarter.start()
    try:
        receipt = chain.transact(chain.stake.functions.stake(100 * TOKEN), what="stake",
                                 context={"job": 0})
    finally:
        restarter.join()
    assert receipt["status"] == 1
    assert receipt["blockNumber"] > block_before  # the chain kept its history
    assert chain.call(chain.stake.functions.staked(chain.address)) == 100 * TOKEN


def test_client_gives_up_with_a_clear_error_when_the_node_stays_away(private_anvil, account_for):
    node, deployment, _ = private_anvil
    chain = Chain(make_web3(node.rpc_url), account_for("provider"), deployment, poll=0.02,
                  retry=RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.1))
    node.halt()
    with pytest.raises(ChainError, match="unreachable") as err:
        chain.block_number()
    assert not isinstance(err.value, TxError)
