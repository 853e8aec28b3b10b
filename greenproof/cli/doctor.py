"""``greenproof doctor``: is this node, this deployment and this data dir in order?

Checks, in order, and prints one line per check with what to do when it fails:

1. the node answers (chain id, head block, how old the head is);
2. the deployment manifest is for this chain, every contract in it has code at
   its address, and the deployment block exists (a node reset to an earlier
   state, or another chain behind the same URL, shows up here);
3. every journal in the given data dirs (a worker's ``journal.sqlite``, a
   verifier's ``verifier.sqlite``) follows this manifest's market, was bound to
   this chain (its genesis and deployment block hashes: a chain reset and
   redeployed at the same addresses has others, and the daemon refuses the
   journal), and has its cursor at or below the head (a journal ahead of the
   chain would make a daemon ignore every new job without a word);
4. the account, when given: gas money, tokens, stake (free, locked,
   unbonding) and what the market owes it.

Exit 0 when nothing failed (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import click

from greenproof.cli.options import chain_options, connect_from_options


@dataclass(frozen=True)
class Finding:
    level: str  # "ok", "warn", "fail"
    what: str
    detail: str
    fix: str = ""


def _node(chain) -> list[Finding]:  # noqa: ANN001 - a greenproof Chain
    head = chain.block_number()
    age = int(time.time()) - chain.timestamp(head)
    out = [Finding("ok", "node", f"{chain.rpc_url}: chain {chain.chain_id}, head block {head}")]
    if age > 600:
        out.append(Finding("warn", "node", f"the head block is {age} s old",
                           "is the node syncing, or a dev chain without --block-time? "
                           "(audit seeds need new blocks)"))
    return out


def _deployment(chain) -> list[Finding]:  # noqa: ANN001
    dep = chain.deployment
    if dep is None:
        return [Finding("fail", "manifest", f"no deployment manifest for chain {chain.chain_id}",
                        "run `greenproof deploy` (dev chains) or `ape run deploy`, or pass --deployment PATH")]
    out = []
    head = chain.block_number()
    if dep.deployment_block > head:
        out.append(Finding("fail", "manifest", f"deployed at block {dep.deployment_block}, but the chain "
                           f"is at block {head}", "the node was reset: redeploy and move the old "
                           "deployments/ manifest and data dirs away"))
    elif dep.deployment_block_hash is not None:
        have = "0x" + bytes(chain.w3.eth.get_block(dep.deployment_block)["hash"]).hex()
        if have.lower() != dep.deployment_block_hash.lower():
            out.append(Finding("fail", "manifest", f"block {dep.deployment_block} on this chain is {have[:18]}…, the "
                               f"manifest was deployed in {dep.deployment_block_hash[:18]}…",
                               "the node was reset (and maybe redeployed at the same addresses): redeploy "
                               "(`greenproof deploy --force`) and move the old data dirs away"))
    for name in dep.abis:
        address, _abi = dep.contract(name)
        code = chain.w3.eth.get_code(address)
        if len(code) == 0:
            out.append(Finding("fail", "manifest", f"{name} at {address} has no code on this chain",
                               "the manifest is for another chain or a reset node: redeploy "
                               "(`greenproof deploy --force`)"))
    if not out:
        out.append(Finding("ok", "manifest", f"{len(dep.abis)} contracts with code, deployed at "
                           f"block {dep.deployment_block}"))
    return out


@dataclass(frozen=True)
class JournalCursor:
    """One cursor a journal holds: whose it is, the market it follows, the last block it read,
    and the chain identity (genesis and deployment block hashes) it was bound to, if any."""

    what: str
    market: str | None
    cursor: int | None
    identity: str | None


def _journal_cursors(path: Path) -> list[JournalCursor]:
    """The cursors a journal file holds (worker: one; verifier: one per chain and market)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "cursor" in tables:  # verifier: next block to scan, per (chain, market)
            ids = {}
            if "identity" in tables:
                ids = {(int(c), m.lower()): i for c, m, i in
                       db.execute("SELECT chain_id, market, identity FROM identity")}
            rows = db.execute("SELECT chain_id, market, next_block FROM cursor").fetchall()
            keys = dict.fromkeys([(int(c), m.lower()) for c, m, _ in rows] + list(ids))
            nexts = {(int(c), m.lower()): int(n) for c, m, n in rows}
            return [JournalCursor(f"verifier, chain {c}", m, nexts[(c, m)] - 1 if (c, m) in nexts else None,
                                  ids.get((c, m))) for c, m in keys]
        if "meta" in tables:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                return []
            binding = meta.get("binding", "")  # chain:market:provider
            market = binding.split(":")[1] if binding.count(":") == 2 else None
            cursor = meta.get("cursor")
            return [JournalCursor("worker", market, None if cursor is None else int(cursor),
                                  meta.get("chain_identity"))]
        return []
    finally:
        db.close()


