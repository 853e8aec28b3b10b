"""``verifier join`` detects the classes this machine replays: a class depends on the spec
only through its effective precision, and on CPU on the thread count."""

from __future__ import annotations

import pytest
import torch

from greenproof.engine import determinism_class
from greenproof.spec import parse_spec
from verifier.classes import minimal_spec, replayable_classes


def test_on_cpu_one_class_for_every_spec_whatever_its_precision():
    classes = replayable_classes("cpu")
    assert list(classes) == ["fp32"]  # bf16 computes as fp32 off CUDA
    real = parse_spec({"task": "cnn", "model": {"channels": [4, 8], "hidden": 16},
                       "dataset": {"uri": "builtin://digits"}, "batch_size": 16, "total_steps": 8,
                       "segment_steps": 2, "seed": 9, "precision": "bf16"})
    assert determinism_class(real, "cpu") == classes["fp32"] == determinism_class(minimal_spec("bf16"), "cpu")


def test_the_cpu_class_follows_the_thread_count_and_torch_is_left_as_it_was():
    before = torch.get_num_threads()
    one, two = replayable_classes("cpu", threads=1), replayable_classes("cpu", threads=2)
    assert torch.get_num_threads() == before
    assert one != two  # the CPU class includes the thread count
    torch.set_num_threads(1)
    try:
        assert replayable_classes("cpu") == one
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_bf16_jobs_are_a_class_of_their_own():
    classes = replayable_classes("cuda")
    assert list(classes) == ["fp32", "bf16"] and classes["fp32"] != classes["bf16"]
    assert classes["bf16"] == determinism_class(minimal_spec("bf16"), torch.device("cuda"))
