"""Checkpoints and the content-addressed store refuse anything that is not what its name says."""

from __future__ import annotations

import http.server
import os
import threading

import pytest
import torch

from greenproof import store as store_mod
from greenproof.statehash import state_hash
from greenproof.store import (
    ArtifactError,
    ArtifactStore,
    checkpoint_bytes,
    fetch_state,
    load_checkpoint,
    save_checkpoint,
    state_size_cap,
)
from greenproof.uri import (
    FetchNotFound,
    FetchRefused,
    FetchTooLarge,
    FetchUnavailable,
    format_bytes,
)


def sample_state() -> dict[str, torch.Tensor]:
    return {
        "model.w": torch.randn(4, 3),
        "model.b": torch.zeros(3, dtype=torch.bfloat16),
        "train.step": torch.tensor(12),
        "rng.key": torch.tensor(99, dtype=torch.int64),
    }


def test_checkpoint_round_trip_keeps_the_hash(tmp_path):
    state = sample_state()
    save_checkpoint(state, tmp_path / "c.safetensors")
    back = load_checkpoint(tmp_path / "c.safetensors")
    assert state_hash(back) == state_hash(state)
    assert back["train.step"].shape == () and back["model.b"].dtype == torch.bfloat16


def test_store_put_get_has_path(tmp_path):
    s = ArtifactStore(tmp_path / "art")
    state = sample_state()
    h = s.put(state)
    assert h == state_hash(state) and s.has(h) and s.has(h.hex()) and s.has("0x" + h.hex())
    assert s.path(h).name == h.hex()
    assert state_hash(s.get(h)) == h
    with s.open_bytes(h) as f:
        assert f.read(8)
    assert s.put(state) == h  # idempotent
    assert not s.has(b"\x00" * 32)
    with pytest.raises(ArtifactError, match="no artifact"):
        s.get(b"\x00" * 32)


def test_store_refuses_a_tampered_artifact(tmp_path):
    s = ArtifactStore(tmp_path)
    good, other = sample_state(), sample_state()
    h = s.put(good)
    save_checkpoint(other, s.path(h))  # a valid checkpoint under the wrong name
    with pytest.raises(ArtifactError, match=f"checkpoint hash mismatch .*expected {h.hex()}"):
        s.get(h)
    s.path(h).write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="not a safetensors checkpoint"):
        s.get(h)


def test_a_crash_mid_write_leaves_no_checkpoint(tmp_path, monkeypatch):
    s = ArtifactStore(tmp_path)

    def crash(src, dst):
        raise OSError("disk unplugged")

    monkeypatch.setattr(store_mod.os, "replace", crash)
    with pytest.raises(OSError, match="disk unplugged"):
        h = s.put(sample_state())
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []
    h = s.put(sample_state())
    assert s.has(h)


def test_fsspec_store_is_written_but_never_fetched_from(tmp_path):
    """A provider may keep its store anywhere fsspec reaches; readers fetch over http(s) or file only."""
    s = ArtifactStore("memory://greenproof-test-store")
    state = sample_state()
    h = s.put(state)
    assert s.has(h) and state_hash(s.get(h)) == h
    with pytest.raises(FetchRefused, match="unsupported URI scheme 'memory'"):
        fetch_state("memory://greenproof-test-store", h)


@pytest.fixture
def served(tmp_path):
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "art"))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield ArtifactStore(tmp_path / "art"), f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_fetch_state_over_http_and_file(served, tmp_path):
    s, url = served
    state = sample_state()
    h = s.put(state)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert state_hash(fetch_state(url, h, tmp_dir=scratch)) == h
    assert state_hash(fetch_state(f"file://{tmp_path}/art", h, tmp_dir=scratch)) == h
    assert list(scratch.iterdir()) == []  # the download is gone once loaded
    with pytest.raises(FetchNotFound, match=r"GET .*/1111.*: HTTP 404 \(not found\)"):
        fetch_state(url, b"\x11" * 32)
    with pytest.raises(FetchTooLarge, match="exceeds the 10 bytes size cap"):
        fetch_state(url, h, max_bytes=10)


def test_fetch_state_refuses_a_swapped_artifact(served):
    s, url = served
    h = s.put(sample_state())
    save_checkpoint(sample_state(), s.path(h))
    with pytest.raises(ArtifactError, match="checkpoint hash mismatch"):
        fetch_state(url, h)
    s.path(h).write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="not a safetensors checkpoint"):
        fetch_state(url, h)
    limits = store_mod.checkpoint_limits(1 << 20).model_copy(update={"retries": 0})
    with pytest.raises(FetchUnavailable, match="Connection refused"):
        fetch_state("http://127.0.0.1:9", h, limits=limits)


def test_the_size_cap_is_the_specs_state_size(tmp_path, served):
    """An honest checkpoint fits under state_size_cap(spec); one byte of padding more does not."""
    from greenproof.engine import init_state
    from greenproof.spec import parse_spec

    spec = parse_spec({"task": "mlp", "model": {"hidden": 16, "depth": 1}, "dataset": {"uri": "builtin://digits"},
                       "batch_size": 16, "total_steps": 8, "segment_steps": 4})
    state = init_state(spec)
    cap = state_size_cap(spec)
    assert len(checkpoint_bytes(state)) <= cap < len(checkpoint_bytes(state)) + 16 * 1024
    s, url = served
    h = s.put(state)
    assert state_hash(fetch_state(url, h, spec=spec)) == h
    s.path(h).write_bytes(checkpoint_bytes(state) + b" " * cap)  # same tensors, a bloated file
    with pytest.raises(FetchTooLarge, match=f"Content-Length .* exceeds the {format_bytes(cap)} size cap"):
        fetch_state(url, h, spec=spec)


def test_a_stored_checkpoint_has_exactly_the_serialized_bytes(tmp_path) -> None:
    """``put`` writes with safetensors' ``save_file`` (no GIL-holding bytes copy); the file
    must still be byte for byte what ``checkpoint_bytes`` gives, since verifiers check the
    hash of what they fetch and the same state must always make the same file."""
    import torch

    from greenproof.store import ArtifactStore, checkpoint_bytes

    state = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "step": torch.tensor(7)}
    store = ArtifactStore(tmp_path / "store")
    h = store.put(state)
    assert store.path(h).read_bytes() == checkpoint_bytes(state)
    assert not list((tmp_path / "store").glob(".*.tmp"))  # nothing left half written