def _journals(chain, data_dirs: tuple[Path, ...]) -> list[Finding]:  # noqa: ANN001
    out = []
    head = chain.block_number()
    market = chain.deployment.job_market.lower()
    identity: str | None = None
    for d in data_dirs:
        files = [d / "journal.sqlite", d / "verifier.sqlite"]
        found = [f for f in files if f.exists()]
        if not found:
            out.append(Finding("warn", "journal", f"no journal in {d}", "a daemon creates one on its first run"))
        for f in found:
            try:
                cursors = _journal_cursors(f)
            except sqlite3.DatabaseError as exc:
                out.append(Finding("fail", "journal", f"{f}: unreadable ({exc})", "move it away"))
                continue
            for jc in cursors:
                where = f"{f} ({jc.what})"
                if jc.market is not None and jc.market != market:
                    out.append(Finding(
                        "warn", "journal", f"{where} follows market {jc.market}, not this manifest's "
                        f"{market}", "a daemon started with this --data-dir and this manifest refuses "
                        "to run (worker) or keeps a separate cursor (verifier): use one data dir per "
                        "deployment"))
                    continue
                if jc.identity is not None:
                    if identity is None:
                        try:
                            identity = chain.identity(chain.deployment.deployment_block)
                        except Exception as exc:  # noqa: BLE001 - the manifest check says why
                            identity = f"unreadable: {exc}"
                    if jc.identity != identity:
                        out.append(Finding(
                            "fail", "journal", f"{where} was written on another chain with the same id "
                            "and addresses (its genesis or deployment block hash differs): the chain "
                            "was reset and redeployed", "its daemon refuses to start: move this data "
                            "dir away, or start the daemon with a fresh --data-dir"))
                        continue
                if jc.cursor is None:
                    out.append(Finding("ok", "journal", f"{where} has not read any block yet"))
                elif jc.cursor > head:
                    out.append(Finding(
                        "fail", "journal", f"{where} has read up to block {jc.cursor}, the chain is "
                        f"at {head}", "the chain was reset under this data dir: its daemon would "
                        "ignore every new job; start it with a fresh --data-dir (or move this one away)"))
                else:
                    out.append(Finding("ok", "journal", f"{where} at block {jc.cursor} of {head}"
                                       + (", bound to this chain" if jc.identity else "")))
    return out


def _account(chain) -> list[Finding]:  # noqa: ANN001
    from greenproof.chain.gateway import Gateway

    gw = Gateway(chain)
    me = chain.address
    eth = chain.balance(me)
    out = [Finding("ok" if eth > 0 else "fail", "account", f"{me}: {eth / 1e18:.6f} ETH for gas",
                   "" if eth > 0 else "send it some ETH: every transaction pays gas")]
    decimals = gw.token_decimals()
    scale = 10**decimals
    staked, free = gw.staked(me), gw.free_stake(me)
    unbonding, release = gw.unbonding(me)
    out.append(Finding("ok", "account", f"tokens {gw.token_balance(me) / scale:g}, staked {staked / scale:g} "
                       f"(free {free / scale:g}, locked {(staked - free) / scale:g}), unbonding "
                       f"{unbonding / scale:g}" + (f" until {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(release))} UTC"
                                                   if unbonding else "")))
    owed = gw.claimable(me)
    if owed:
        out.append(Finding("warn", "account", f"the market owes this account {owed / scale:g} tokens",
                           "`greenproof provider withdraw` (or requester/verifier withdraw) pays it out"))
    return out


MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def _width() -> int | None:
    """The terminal's width, or None when the output is piped (one line per finding then)."""
    import shutil
    import sys

    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _render(findings: list[Finding], width: int | None) -> list[str]:
    """One line per finding (and one per fix), each wrapped under its own column on a
    terminal of ``width`` columns; whole lines when ``width`` is None."""
    import textwrap

    out = []
    for f in findings:
        rows = [(f"{MARKS[f.level]} {f.what:9} ", f.detail)]
        if f.fix and f.level != "ok":
            rows.append((f"{'':15}-> ", f.fix))
        for prefix, text in rows:
            if width is None or width - len(prefix) < 20:
                out.append(prefix + text)
            else:
                out += textwrap.wrap(text, width=width - 1, initial_indent=prefix,
                                     subsequent_indent=" " * len(prefix), break_on_hyphens=False)
    return out


def _default_data_dirs() -> tuple[Path, ...]:
    """The worker's and the verifier's default data dirs (``./worker-data``, ``./verifier-data``)
    and the folders in them that hold a journal (the README's ``verifier-data/a``), where they exist."""
    out = []
    for root in (Path("worker-data"), Path("verifier-data")):
        if not root.is_dir():
            continue
        if (root / "journal.sqlite").exists() or (root / "verifier.sqlite").exists():
            out.append(root)
        out += sorted(d for d in root.iterdir()
                      if d.is_dir() and ((d / "journal.sqlite").exists() or (d / "verifier.sqlite").exists()))
    return tuple(out)


@click.command()
@chain_options
@click.option("--data-dir", "data_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="A worker's or verifier's data dir whose journal to check (repeatable; default: "
                   "./worker-data and ./verifier-data, and the folders in them, where they exist).")
def doctor(network: str, account: str | None, deployment: Path | None, confirmations: int,
           data_dirs: tuple[Path, ...]) -> None:
    """Check the node, the manifest against the chain, the journals and the account; say what to do."""
    chain = connect_from_options(network, account, deployment, need_account=False,
                                 need_deployment=False, confirmations=confirmations)
    findings = _node(chain) + _deployment(chain)
    if chain.deployment is not None:
        findings += _journals(chain, data_dirs or _default_data_dirs())
        if chain.account is not None:
            findings += _account(chain)
    for line in _render(findings, _width()):
        click.echo(line)
    failed = sum(f.level == "fail" for f in findings)
    click.echo(f"{failed} problem(s) found" if failed else "all checks passed")
    raise SystemExit(1 if failed else 0)
