"""`greenproof verifier judge`: one segment from local files or URIs, a JSON verdict, a stable exit code."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from greenproof.adversaries.simulate import simulate_run
from greenproof.cli import cli
from greenproof.spec import parse_spec
from verifier.evidence import CHECKS

SPEC = {"task": "mlp", "model": {"hidden": 8, "depth": 1}, "batch_size": 10,
        "total_steps": 6, "segment_steps": 2, "seed": 3}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A file dataset, a spec pinning it, and an honest run's boundary checkpoints on disk."""
    d = tmp_path_factory.mktemp("judge")
    rng = np.random.default_rng(0)
    np.savez(d / "blobs.npz", x=rng.normal(size=(40, 4)).astype(np.float32), y=rng.integers(0, 2, 40))
    digest = hashlib.sha256((d / "blobs.npz").read_bytes()).hexdigest()
    spec_doc = {**SPEC, "dataset": {"uri": f"file://{d}/blobs.npz", "sha256": digest}}
    (d / "spec.json").write_text(json.dumps(spec_doc))
    run = simulate_run(parse_spec(spec_doc), measure_energy=False)
    for k, h in enumerate(run.hashes):
        save_file({n: t.contiguous() for n, t in run.states[h].items()}, str(d / f"b{k}.safetensors"))
    return d, run


def judge(*args):
    result = CliRunner().invoke(cli, ["verifier", "judge", *args])
    return result.exit_code, (json.loads(result.output) if result.output.startswith("{") else result.output)


def test_an_honest_segment_is_ok_with_every_check_listed(files):
    d, _ = files
    code, out = judge("--spec", str(d / "spec.json"), "--segment", "1", "--start", str(d / "b1.safetensors"),
                      "--end", str(d / "b2.safetensors"), "--provider-class", "same")
    assert code == 0 and out["verdict"] == "ok", out
    # judged from files: no job committed a seal or a movement, so the seal and movement checks do not
    # run, and the triangle is a job's check (its known boundaries), not a segment's
    assert list(out["checks"]) == [c for c in CHECKS if c not in ("opened", "seal", "movement", "triangle")]
    assert set(out["checks"].values()) == {"ok"} and out["replay_hash"] == out["end_hash"]


def test_segment_zero_starts_from_the_spec_and_a_forged_end_is_fraud(files, tmp_path):
    d, run = files
    assert judge("--spec", str(d / "spec.json"), "--segment", "0", "--end", str(d / "b1.safetensors"),
                 "--provider-class", "same")[0] == 0
    forged = dict(run.states[run.hashes[1]])
    name = next(n for n in sorted(forged) if n.endswith(".exp_avg"))
    forged[name] = torch.zeros_like(forged[name])
    save_file(forged, str(tmp_path / "forged.safetensors"))
    for cls in ("same", "other"):
        code, out = judge("--spec", str(d / "spec.json"), "--segment", "0", "--end",
                          str(tmp_path / "forged.safetensors"), "--provider-class", cls)
        assert code == 1 and out["verdict"] == "fraud"
        assert out["checks"]["comparison"].startswith("fraud: ")
        if cls == "other":
            assert out["worst_tensor"] == name and out["distance"] > out["tolerance"]


def test_a_removed_dataset_is_an_abstention_not_fraud(files, tmp_path):
    d, _ = files
    doc = json.loads((d / "spec.json").read_text())
    doc["dataset"]["uri"] = f"file://{tmp_path}/gone.npz"  # the requester took it down
    (tmp_path / "spec.json").write_text(json.dumps(doc))
    code, out = judge("--spec", str(tmp_path / "spec.json"), "--segment", "1", "--start", str(d / "b1.safetensors"),
                      "--end", str(d / "b2.safetensors"), "--provider-class", "same")
    assert code == 2 and out["verdict"] == "abstain" and out["checks"]["dataset"].startswith("abstain: ")
    assert out["reasons"] == []


def test_unusable_inputs_exit_3_without_a_verdict(files):
    d, _ = files
    base = ["--spec", str(d / "spec.json"), "--provider-class", "same"]
    assert judge(*base, "--segment", "1", "--start", "nope.safetensors", "--end", str(d / "b2.safetensors"))[0] == 3
    assert judge(*base, "--segment", "1", "--end", str(d / "b2.safetensors"))[0] == 3  # --start needed
    assert judge(*base, "--segment", "9", "--end", str(d / "b2.safetensors"))[0] == 3
    assert judge("--spec", str(d / "spec.json"), "--segment", "0")[0] == 3  # missing options: not "abstain"
    code, text = judge(*base, "--segment", "0", "--end", "0x" + "ab" * 32)
    assert code == 3 and "--result-uri" in text


def test_a_checkpoint_the_provider_does_not_serve_is_fraud(files):
    d, run = files
    code, out = judge("--spec", str(d / "spec.json"), "--segment", "1", "--start", str(d / "b1.safetensors"),
                      "--end", f"file://{d}/missing/{run.hashes[2].hex()}", "--provider-class", "same")
    assert code == 1 and out["checks"]["end"].startswith("fraud: ")
