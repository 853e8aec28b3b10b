"""Child daemons never outlive the demo: SIGTERM to the group, SIGKILL for the stubborn."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from greenproof.procs import Supervisor

STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purposes
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_stubborn_children_and_grandchildren_are_all_stopped(tmp_path: Path) -> None:
    sup = Supervisor(grace=0.5)
    polite = sup.spawn("polite", [sys.executable, "-c", "import time; time.sleep(600)"],
                       tmp_path / "polite.log")
    stubborn = sup.spawn("stubborn", [sys.executable, "-c", STUBBORN], tmp_path / "stubborn.log")
    for _ in range(100):
        text = stubborn.log_path.read_text().strip()
        if text:
            break
        time.sleep(0.05)
    grandchild = int(text)
    assert _alive(grandchild) and polite.alive and stubborn.alive
    sup.stop_all()
    assert not polite.alive and not stubborn.alive
    for _ in range(50):
        if not _alive(grandchild):
            break
        time.sleep(0.05)
    assert not _alive(grandchild), "grandchild survived its process group"
    assert polite.proc.returncode is not None and stubborn.proc.returncode is not None
    sup.stop_all()  # idempotent
