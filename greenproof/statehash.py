"""The framed BLAKE3 state hash of a training state (docs/protocol.md §3.4).

For every tensor, in Python ``sorted`` order of the names::

    u32 len(name) ‖ name (UTF-8)
    u32 len(dtype) ‖ dtype (as torch prints it, without ``torch.``)
    u32 ndims ‖ u64 dim …
    u64 len(data) ‖ data (raw C-contiguous little-endian bytes)

All integers are little-endian. The hash covers tensors, not files, so any
checkpoint format works and any language can recompute it. ``state_hash`` is
BLAKE3 (32-byte output) over that stream: BLAKE3's tree mode hashes one stream
on every core (``max_threads=AUTO``), where SHA-256 is one stream on one core.
The bytes are fed as memoryviews of the tensors' own storage (no copies for
CPU tensors that are already contiguous), and the hasher releases the GIL, so
hashing on a background thread does not stall training.

``framed_sha256`` is the same stream under SHA-256: it pins the generated
builtin datasets (``dataset.sha256``), whose pins do not change with the state
hash.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from collections.abc import Mapping
from typing import Any, Protocol

import blake3
import torch

if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
    raise ImportError("greenproof.statehash assumes a little-endian host")


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """A zero-copy byte view of a CPU, C-contiguous copy of ``t`` (copies only if needed)."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    # viewing as uint8 works for every dtype (bfloat16, bool, …) numpy may lack
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())


def frame_header(name: str, t: torch.Tensor, nbytes: int) -> bytes:
    """The framing that precedes a tensor's data."""
    n = name.encode("utf-8")
    d = dtype_name(t.dtype).encode("ascii")
    return b"".join(
        (
            struct.pack("<I", len(n)),
            n,
            struct.pack("<I", len(d)),
            d,
            struct.pack("<I", t.dim()),
            struct.pack(f"<{t.dim()}Q", *t.shape),
            struct.pack("<Q", nbytes),
        )
    )


class _Hasher(Protocol):
    def update(self, data: Any, /) -> Any: ...
    def digest(self) -> bytes: ...


def _framed(state: Mapping[str, torch.Tensor], h: _Hasher) -> bytes:
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state entry {name!r} is a {type(t).__name__}, not a tensor")
        data = tensor_bytes(t)
        h.update(frame_header(name, t, data.nbytes))
        h.update(data)
    return h.digest()


def state_hash(state: Mapping[str, torch.Tensor]) -> bytes:
    """BLAKE3 (32 bytes, every core) of ``state`` framed per docs/protocol.md §3.4."""
    return _framed(state, blake3.blake3(max_threads=blake3.blake3.AUTO))


def framed_sha256(state: Mapping[str, torch.Tensor]) -> bytes:
    """SHA-256 of the same framed stream (the builtin datasets' pins)."""
    return _framed(state, hashlib.sha256())
