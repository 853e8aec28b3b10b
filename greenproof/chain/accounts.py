"""``--account`` choice -> a signing ``LocalAccount``.

Accepted forms (never logged with key material):

- ``TEST::N``: test account ``N`` of the mnemonic
  ``test test … junk`` on ``m/44'/60'/0'/0/N``; the same accounts ape's test
  provider and anvil pre-fund.
- ``ALIAS``: an ape keystore ``$APE_DATA_FOLDER/accounts/ALIAS.json`` (default
  ``~/.ape/accounts``), as created by ``ape accounts import``.
- ``keystore:/path/to/file.json``: any Ethereum v3 keystore file.
- ``env:VAR``: a hex private key in environment variable ``VAR``.

Keystore passphrases come from ``$GREENPROOF_PASSPHRASE``, then
``$APE_ACCOUNTS_<ALIAS>_PASSPHRASE`` (ape's own variable), then an interactive
prompt, which is only offered when stdin is a terminal.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

log = logging.getLogger(__name__)

TEST_MNEMONIC = "test test test test test test test test test test test junk"
TEST_HD_PATH = "m/44'/60'/0'/0/{}"

Account.enable_unaudited_hdwallet_features()


class AccountError(Exception):
    """An ``--account`` choice that cannot be loaded; the message says how to fix it."""


def ape_accounts_dir() -> Path:
    """Where ape keeps keystores: ``$APE_DATA_FOLDER/accounts`` or ``~/.ape/accounts``."""
    data = os.environ.get("APE_DATA_FOLDER")
    return (Path(data) if data else Path.home() / ".ape") / "accounts"


#: anvil (and ape's local chain) fund this many test accounts by default: TEST::0 … TEST::9.
DEV_ACCOUNTS = 10


def dev_account(index: int) -> LocalAccount:
    """Test account ``index`` (anvil's and ape's default pre-funded accounts)."""
    if index < 0:
        raise AccountError(f"account: TEST::{index} needs a non-negative index")
    if index >= DEV_ACCOUNTS:
        raise AccountError(
            f"account: TEST::{index} is beyond anvil's {DEV_ACCOUNTS} funded test accounts "
            f"(TEST::0 … TEST::{DEV_ACCOUNTS - 1}); it would hold no ETH for gas"
        )
    return Account.from_mnemonic(TEST_MNEMONIC, account_path=TEST_HD_PATH.format(index))


def load_account(name: str) -> LocalAccount:
    """Resolve an ``--account`` choice (see module docstring) to a ``LocalAccount``.

    Raises:
        AccountError: unknown alias, missing file or variable, bad key or passphrase.
    """
    choice = (name or "").strip()
    if not choice:
        raise AccountError("account: no account given (use --account or $GREENPROOF_ACCOUNT)")
    if choice.upper().startswith("TEST::"):
        raw = choice[len("TEST::"):]
        if not raw.isdigit():
            raise AccountError(f"account: {choice!r}: expected TEST::<index>, e.g. TEST::0")
        return dev_account(int(raw))
    if choice.startswith("env:"):
        return _from_env(choice[len("env:"):])
    if choice.startswith("keystore:"):
        path = Path(choice[len("keystore:"):]).expanduser()
        return _from_keystore(path, label=str(path), alias=path.stem)
    if "/" in choice or choice.endswith(".json"):
        raise AccountError(f"account: {choice!r} looks like a path; write keystore:{choice}")
    path = ape_accounts_dir() / f"{choice}.json"
    if not path.exists():
        raise AccountError(
            f"account: no ape account {choice!r} (looked for {path}); import one with "
            f"`ape accounts import {choice}`, or use TEST::N, env:VAR or keystore:PATH"
        )
    return _from_keystore(path, label=f"ape account {choice!r}", alias=choice)


def _from_env(var: str) -> LocalAccount:
    if not var:
        raise AccountError("account: env: needs a variable name, e.g. env:PROVIDER_KEY")
    key = os.environ.get(var, "").strip()
    if not key:
        raise AccountError(f"account: environment variable {var} is unset or empty")
    try:
        return Account.from_key(key if key.startswith("0x") else "0x" + key)
    except Exception as exc:  # noqa: BLE001 - eth-account raises several types
        raise AccountError(
            f"account: {var} does not hold a valid hex private key ({type(exc).__name__})"
        ) from None


def _passphrase(alias: str, label: str) -> str:
    for var in ("GREENPROOF_PASSPHRASE", f"APE_ACCOUNTS_{alias}_PASSPHRASE",
                f"APE_ACCOUNTS_{alias.upper()}_PASSPHRASE"):
        value = os.environ.get(var)
        if value is not None:
            log.debug("using keystore passphrase for %s from $%s", label, var)
            return value
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(f"Passphrase for {label}: ")
    raise AccountError(
        f"account: {label} is encrypted and no passphrase is available; set "
        f"GREENPROOF_PASSPHRASE (or APE_ACCOUNTS_{alias}_PASSPHRASE) or run interactively"
    )


def _from_keystore(path: Path, *, label: str, alias: str) -> LocalAccount:
    try:
        keyfile = json.loads(path.read_text())
    except FileNotFoundError:
        raise AccountError(f"account: keystore file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise AccountError(f"account: cannot read keystore {path}: {exc}") from None
    passphrase = _passphrase(alias, label)
    try:
        key = Account.decrypt(keyfile, passphrase)
    except ValueError:
        raise AccountError(f"account: wrong passphrase for {label}") from None
    except Exception as exc:  # noqa: BLE001 - malformed keystores raise assorted errors
        raise AccountError(f"account: {path} is not a valid keystore ({type(exc).__name__})") from None
    return Account.from_key(key)
