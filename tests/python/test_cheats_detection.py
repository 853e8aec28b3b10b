"""Adversary suite at engine level (no chain): every strategy is caught, detection
matches 1-(1-f)^s, honest segments are never voted fraud across determinism classes.

Sampling uses the contract's formula ``keccak(abi_encode(seed, job_id, j)) % N``
(:func:`verifier.sampling.audit_indices`) with random seeds, and the market's
default number of samples (``JobMarket.max_audit_samples`` = 48, which the
requester CLI uses by default).
"""

from __future__ import annotations

import logging
import random

import pytest
import torch

from greenproof.adversaries.cheats import CHEATS, faked_segments, make_cheat
from greenproof.adversaries.simulate import simulate_run
from greenproof.energy import FakeMeter
from greenproof.engine import init_state, run_segment
from greenproof.merkle import ZERO32, leaf, seal, verify, work_digest
from greenproof.spec import parse_spec
from greenproof.statehash import state_hash
from verifier.audit import AuditConfig, audit_job
from verifier.sampling import audit_indices, detection_probability, wilson_interval

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 48  # JobMarket's default max_audit_samples
OTHER_CLASS = b"\x22" * 32


def spec_for(num_segments: int, seed: int = 1, **over):
    base = {"task": "mlp", "model": {"hidden": 16, "depth": 1, "dropout": 0.1},
            "dataset": {"uri": "builtin://digits"}, "batch_size": 32,
            "total_steps": 4 * num_segments, "segment_steps": 4, "seed": seed}
    base.update(over)
    return parse_spec(base)


def verdicts(run, config: AuditConfig) -> tuple[dict[int, bool], object]:
    """Audit every segment once: index -> fraud?  (and the report)."""
    report = audit_job(run.audit_job(list(range(run.spec.num_segments))), config, fetch=run.fetch)
    return {s.index: s.verdict == "fraud" for s in report.segments}, report


def detected(seed: bytes, job_id: int, n: int, samples: int, fraud_at: dict[int, bool], final_ok: bool) -> bool:
    return (not final_ok) or any(fraud_at[i] for i in audit_indices(seed, job_id, n, samples))


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_every_strategy_is_caught_when_a_quarter_is_faked(name):
    spec = spec_for(8)
    cheat = make_cheat(name, fraction=0.25, seed=3)
    # energy from a meter that counts segments: provider and verifier measure the same
    # 1 J per segment whatever the load, so energy ratios are exact
    run = simulate_run(spec, cheat=cheat, meter=FakeMeter())
    fraud_at, report = verdicts(run, AuditConfig(energy_warn_ratio=3.0, meter_factory=FakeMeter))
    faked = faked_segments(spec.num_segments, 0.25, 3)
    final_ok = report.final.ok

    if cheat.warning_only:  # inflated energy: never a fraud vote, always a warning
        assert not any(fraud_at.values()) and final_ok
        assert [s.energy_ratio for s in report.segments] == [cheat.factor] * spec.num_segments
        assert len(report.warnings) == spec.num_segments
        return
    if name == "swap_final":  # the delivered model is checked whatever the sample
        assert not final_ok and fraud_at[spec.num_segments - 1]
    else:
        flagged = {i for i, f in fraud_at.items() if f}
        # a faked segment is always flagged; honest segments before the first fake never are
        # (later ones may be: withholding hides the next start, and a forged state's broken
        # invariants, e.g. optimizer step counters left behind, travel on with the run)
        assert faked <= flagged
        assert min(flagged) == min(faked)
        assert final_ok
    rng = random.Random(name)
    trials = [(rng.randbytes(32), rng.randrange(1, 2**32)) for _ in range(25)]
    caught = [detected(s, j, spec.num_segments, DEFAULT_SAMPLES, fraud_at, final_ok) for s, j in trials]
    assert all(caught), f"{name}: missed in {caught.count(False)} of {len(trials)} trials"


def test_honest_energy_claims_raise_no_warning():
    spec = spec_for(3)
    run = simulate_run(spec, meter=FakeMeter())
    _, report = verdicts(run, AuditConfig(meter_factory=FakeMeter))
    assert run.energies_mj == [0, 1000, 2000, 3000]
    assert [s.energy_ratio for s in report.segments] == [1.0] * spec.num_segments
    assert not report.warnings and not report.fraud


