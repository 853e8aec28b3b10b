"""`greenproof spec / train / replay` as a user runs them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from greenproof.cli import cli

SPEC = {
    "task": "gpt",
    "model": {"block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16},
    "dataset": {"uri": "builtin://text/founding"},
    "batch_size": 4,
    "total_steps": 6,
    "segment_steps": 2,
    "seed": 2,
}


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(SPEC))
    return path


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_spec_prints_hash_and_summary(spec_file):
    from greenproof.spec import load_spec

    r = run("spec", str(spec_file))
    assert r.exit_code == 0, r.output
    assert f"0x{load_spec(spec_file).spec_hash().hex()}" in r.output
    assert "3 segments x 2" in r.output and "dataset sha256 963467ef" in r.output


def test_train_then_replay_matches(spec_file, tmp_path):
    out = tmp_path / "run"
    r = run("train", "--spec", str(spec_file), "--out", str(out), "--device", "cpu", "--threads", "1", "--job-id", "5")
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "run.json").read_text())
    assert doc["job_id"] == 5 and doc["root"] in r.output
    assert f"0x{doc['state_hashes'][-1]}" in r.output and "energy" in r.output
    assert len(list((out / "checkpoints").iterdir())) == 4

    ok = run("replay", "--spec", str(spec_file), "--segment", "1", "--from", str(out), "--threads", "1")
    assert ok.exit_code == 0, ok.output
    assert "MATCH" in ok.output and doc["state_hashes"][2] in ok.output

    bad = CliRunner().invoke(
        cli, ["replay", "--spec", str(spec_file), "--segment", "1", "--from", str(out), "--threads", "1", "--expect", "0x" + "ab" * 32]
    )
    assert bad.exit_code == 1 and "MISMATCH" in bad.output


def test_errors_are_one_line(tmp_path, spec_file):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**SPEC, "total_steps": 7}))
    r = CliRunner().invoke(cli, ["spec", str(bad)])
    assert r.exit_code != 0
    assert "Error: JobSpecError: total_steps (7) must be a multiple of segment_steps (2)" in r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["replay", "--spec", str(spec_file), "--segment", "0", "--from", str(tmp_path)])
    assert r.exit_code != 0 and "no readable run record" in r.output
