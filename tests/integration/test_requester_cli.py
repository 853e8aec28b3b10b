"""The requester's day on a local anvil, through the real ``greenproof requester`` CLI.

A requester posts a job from a YAML spec (escrow leaves the wallet), sees it in
``status``, cancels a second one and gets the escrow back; a provider commits a
result whose final state sits in a file:// store, and ``fetch`` downloads and
verifies it — and refuses a state that does not match the committed hash.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from greenproof.chain import Anvil, Gateway, connect
from greenproof.cli import cli
from greenproof.demo import TOKEN, default_actors, setup_market

pytestmark = pytest.mark.anvil

SPEC_YAML = """\
task: mlp
dataset: {uri: "builtin://digits"}
batch_size: 16
total_steps: 4
segment_steps: 2
seed: 7
"""


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    data = tmp_path_factory.mktemp("requester-market")
    with Anvil(state_dir=data / "anvil") as node:
        actors = default_actors()
        # the market's own default parameters: the limits the errors below name
        manifest = setup_market(node.rpc_url, actors, data, params={}, pool_classes=[b"\x01" * 32])
        spec = data / "job.yaml"
        spec.write_text(SPEC_YAML)
        yield {"rpc": node.rpc_url, "manifest": manifest, "actors": actors, "spec": spec,
               "data": data}


def requester_cli(market: dict, *args: str, account: str | None = "requester") -> tuple[int, str]:
    argv = ["requester", *args, "--network", market["rpc"], "--deployment", str(market["manifest"])]
    if account:
        argv += ["--account", market["actors"][account].account]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    return result.exit_code, result.output


def test_requester_posts_a_job_and_the_escrow_leaves_the_wallet(market: dict) -> None:
    gw = Gateway(connect(market["rpc"], market["actors"]["requester"].account, market["manifest"]))
    before = gw.token_balance()
    code, out = requester_cli(market, "post", str(market["spec"]), "--payment", "10",
                              "--verifier-fee", "1.5", "--duration", "600", "--json")
    assert code == 0, out
    posted = json.loads(out)
    assert posted["num_segments"] == 2 and posted["payment"] == 10 * TOKEN
    # samples are drawn with replacement: the default is the market's maximum, not num_segments
    assert posted["audit_samples"] == gw.param("max_audit_samples") > 2
    assert gw.token_balance() == before - 11_5 * TOKEN // 10
    assert gw.job(posted["job_id"]).payment == 10 * TOKEN
    code, out = requester_cli(market, "status", str(posted["job_id"]), "--json", account=None)
    assert code == 0, out
    job = json.loads(out)
    assert job["state"] == "OPEN" and job["spec_hash"] == posted["spec_hash"]
    assert job["spec_uri"].startswith("data:")


def test_requester_cancels_an_open_job_and_gets_the_escrow_back(market: dict) -> None:
    code, out = requester_cli(market, "post", str(market["spec"]), "--payment", "4", "--json")
    assert code == 0, out
    job_id = json.loads(out)["job_id"]
    gw = Gateway(connect(market["rpc"], market["actors"]["requester"].account, market["manifest"]))
    before = gw.token_balance()
    code, out = requester_cli(market, "cancel", str(job_id))
    assert code == 0, out
    assert gw.token_balance() == before + 4 * TOKEN
    code, out = requester_cli(market, "withdraw")
    assert code == 0 and "nothing to withdraw" in out, out  # cancel refunds at once
    code, out = requester_cli(market, "cancel", str(job_id))
    assert code != 0 and "market: job not open" in out


def test_bad_spec_and_bad_amounts_fail_before_any_transaction(market: dict, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC_YAML.replace("total_steps: 4", "total_steps: 5"))
    code, out = requester_cli(market, "post", str(bad), "--payment", "1")
    assert code != 0 and "multiple of segment_steps" in out
    code, out = requester_cli(market, "post", str(market["spec"]), "--payment", "lots")
    assert code != 0 and "not a number of tokens" in out
    code, out = requester_cli(market, "post", str(market["spec"]), "--payment", "1e9")
    assert code != 0 and "holds" in out  # more than the wallet: no approve, no post


def test_fetch_verifies_the_final_model_against_the_commitment(market: dict, tmp_path: Path) -> None:
    from greenproof.engine import init_state
    from greenproof.spec import load_spec
    from greenproof.store import ArtifactStore

    code, out = requester_cli(market, "post", str(market["spec"]), "--payment", "2", "--json")
    job_id = json.loads(out)["job_id"]
    code, out = requester_cli(market, "fetch", str(job_id), "--out", str(tmp_path / "m.safetensors"),
                              account=None)
    assert code != 0 and "no result has been committed" in out

    provider = Gateway(connect(market["rpc"], market["actors"]["green"].account, market["manifest"]))
    store = ArtifactStore(tmp_path / "store")
    final = store.put(init_state(load_spec(str(market["spec"]))))
    provider.accept_job(job_id, b"\x01" * 32)
    provider.commit_result(job_id, b"\x02" * 32, final, 1_000, 1_000, f"file://{store._dir}")

    out_path = tmp_path / "model.safetensors"
    code, out = requester_cli(market, "fetch", str(job_id), "--out", str(out_path), account=None)
    assert code == 0, out
    assert "verified" in out and "load_file" in out
    assert set(load_file(str(out_path))) == set(store.get(final))

    # the provider swaps the file behind the hash: fetch refuses it
    other = store.put({k: v + 1 if v.is_floating_point() else v for k, v in store.get(final).items()})
    Path(store.path(final)).write_bytes(Path(store.path(other)).read_bytes())
    code, out = requester_cli(market, "fetch", str(job_id), "--out", str(tmp_path / "x.safetensors"),
                              account=None)
    assert code != 0 and "cannot fetch" in out


def test_post_refuses_what_a_provider_would_refuse_before_any_transaction(market: dict, tmp_path: Path) -> None:
    """A wrong dataset pin, a hosted spec that hashes differently, out-of-bound terms: each is
    refused with the limit named, and the requester's nonce shows nothing was sent."""
    gw = Gateway(connect(market["rpc"], market["actors"]["requester"].account, market["manifest"]))
    nonce = gw.chain.w3.eth.get_transaction_count(gw.address)
    wrong_pin = tmp_path / "pin.yaml"
    wrong_pin.write_text(SPEC_YAML.replace('dataset: {uri: "builtin://digits"}',
                                           'dataset: {uri: "builtin://digits", sha256: "' + "ab" * 32 + '"}'))
    other = tmp_path / "other.yaml"
    other.write_text(SPEC_YAML.replace("seed: 7", "seed: 8"))
    base = ["--payment", "10", "--duration", "600"]
    cases = [
        ([str(wrong_pin), *base], "dataset is unusable"),
        ([str(market["spec"]), *base, "--spec-uri", f"file://{other}"], "providers would skip the job"),
        ([str(market["spec"]), *base, "--audit-samples", "999"], f"too many audit samples: 999 (max {gw.param('max_audit_samples')})"),
        ([str(market["spec"]), "--payment", "10", "--duration", str(10**9)], "deadline too far"),
        ([str(market["spec"]), *base, "--collateral", "1"], "collateral too low: 1 (min 10"),
    ]
    for args, message in cases:
        code, out = requester_cli(market, "post", *args)
        assert code != 0 and message in out, (args, out)
    assert gw.chain.w3.eth.get_transaction_count(gw.address) == nonce


