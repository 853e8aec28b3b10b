"""Network choice -> RPC URL and --account choice -> signer."""

from __future__ import annotations

import json

import pytest
from eth_account import Account

from greenproof.chain.accounts import AccountError, dev_account, load_account
from greenproof.chain.network import DEFAULT_LOCAL_RPC, NetworkError, resolve_rpc

# anvil's documented default accounts 0 and 1 (m/44'/60'/0'/0/N of the test mnemonic)
ANVIL_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
ANVIL_1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ANVIL_9 = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ("GREENPROOF_RPC_URL", "SEPOLIA_RPC_URL", "HOLESKY_RPC_URL", "GREENPROOF_PASSPHRASE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path / "ape"))


# -- networks -----------------------------------------------------------------


def test_local_foundry_defaults_to_anvil_port_and_honours_override(monkeypatch):
    assert resolve_rpc("ethereum:local:foundry") == DEFAULT_LOCAL_RPC
    monkeypatch.setenv("GREENPROOF_RPC_URL", "http://127.0.0.1:9999")
    assert resolve_rpc("ethereum:local:foundry") == "http://127.0.0.1:9999"


def test_in_process_test_network_is_refused_with_a_way_out():
    with pytest.raises(NetworkError, match="ethereum:local:foundry"):
        resolve_rpc("ethereum:local:test")


def test_sepolia_without_rpc_url_says_what_to_set():
    with pytest.raises(NetworkError, match="ethereum:sepolia:node needs SEPOLIA_RPC_URL"):
        resolve_rpc("ethereum:sepolia:node")


def test_remote_node_reads_its_network_variable(monkeypatch):
    monkeypatch.setenv("SEPOLIA_RPC_URL", "https://rpc.example/sepolia")
    monkeypatch.setenv("HOLESKY_RPC_URL", "wss://rpc.example/holesky")
    assert resolve_rpc("ethereum:sepolia:node") == "https://rpc.example/sepolia"
    assert resolve_rpc("ethereum:holesky:node") == "wss://rpc.example/holesky"


def test_remote_node_variable_must_be_a_url(monkeypatch):
    monkeypatch.setenv("SEPOLIA_RPC_URL", "sepolia.example")
    with pytest.raises(NetworkError, match="not an http"):
        resolve_rpc("ethereum:sepolia:node")


@pytest.mark.parametrize("url", ["http://10.0.0.2:8545", "https://x.example/rpc", "ws://h:1"])
def test_raw_urls_pass_through(url):
    assert resolve_rpc(url) == url


@pytest.mark.parametrize("bad", ["", "sepolia", "ethereum::node", "a:b:c:d", "ethereum:local:ganache"])
def test_unparseable_choices_raise(bad):
    with pytest.raises(NetworkError):
        resolve_rpc(bad)


# -- accounts -----------------------------------------------------------------


def test_test_accounts_are_anvils_default_accounts():
    assert load_account("TEST::0").address == ANVIL_0
    assert load_account("TEST::1").address == ANVIL_1
    assert dev_account(9).address == ANVIL_9


def test_test_accounts_match_apes_derivation():
    from ape.utils.testing import generate_dev_accounts

    ape_accounts = generate_dev_accounts(
        "test test test test test test test test test test test junk", number_of_accounts=3
    )
    assert [a.address for a in ape_accounts] == [dev_account(i).address for i in range(3)]


def test_env_account_reads_hex_key(monkeypatch):
    key = "0x" + "ab" * 32
    monkeypatch.setenv("PROVIDER_KEY", key[2:])  # without 0x works too
    assert load_account("env:PROVIDER_KEY").address == Account.from_key(key).address


def test_env_account_errors_are_actionable(monkeypatch):
    with pytest.raises(AccountError, match="MISSING_KEY is unset"):
        load_account("env:MISSING_KEY")
    monkeypatch.setenv("BAD_KEY", "not-hex")
    with pytest.raises(AccountError, match="valid hex private key") as err:
        load_account("env:BAD_KEY")
    assert "not-hex" not in str(err.value)  # never echo key material


def _write_keystore(path, key: str, passphrase: str) -> str:
    keyfile = Account.encrypt(key, passphrase, iterations=2)  # cheap KDF for the test
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keyfile))
    return Account.from_key(key).address


def test_ape_alias_keystore_roundtrip_with_greenproof_passphrase(monkeypatch, tmp_path):
    key = "0x" + "11" * 32
    address = _write_keystore(tmp_path / "ape" / "accounts" / "alice.json", key, "s3cret")
    monkeypatch.setenv("GREENPROOF_PASSPHRASE", "s3cret")
    account = load_account("alice")
    assert account.address == address
    assert account.key.hex().removeprefix("0x") == key[2:]


def test_ape_alias_keystore_uses_apes_own_passphrase_variable(monkeypatch, tmp_path):
    address = _write_keystore(tmp_path / "ape" / "accounts" / "bob.json", "0x" + "22" * 32, "pw")
    monkeypatch.setenv("APE_ACCOUNTS_bob_PASSPHRASE", "pw")
    assert load_account("bob").address == address


def test_keystore_path_and_wrong_passphrase(monkeypatch, tmp_path):
    path = tmp_path / "keys" / "op.json"
    address = _write_keystore(path, "0x" + "33" * 32, "right")
    monkeypatch.setenv("GREENPROOF_PASSPHRASE", "right")
    assert load_account(f"keystore:{path}").address == address
    monkeypatch.setenv("GREENPROOF_PASSPHRASE", "wrong")
    with pytest.raises(AccountError, match="wrong passphrase"):
        load_account(f"keystore:{path}")


def test_keystore_without_passphrase_and_no_tty_fails_clearly(monkeypatch, tmp_path):
    _write_keystore(tmp_path / "ape" / "accounts" / "carol.json", "0x" + "44" * 32, "pw")
    monkeypatch.setattr("sys.stdin", open("/dev/null"))  # not a terminal
    with pytest.raises(AccountError, match="GREENPROOF_PASSPHRASE"):
        load_account("carol")


def test_unknown_alias_points_to_ape_accounts_import():
    with pytest.raises(AccountError, match="ape accounts import nobody"):
        load_account("nobody")


@pytest.mark.parametrize("bad", ["", "TEST::x", "TEST::-1", "./key.json"])
def test_malformed_account_choices(bad):
    with pytest.raises(AccountError):
        load_account(bad)


def test_test_accounts_beyond_anvils_ten_are_refused_with_the_range() -> None:
    assert load_account("TEST::9").address
    with pytest.raises(AccountError, match=r"TEST::99 is beyond anvil's 10 funded test accounts \(TEST::0 … TEST::9\)"):
        load_account("TEST::99")