def test_detection_rate_at_ten_percent_matches_the_formula():
    """f = 10 %: 10 segments, one faked (its position varies per job); 1000 jobs,
    compared with the formula inside the 99 % Wilson interval."""
    n, jobs = 10, 1000
    # one real cheated run per faked position: the audit outcome of every segment
    fraud_by_position: dict[int, dict[int, bool]] = {}
    for pos in range(n):
        seed = next(s for s in range(1000) if faked_segments(n, 0.1, s) == {pos})
        run = simulate_run(spec_for(n, seed=2, total_steps=2 * n, segment_steps=2), cheat=make_cheat("fewer_steps", 0.1, seed),
                           measure_energy=False)
        fraud_at, report = verdicts(run, AuditConfig(measure_energy=False))
        assert {i for i, f in fraud_at.items() if f} == {pos} and report.final.ok
        fraud_by_position[pos] = fraud_at
    rng = random.Random(10)
    lines = []
    for samples in (DEFAULT_SAMPLES, 8):
        hits = 0
        for _ in range(jobs):
            pos, seed, job_id = rng.randrange(n), rng.randbytes(32), rng.randrange(1, 2**32)
            hits += detected(seed, job_id, n, samples, fraud_by_position[pos], True)
        lo, hi = wilson_interval(hits, jobs, z=2.576)
        expected = detection_probability(0.1, samples)
        lines.append(f"s={samples}: measured {hits / jobs:.3f} [{lo:.3f}, {hi:.3f}] formula {expected:.3f}")
        assert lo <= expected <= hi, lines[-1]
    log.warning("detection at f=10%% over %d jobs: %s", jobs, "; ".join(lines))


def test_no_fraud_vote_on_honest_segments_across_determinism_classes():
    """100 honest segments (mlp and cnn) trained with 1 thread, replayed

    * with 2 threads (another determinism class: the CPU class includes the
      thread count) -> the tolerance rule;
    * with oneDNN (mkldnn) off, judged as another class -> the tolerance rule;
    * with the provider's class matched (the verifier picks 1 thread) -> bit equality.

    On this machine mlp is bit-identical everywhere; cnn is not across 1/2
    threads nor with oneDNN off (distances ~1e-8), and must still pass.
    """
    specs = [
        spec_for(50, seed=4, total_steps=100, segment_steps=2),
        parse_spec({"task": "cnn", "model": {"channels": [4, 8], "hidden": 16},
                    "dataset": {"uri": "builtin://digits"}, "batch_size": 16,
                    "total_steps": 100, "segment_steps": 2, "seed": 9}),
    ]
    threads = torch.get_num_threads()
    segments, identical = 0, {"threads=2": 0, "mkldnn=off": 0, "matched": 0}
    try:
        for spec in specs:
            torch.set_num_threads(1)
            run = simulate_run(spec, measure_energy=False)
            everything = list(range(spec.num_segments))
            for variant in identical:
                torch.set_num_threads(2 if variant == "threads=2" else 1)
                config = AuditConfig(measure_energy=False, check_final=False,
                                     match_provider_threads=variant == "matched")
                provider_class = OTHER_CLASS if variant == "mkldnn=off" else run.provider_class
                with torch.backends.mkldnn.flags(enabled=variant != "mkldnn=off"):
                    report = audit_job(run.audit_job(everything, provider_class), config, fetch=run.fetch)
                assert not report.fraud, (variant, report.reasons)
                assert all(s.same_class == (variant == "matched") for s in report.segments)
                identical[variant] += sum(s.replay_hash == s.end_hash for s in report.segments)
            segments += spec.num_segments
    finally:
        torch.set_num_threads(threads)
    assert segments >= 100
    assert identical["matched"] == segments  # same class: every replay bit-identical
    log.warning("honest: %d segments, bit-identical replays per variant: %s", segments, identical)


def test_cheats_leave_the_honest_path_alone():
    """With fraction 0 every hook is the identity: same hashes as the honest run."""
    spec = spec_for(3)
    honest = simulate_run(spec, measure_energy=False)
    for name in sorted(CHEATS):
        run = simulate_run(spec, cheat=make_cheat(name, fraction=0.0), measure_energy=False)
        assert run.hashes == honest.hashes, name
    assert state_hash(init_state(spec)) == honest.hashes[0]
    assert run_segment(spec, init_state(spec), 0).steps == spec.segment_steps


@pytest.mark.parametrize(("name", "claims_other_losses"), [
    ("fake_hashes", True), ("fewer_steps", True), ("learning_rate", True), ("noisy_weights", False)])
def test_a_faked_segments_seal_commits_to_the_losses_it_claims(name, claims_other_losses):
    """The seal of a faked segment is whatever its claimed losses digest to: a replay of
    the segment (same class) reproduces the digest of every honest segment, never of a
    faked one whose losses differ; the openings carry the seals the root commits to."""
    spec = spec_for(4)
    run = simulate_run(spec, cheat=make_cheat(name, fraction=0.5, seed=1), measure_energy=False)
    faked = faked_segments(spec.num_segments, 0.5, 1)
    assert run.work_digests[0] == ZERO32 and len(run.work_digests) == spec.num_segments + 1
    root = run.tree().root
    for k in range(spec.num_segments):
        replayed = work_digest(run_segment(spec, run.states[run.hashes[k]], k).losses)
        assert (replayed != run.work_digests[k + 1]) == (claims_other_losses and k in faked), k
        seg = run.opened(k)
        assert (seg.start_seal, seg.end_seal) == (seal(run.job_id, k, run.work_digests[k]),
                                                  seal(run.job_id, k + 1, run.work_digests[k + 1]))
        start_leaf = leaf(run.job_id, k, seg.start_hash, seg.start_energy_mj, seg.start_move, seg.start_seal)
        assert verify(run.tree().proof(k), root, start_leaf)