def test_quote_checks_everything_and_says_which_providers_would_take_the_job(market: dict) -> None:
    gw = Gateway(connect(market["rpc"], market["actors"]["requester"].account, market["manifest"]))
    # the unattested provider becomes known to the market by taking a job
    code, out = requester_cli(market, "post", str(market["spec"]), "--payment", "2", "--json")
    assert code == 0, out
    cheater = Gateway(connect(market["rpc"], market["actors"]["cheater"].account, market["manifest"]))
    cheater.accept_job(json.loads(out)["job_id"], b"\x01" * 32)
    nonce = gw.chain.w3.eth.get_transaction_count(gw.address)
    code, out = requester_cli(market, "quote", str(market["spec"]), "--payment", "10", "--duration", "600",
                              "--json")
    assert code == 0, out
    quote = json.loads(out)
    assert quote["audit_samples"] == gw.param("max_audit_samples") and quote["providers"], quote
    assert all(set(v) == {"provider", "accept", "reason"} for v in quote["providers"])
    code, out = requester_cli(market, "quote", str(market["spec"]), "--payment", "10", "--duration", "600",
                              "--min-green-bps", "10000")
    assert code == 0 and "would refuse (job needs green share 10000 bps" in out, out
    assert gw.chain.w3.eth.get_transaction_count(gw.address) == nonce


