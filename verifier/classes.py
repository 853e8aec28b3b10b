"""The determinism classes this machine can replay, for joining the court's pools.

A class (:func:`greenproof.engine.determinism_class`) is the hash of what decides
the bits of a replay: the device and its architecture, torch, the flags and the
job's *effective* precision; on CPU also torch's intra-op thread count. It
depends on the spec only through that precision (``bf16`` computes as ``fp32``
off CUDA), so a minimal spec per precision gives every class a machine can
produce: ``fp32`` everywhere, and ``bf16`` too on CUDA.

A verifier joins the pool of each (``greenproof verifier join``): a court seat
in a class it cannot reproduce bit for bit could only vote fraud or abstain (an
ok vote must reveal the provider's work digests), and an abstention is a no-show.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from greenproof.spec import JobSpec, parse_spec

#: precisions whose class differs from fp32's only on CUDA
PRECISIONS = ("fp32", "bf16")


def minimal_spec(precision: str) -> JobSpec:
    """The smallest valid spec with ``precision``: its class is every spec's with that
    effective precision on this machine."""
    return parse_spec({"task": "mlp", "model": {"hidden": 4, "depth": 1}, "dataset": {"uri": "builtin://digits"},
                       "batch_size": 1, "total_steps": 1, "segment_steps": 1, "precision": precision})


@contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def replayable_classes(device: str | None = None, threads: int | None = None) -> dict[str, bytes]:
    """``{effective precision: class}`` of the classes a replay on ``device`` (default: CUDA
    if present, else CPU) with ``threads`` torch threads (default: torch's) produces."""
    from greenproof.engine import determinism_class, effective_precision, select_device

    dev = select_device(device)
    out: dict[str, bytes] = {}
    with _threads(threads):
        for precision in PRECISIONS:
            spec = minimal_spec(precision)
            out.setdefault(effective_precision(spec, dev), determinism_class(spec, dev))
    return out


__all__ = ["PRECISIONS", "minimal_spec", "replayable_classes"]
