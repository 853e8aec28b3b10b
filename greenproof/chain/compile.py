"""Compile the Vyper contracts without ape, with a content-addressed cache.

The demo, the integration tests and the benchmarks deploy with web3 (see
:mod:`greenproof.chain.deploy`), so they need ABIs and bytecode without starting
ape. We call the pip-installed vyper 0.4.3 through its Python API (no
subprocess per contract) with ``sys.path`` on the search path, which is where
snekmate lives, exactly like the ``vyper`` command does.

The cache key is the SHA-256 of every ``.vy``/``.vyi`` file under ``contracts/``
(names and bytes) plus the vyper version, so any change to a contract, a mock or
an interface recompiles everything once; the artifacts are one JSON file
``.build/greenproof/<key>.json`` (``{"vyper": …, "contracts": {Name: {"abi", "bytecode"}}}``).
We do not reuse ape's ``.build`` so that nothing depends on ``ape compile``
having run, and ape's own cache layout can change freely.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class CompileError(Exception):
    """A contract does not compile, or the contracts folder is missing."""


class Artifact(BaseModel):
    """ABI and deployment bytecode of one contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str


def contracts_dir() -> Path:
    """``$GREENPROOF_CONTRACTS`` or the repository's ``contracts/``."""
    path = Path(os.environ.get("GREENPROOF_CONTRACTS") or PROJECT_ROOT / "contracts")
    if not path.is_dir():
        raise CompileError(f"compile: contracts folder {path} not found (set GREENPROOF_CONTRACTS)")
    return path


def cache_dir() -> Path:
    return Path(os.environ.get("GREENPROOF_BUILD_DIR") or PROJECT_ROOT / ".build" / "greenproof")


def _sources(root: Path) -> list[Path]:
    """Deployable sources: every ``.vy`` except shared ``modules/`` and ``_scratch.vy`` files."""
    return sorted(
        p for p in root.rglob("*.vy")
        if "modules" not in p.relative_to(root).parts and not p.name.startswith("_")
    )


def source_key(root: Path | None = None) -> str:
    import vyper

    root = root or contracts_dir()
    digest = hashlib.sha256(f"vyper {vyper.__version__}\n".encode())
    for path in sorted(list(root.rglob("*.vy")) + list(root.rglob("*.vyi"))):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def compile_contracts(root: Path | None = None, *, use_cache: bool = True) -> dict[str, Artifact]:
    """ABI + bytecode of every deployable contract under ``root``, keyed by contract name.

    Raises:
        CompileError: with vyper's message and the file that failed.
    """
    root = (root or contracts_dir()).resolve()
    key = source_key(root)
    cached = cache_dir() / f"{key}.json"
    if use_cache and cached.exists():
        try:
            data = json.loads(cached.read_text())
            return {n: Artifact(name=n, **a) for n, a in data["contracts"].items()}
        except (ValueError, KeyError, TypeError):
            log.warning("compile: ignoring unreadable cache %s", cached)

    import vyper
    from vyper.cli.vyper_compile import compile_files

    artifacts: dict[str, Artifact] = {}
    cwd = os.getcwd()
    try:
        os.chdir(root)  # vyper resolves relative imports against the search path "."
        for path in _sources(root):
            rel = path.relative_to(root)
            log.info("compile: %s (vyper %s)", rel, vyper.__version__)
            try:
                out = compile_files([str(rel)], ("abi", "bytecode"), paths=[str(root)])
            except Exception as exc:  # noqa: BLE001 - vyper raises many exception types
                raise CompileError(f"compile: {rel} failed: {exc}") from None
            result = next(iter(out.values()))
            bytecode = result["bytecode"]
            if not bytecode or bytecode == "0x":
                continue  # an interface-only or module-only file
            artifacts[path.stem] = Artifact(name=path.stem, abi=result["abi"], bytecode=bytecode)
    finally:
        os.chdir(cwd)

    cache_dir().mkdir(parents=True, exist_ok=True)
    payload = {"vyper": vyper.__version__, "key": key,
               "contracts": {n: a.model_dump(exclude={"name"}) for n, a in artifacts.items()}}
    fd, tmp = tempfile.mkstemp(dir=cache_dir(), suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh)
    os.replace(tmp, cached)  # atomic: concurrent compilers never see half a file
    return artifacts


def artifact(name: str) -> Artifact:
    """One compiled contract by name (``JobMarket``, ``MockToken``, …)."""
    arts = compile_contracts()
    if name not in arts:
        raise CompileError(f"compile: no contract {name!r} under {contracts_dir()} ({sorted(arts)})")
    return arts[name]
