"""The training segment is deterministic, replayable from its start state alone, and sensitive
to every way a provider could cut corners."""

from __future__ import annotations

import pytest
import torch

from greenproof import engine
from greenproof.engine import (
    RNG_KEY,
    STEP_KEY,
    SegmentError,
    determinism_class,
    init_state,
    lr_at,
    param_rel_l2,
    run_segment,
    select_device,
)
from greenproof.run import MemoryCheckpoints, ZeroMeter, train_run
from greenproof.spec import parse_spec
from greenproof.statehash import state_hash

CPU = torch.device("cpu")
FAMILIES = {
    "mlp": {"model": {"hidden": 16, "depth": 1}, "dataset": {"uri": "builtin://digits"}},
    "cnn": {"model": {"channels": [4, 8], "hidden": 16}, "dataset": {"uri": "builtin://digits"}},
    "gpt": {
        "model": {"block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16},
        "dataset": {"uri": "builtin://synthetic?kind=text&n=4000&vocab=16&seed=1"},
    },
}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(task: str = "mlp", **over):
    d = {"task": task, "batch_size": 8, "total_steps": 9, "segment_steps": 3, "seed": 5, **FAMILIES[task]}
    d.update(over)
    return parse_spec(d)


def boundaries(spec):
    """Boundary hashes and states of a whole run (``train_run``, states kept in memory)."""
    kept = MemoryCheckpoints()
    hashes = train_run(spec, kept, ZeroMeter(), device=CPU, progress=False).state_hashes
    return hashes, [kept.get(h) for h in hashes]


@pytest.mark.parametrize("task", sorted(FAMILIES))
def test_two_runs_agree_at_every_boundary_and_every_segment_replays(task):
    spec = tiny(task)
    h1, states = boundaries(spec)
    h2, _ = boundaries(spec)
    assert h1 == h2
    assert len(set(h1)) == len(h1)  # training moves the state
    for k in range(spec.num_segments):  # replay from the start checkpoint alone
        assert state_hash(run_segment(spec, states[k], k, CPU).state) == h1[k + 1]


def test_state_layout():
    state = init_state(tiny("mlp", optimizer={"name": "adamw"}), CPU)
    assert int(state[STEP_KEY]) == 0 and state[RNG_KEY].dtype == torch.int64
    assert {"model.1.weight", "optim.1.weight.exp_avg", "optim.1.weight.exp_avg_sq", "optim.1.weight.step"} <= set(state)
    sgd = init_state(tiny("mlp", optimizer={"name": "sgd", "momentum": 0.9}), CPU)
    assert "optim.1.weight.momentum_buffer" in sgd and not any(k.endswith("exp_avg") for k in sgd)


def test_run_segment_leaves_its_input_and_the_global_rng_alone():
    spec = tiny("gpt")
    state = init_state(spec, CPU)
    before = state_hash(state)
    rng = torch.get_rng_state()
    out = run_segment(spec, state, 0, CPU)
    assert state_hash(state) == before
    assert torch.equal(torch.get_rng_state(), rng)
    assert not any(out.state[n].data_ptr() == state[n].data_ptr() for n in state if state[n].numel())
    assert out.steps == 3 and len(out.losses) == 3


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"optimizer": {"lr": 0.002}}, id="learning-rate"),
        pytest.param({"seed": 6}, id="seed"),
    ],
)
def test_spec_changes_change_the_hash(change):
    h, _ = boundaries(tiny("mlp"))
    h2, _ = boundaries(tiny("mlp", **change))
    assert h[-1] != h2[-1]


def test_different_seed_changes_the_initial_state():
    assert state_hash(init_state(tiny(seed=1), CPU)) != state_hash(init_state(tiny(seed=2), CPU))


def test_perturbed_checkpoint_changes_the_next_hash():
    spec = tiny("mlp")
    h, states = boundaries(spec)
    bad = dict(states[1])
    bad["model.1.weight"] = bad["model.1.weight"].clone()
    bad["model.1.weight"][0, 0] += 1e-6
    assert state_hash(run_segment(spec, bad, 1, CPU).state) != h[2]


def test_changed_data_order_changes_the_hash(monkeypatch):
    spec = tiny("mlp")
    h, states = boundaries(spec)
    honest_order = engine.epoch_order.__wrapped__
    monkeypatch.setattr(engine, "epoch_order", lambda seed, epoch, n: honest_order(seed, epoch, n).flip(0))
    assert state_hash(run_segment(spec, states[0], 0, CPU).state) != h[1]


def test_skipped_step_changes_the_hash():
    spec = tiny("mlp")
    h, states = boundaries(spec)
    short = tiny("mlp", segment_steps=2, total_steps=8)  # same data order, one step fewer
    lazy = run_segment(short, states[0], 0, CPU).state
    lazy[STEP_KEY] = torch.tensor(3)  # claims three steps
    assert state_hash(lazy) != h[1]


def test_dropout_randomness_comes_from_the_state():
    spec = tiny("gpt", model={**FAMILIES["gpt"]["model"], "dropout": 0.5})
    state = init_state(spec, CPU)
    rekeyed = dict(state, **{RNG_KEY: state[RNG_KEY] + 1})
    assert state_hash(run_segment(spec, state, 0, CPU).state) != state_hash(run_segment(spec, rekeyed, 0, CPU).state)


def test_segment_must_start_at_its_boundary():
    spec = tiny("mlp")
    state = init_state(spec, CPU)
    with pytest.raises(SegmentError, match="segment 1 starts at step 3 but the state is at step 0"):
        run_segment(spec, state, 1, CPU)
    with pytest.raises(SegmentError, match="outside 0..2"):
        run_segment(spec, state, 3, CPU)
    with pytest.raises(SegmentError, match="lacks model tensors"):
        run_segment(tiny("cnn"), state, 0, CPU)


def test_cuda_requests_fall_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device() == CPU
    assert select_device("cuda") == CPU
    assert select_device("cpu") == CPU
    with pytest.raises(ValueError, match="unsupported device"):
        select_device("mps")


def test_bf16_on_cpu_computes_in_fp32_and_shares_the_fp32_class():
    fp32, bf16 = tiny("mlp"), tiny("mlp", precision="bf16")
    assert engine.effective_precision(bf16, CPU) == "fp32"
    assert determinism_class(fp32, CPU) == determinism_class(bf16, CPU)
    h32, _ = boundaries(fp32)
    h16, _ = boundaries(bf16)
    assert h32[1:] == h16[1:]  # same arithmetic; only the spec (and its hash) differ


def test_determinism_class_covers_threads_and_precision(monkeypatch):
    spec = tiny("mlp")
    c1 = determinism_class(spec, CPU)
    assert len(c1) == 32
    info = engine.determinism_info(spec, CPU)
    assert info["torch"] == torch.__version__ and info["precision"] == "fp32"
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if n > 1 else 2)
        assert determinism_class(spec, CPU) != c1
    finally:
        torch.set_num_threads(n)


def test_learning_rate_schedules():
    cos = tiny("mlp", total_steps=100, segment_steps=10, schedule={"name": "cosine", "warmup_steps": 10, "min_lr_ratio": 0.1})
    assert lr_at(cos, 0) == pytest.approx(1e-4)
    assert lr_at(cos, 9) == pytest.approx(1e-3)
    assert lr_at(cos, 100) == pytest.approx(1e-4)
    lin = tiny("mlp", total_steps=100, segment_steps=10, schedule={"name": "linear"})
    assert lr_at(lin, 50) == pytest.approx(0.55e-3)


def test_param_rel_l2():
    spec = tiny("mlp")
    _, states = boundaries(spec)
    assert param_rel_l2(states[1], states[1]) == 0.0
    assert 0 < param_rel_l2(states[0], states[1]) < 1
