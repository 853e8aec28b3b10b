"""The adversaries package (cheats, simulated runs) stays out of the honest worker and verifier."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HONEST = ["worker.daemon", "worker.cli", "worker.server", "verifier.daemon", "verifier.cli", "greenproof.cli"]


def test_honest_worker_and_verifier_never_import_the_adversaries():
    """Importing the daemons and CLIs (no ``--cheat`` given) loads no ``greenproof.adversaries`` module."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {HONEST!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('greenproof.adversaries'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == []
