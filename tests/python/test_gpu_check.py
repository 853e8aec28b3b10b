"""bench/gpu_check.py is ready to run: its CPU smoke mode goes through every code path (train
with commitments and without, same-device replay, cross-class comparison, energy, the boundary
pipeline) and writes its JSON; without CUDA the real check refuses cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
GPU_CHECK = ROOT / "bench" / "gpu_check.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GPU_CHECK), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_smoke_run_covers_every_check_and_writes_its_json(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = run("--cpu-smoke", "--out", str(out), "--tmp", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["bench"] == "gpu_check"
    assert "smoke" in doc["machine"]["note"]
    rows = {r["check"]: r for r in doc["rows"]}
    assert set(rows) == {"mlp-fp32", "cnn-fp32", "gpt-fp32", "gpt-bf16", "gpt50m-fp32", "boundary-pipeline"}
    for name, row in rows.items():
        if name == "boundary-pipeline":
            continue
        assert row["replay"]["hash_match"] and row["replay"]["work_digest_match"], name
        assert len(row["energy_j_per_segment"]) == row["segments"]
        assert row["energy_source"]
        if name != "gpt50m-fp32":  # on the CPU the "cross-class" replay is the same class: exact
            assert row["cross_class"]["worst_distance"] == 0.0
            assert row["cross_class"]["within_tolerance"]
    assert rows["gpt50m-fp32"]["stand_in"] == "gpt"
    pipeline = rows["boundary-pipeline"]
    assert pipeline["constructed_not_trained"] and pipeline["params"] == 200_000
    assert pipeline["state_bytes"] >= 12 * 200_000
    figures = doc["figures"]
    assert figures["replay_match_all"] == 1.0 and figures["checks_failed"] == 0
    for key in ("d2h_gbps", "hash_gbps", "write_gbps", "movement_gbps", "big_boundary_s"):
        assert figures[key] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the real check would run")
def test_without_cuda_it_says_so_and_exits_non_zero(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = run("--out", str(out))
    assert done.returncode == 2
    assert "no CUDA device" in done.stderr and "--cpu-smoke" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()