def test_status_of_an_open_job_says_which_providers_would_refuse_it_and_why(market: dict) -> None:
    code, out = requester_cli(market, "post", str(market["spec"]), "--payment", "2", "--duration", "600",
                              "--min-green-bps", "10000", "--json")
    assert code == 0, out
    job_id = json.loads(out)["job_id"]
    code, out = requester_cli(market, "status", str(job_id), account=None)
    assert code == 0, out
    assert "waiting      no provider has accepted it yet" in out and "min_class_stake" not in out, out
    # both staked providers are known (from their stake, whether or not they took a job) and refuse
    for role in ("green", "cheater"):
        who = market["actors"][role].address
        assert f"{who[:10]}… would refuse: job needs green share 10000 bps" in out, out
    code, out = requester_cli(market, "watch", str(job_id), "--timeout", "0", account=None)
    assert code == 1 and out.startswith(f"job {job_id}: OPEN\n") and "would refuse" in out, out
    assert requester_cli(market, "cancel", str(job_id))[0] == 0


def test_cancel_of_a_missing_job_and_fetch_of_a_cancelled_one_say_so(market: dict, tmp_path: Path) -> None:
    code, out = requester_cli(market, "cancel", "999")
    assert code != 0 and "job 999 does not exist" in out, out
    code, out = requester_cli(market, "post", str(market["spec"]), "--payment", "1", "--duration", "600",
                              "--json")
    assert code == 0, out
    job_id = json.loads(out)["job_id"]
    assert requester_cli(market, "cancel", str(job_id))[0] == 0
    code, out = requester_cli(market, "fetch", str(job_id), "--out", str(tmp_path / "m.safetensors"),
                              account=None)
    assert code != 0 and f"job {job_id} is CANCELLED: there is no verified model" in out, out


def test_green_premium_is_escrowed_and_a_bait_deadline_is_refused(market: dict) -> None:
    gw = Gateway(connect(market["rpc"], market["actors"]["requester"].account, market["manifest"]))
    before = gw.token_balance()
    code, out = requester_cli(market, "post", str(market["spec"]), "--payment", "4",
                              "--green-premium", "2.5", "--json")
    assert code == 0, out
    posted = json.loads(out)
    assert posted["green_premium"] == 25 * TOKEN // 10
    assert gw.token_balance() == before - 65 * TOKEN // 10  # payment + premium (no fee)
    assert gw.job(posted["job_id"]).green_premium == 25 * TOKEN // 10
    code, out = requester_cli(market, "post", str(market["spec"]), "--payment", "4", "--duration", "10")
    assert code != 0 and "deadline too soon: 10 s from now (min 300 s)" in out, out


def test_close_ends_an_open_job_past_its_deadline_with_a_refund(market: dict) -> None:
    code, out = requester_cli(market, "post", str(market["spec"]), "--payment", "3",
                              "--green-premium", "1", "--duration", "400", "--json")
    assert code == 0, out
    job_id = json.loads(out)["job_id"]
    code, out = requester_cli(market, "close", str(job_id), account="green")  # anyone may call
    assert code != 0 and "waits for its deadline" in out, out
    gw = Gateway(connect(market["rpc"], market["actors"]["requester"].account, market["manifest"]))
    gw.chain.w3.provider.make_request("evm_increaseTime", [401])
    gw.chain.w3.provider.make_request("evm_mine", [])
    before = gw.claimable()
    code, out = requester_cli(market, "close", str(job_id), account="green")
    assert code == 0 and "OPEN -> EXPIRED" in out, out
    assert gw.claimable() == before + 4 * TOKEN  # payment + premium back to the requester
    code, out = requester_cli(market, "close", str(job_id), account="green")
    assert code == 0 and "already final" in out, out
