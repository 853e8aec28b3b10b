"""state_hash is BLAKE3 over the docs/protocol.md §3.4 framing, byte for byte."""

from __future__ import annotations

import hashlib
import struct

import blake3
import pytest
import torch

from greenproof.statehash import framed_sha256, state_hash

# Published test vector: recompute it in any language from the framing in docs/protocol.md §3.
VECTOR_STATE = {
    "w": torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float32),
    "step": torch.tensor(7, dtype=torch.int64),
    "b": torch.tensor([1.0, 2.0], dtype=torch.bfloat16),
    "rng": torch.tensor([1, 2, 255], dtype=torch.uint8),
}
VECTOR_HEX = "d960fd73f255b76515a9eab3731912584e63f66ee0d30a509ffb2a00c81d836f"  # BLAKE3
#: the same stream under SHA-256 (``framed_sha256``, the builtin datasets' pins)
VECTOR_SHA256_HEX = "248057244c3368b64a31049cb8a14d83ec5defface89e7a9f274cae192ebc3be"


def reference_hash(entries: list[tuple[str, str, tuple[int, ...], bytes]], h=None) -> str:
    """Hand-framed hash (single-threaded BLAKE3 unless ``h`` is given): entries given
    already sorted, data given as raw bytes."""
    h = h if h is not None else blake3.blake3()
    for name, dtype, shape, data in entries:
        h.update(struct.pack("<I", len(name.encode())) + name.encode())
        h.update(struct.pack("<I", len(dtype)) + dtype.encode())
        h.update(struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape))
        h.update(struct.pack("<Q", len(data)) + data)
    return h.hexdigest()


def test_vector_matches_hand_framing():
    entries = [
        ("b", "bfloat16", (2,), bytes.fromhex("803f0040")),  # bf16 1.0 = 0x3f80, 2.0 = 0x4000
        ("rng", "uint8", (3,), bytes([1, 2, 255])),
        ("step", "int64", (), struct.pack("<q", 7)),
        ("w", "float32", (2, 2), struct.pack("<4f", 1.0, -2.0, 0.5, 3.0)),
    ]
    expected = reference_hash(entries)
    assert state_hash(VECTOR_STATE).hex() == expected
    assert expected == VECTOR_HEX
    assert framed_sha256(VECTOR_STATE).hex() == reference_hash(entries, hashlib.sha256()) == VECTOR_SHA256_HEX


def test_multithreaded_blake3_equals_the_single_stream_on_large_states():
    """BLAKE3's tree mode gives the same bytes on any number of threads."""
    g = torch.Generator().manual_seed(1)
    state = {f"t{i}": torch.randn(300_000, generator=g) for i in range(4)}  # 4.8 MB: spans many chunks
    h = blake3.blake3()
    for name in sorted(state):
        data = memoryview(state[name].numpy()).cast("B")
        h.update(struct.pack("<I", len(name)) + name.encode() + struct.pack("<I", 7) + b"float32"
                 + struct.pack("<I", 1) + struct.pack("<Q", state[name].numel()) + struct.pack("<Q", data.nbytes))
        h.update(data)
    assert state_hash(state) == h.digest()


def test_order_of_insertion_does_not_matter_but_names_do():
    a = {"x": torch.ones(3), "y": torch.zeros(2)}
    b = {"y": torch.zeros(2), "x": torch.ones(3)}
    assert state_hash(a) == state_hash(b)
    assert state_hash(a) != state_hash({"x2": torch.ones(3), "y": torch.zeros(2)})


def test_dtype_and_shape_are_framed():
    base = torch.arange(6, dtype=torch.int32)
    same_bytes_other_dtype = base.view(torch.float32)
    assert state_hash({"t": base}) != state_hash({"t": same_bytes_other_dtype})
    assert state_hash({"t": base.view(2, 3)}) != state_hash({"t": base.view(3, 2)})


def test_one_bit_flip_changes_the_hash():
    t = torch.randn(100)
    flipped = t.clone()
    flipped.view(torch.int32)[42] ^= 1
    assert state_hash({"t": t}) != state_hash({"t": flipped})


def test_non_contiguous_tensors_hash_as_their_contiguous_copy():
    t = torch.arange(12, dtype=torch.float32).view(3, 4)
    assert state_hash({"t": t.t()}) == state_hash({"t": t.t().contiguous()})


def test_rejects_non_tensors():
    with pytest.raises(TypeError, match="not a tensor"):
        state_hash({"x": 1})  # type: ignore[dict-item]
