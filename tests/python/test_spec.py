"""JobSpec: canonical hashing and one clear error per way a spec can be wrong."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from greenproof.data import DatasetError, dataset_limits, load_dataset
from greenproof.spec import JobSpec, JobSpecError, load_spec, parse_spec

EXAMPLES = Path(__file__).parents[2] / "greenproof" / "examples"


def mlp_spec(**over) -> dict:
    d = {
        "task": "mlp",
        "model": {"hidden": 16, "depth": 1},
        "dataset": {"uri": "builtin://digits"},
        "batch_size": 16,
        "total_steps": 8,
        "segment_steps": 4,
        "seed": 3,
    }
    d.update(over)
    return d


def test_spec_hash_is_stable_under_key_order_and_format(tmp_path):
    spec = mlp_spec()
    reordered = dict(reversed(list(spec.items())))
    (tmp_path / "a.json").write_text(json.dumps(spec))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(reordered, sort_keys=False))
    a, b = load_spec(tmp_path / "a.json"), load_spec(tmp_path / "b.yaml")
    assert a.spec_hash() == b.spec_hash()
    assert len(a.spec_hash()) == 32


def test_defaults_are_filled_before_hashing():
    implicit = parse_spec(mlp_spec(model={}))
    explicit = parse_spec(mlp_spec(model={"hidden": 128, "depth": 2, "dropout": 0.1}, precision="fp32"))
    assert implicit.spec_hash() == explicit.spec_hash()
    assert implicit.model == {"hidden": 128, "depth": 2, "dropout": 0.1}
    canon = json.loads(implicit.canonical_json())
    assert canon["optimizer"]["name"] == "adamw" and canon["tolerance"]["rel_l2"] > 0


def test_canonical_json_format():
    s = parse_spec(mlp_spec())
    raw = s.canonical_json()
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert b" " not in raw


def test_every_field_change_changes_the_hash():
    base = parse_spec(mlp_spec()).spec_hash()
    for over in ({"seed": 4}, {"optimizer": {"lr": 0.002}}, {"total_steps": 12}, {"model": {"hidden": 17, "depth": 1}}):
        assert parse_spec(mlp_spec(**over)).spec_hash() != base, over


def test_data_uri_round_trip():
    s = parse_spec(mlp_spec())
    uri = s.to_data_uri()
    assert uri.startswith("data:application/json;base64,")
    assert load_spec(uri) == s
    assert json.loads(base64.b64decode(uri.split(",", 1)[1])) == json.loads(s.canonical_json())


@pytest.fixture
def served(tmp_path):
    """``tmp_path`` over http."""
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_file_and_http_uris(tmp_path, served):
    (tmp_path / "s.json").write_text(json.dumps(mlp_spec()))
    assert load_spec(f"file://{tmp_path}/s.json").seed == 3
    assert load_spec(f"{served}/s.json").seed == 3
    with pytest.raises(JobSpecError, match=r"cannot read spec: GET .*/missing.json: HTTP 404 \(not found\)"):
        load_spec(f"{served}/missing.json")
    with pytest.raises(JobSpecError, match=r"cannot read spec: .*unsupported URI scheme 'gs'"):
        load_spec("gs://bucket/s.json")


def test_a_spec_over_1_mib_is_refused(tmp_path, served):
    big = mlp_spec(padding=" " * (1 << 20))
    (tmp_path / "big.json").write_text(json.dumps(big))
    for uri in (tmp_path / "big.json", f"{served}/big.json"):
        with pytest.raises(JobSpecError, match="cannot read spec: .* exceed.* the 1 MiB size cap"):
            load_spec(uri)


def test_examples_are_valid_and_pinned():
    for name in ("mlp", "cnn", "gpt"):
        s = load_spec(EXAMPLES / f"{name}.yaml", check=True)
        assert s.task == name and s.dataset.sha256 is not None


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"task": "resnet"}, r"unknown task 'resnet' \(known: cnn, gpt, mlp\)"),
        ({"total_steps": 10}, r"total_steps \(10\) must be a multiple of segment_steps \(4\)"),
        ({"precision": "fp8"}, r"unknown precision 'fp8' \(known: fp32, bf16\)"),
        ({"model": {"hiden": 3}}, r"model hyper-parameters for task 'mlp'.*hiden"),
        ({"dataset": {"uri": "/data/x.npz"}}, r"dataset.sha256 is required"),
        ({"batch_size": 0}, r"batch_size"),
        ({"colour": "green"}, r"colour: Extra inputs are not permitted"),
        ({"task": "gpt", "model": {"n_embd": 10, "n_head": 3}}, r"n_embd \(10\) must be a multiple of n_head \(3\)"),
    ],
)
def test_spec_errors(over, message):
    with pytest.raises(JobSpecError, match=message):
        parse_spec(mlp_spec(**over))


def test_dataset_sha256_mismatch():
    wrong = "00" * 32
    s = parse_spec(mlp_spec(dataset={"uri": "builtin://digits", "sha256": wrong}))
    actual = load_dataset("builtin://digits").sha256
    with pytest.raises(JobSpecError, match=f"sha256 mismatch.*expected {wrong}, got {actual}"):
        s.load_data()


def test_unreachable_dataset(tmp_path):
    s = parse_spec(mlp_spec(dataset={"uri": str(tmp_path / "nope.npz"), "sha256": "ab" * 32}))
    with pytest.raises(JobSpecError, match="dataset unreachable"):
        s.check_fits()
    with pytest.raises(JobSpecError, match="unknown builtin text 'nope'"):
        parse_spec(mlp_spec(dataset={"uri": "builtin://text/nope"})).load_data()


def test_http_dataset_is_checked_while_streaming_and_cached_by_its_sha256(tmp_path, served, monkeypatch):
    monkeypatch.setenv("GREENPROOF_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "blobs.npz", x=rng.normal(size=(30, 4)).astype(np.float32), y=rng.integers(0, 2, 30))
    digest = hashlib.sha256((tmp_path / "blobs.npz").read_bytes()).hexdigest()
    wrong = "0" * 64
    with pytest.raises(DatasetError, match=f"dataset sha256 mismatch for .*blobs.npz \\(expected {wrong}, got {digest}\\)"):
        load_dataset(f"{served}/blobs.npz", wrong)
    assert list((tmp_path / "cache" / "datasets").iterdir()) == []  # nothing kept of a wrong download
    data = load_dataset(f"{served}/blobs.npz", digest)
    assert len(data) == 30 and data.sha256 == digest
    assert (tmp_path / "cache" / "datasets" / digest).read_bytes() == (tmp_path / "blobs.npz").read_bytes()
    with pytest.raises(DatasetError, match=r"dataset unreachable: .*blobs.npz: 1\d{3} bytes exceed the 100 bytes size cap"):
        load_dataset(f"{tmp_path}/blobs.npz", digest, limits=dataset_limits(100))


def test_local_npz_dataset_is_pinned_by_its_file_sha256(tmp_path):
    path = tmp_path / "blobs.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(40, 5)).astype(np.float32), y=rng.integers(0, 3, 40))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    s = parse_spec(mlp_spec(dataset={"uri": f"file://{path}", "sha256": digest}))
    data = s.load_data()
    assert len(data) == 40 and data.num_classes <= 3


def test_absurd_sizes_are_rejected_before_training():
    huge = parse_spec(
        mlp_spec(task="gpt", dataset={"uri": "builtin://text/founding"}, model={"n_embd": 16384, "n_layer": 64, "n_head": 16})
    )
    with pytest.raises(JobSpecError, match=r"job too large: needs about .* GiB but .* available"):
        huge.check_fits("cpu")
    assert parse_spec(mlp_spec()).check_fits("cpu") > 0


def test_unparseable_and_missing_files(tmp_path):
    (tmp_path / "bad.yaml").write_text("task: [unclosed")
    with pytest.raises(JobSpecError, match="cannot parse spec"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(JobSpecError, match="cannot read spec"):
        load_spec(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(JobSpecError, match="must be a mapping"):
        load_spec(tmp_path / "list.json")


def test_num_segments():
    s: JobSpec = parse_spec(mlp_spec(total_steps=12, segment_steps=4))
    assert s.num_segments == 3


def test_a_yaml_sha256_of_digits_only_is_read_as_the_hash_it_spells(tmp_path):
    """YAML reads 0123… as an (octal) int; the pin must be the 64 characters as written."""
    digits = "0" + "1234567890" * 6 + "123"
    (tmp_path / "s.yaml").write_text(
        "task: mlp\nbatch_size: 8\ntotal_steps: 4\nsegment_steps: 2\n"
        f"dataset:\n  uri: https://example.org/d.npz\n  sha256: {digits}\n"
    )
    spec = load_spec(tmp_path / "s.yaml")
    assert spec.dataset.sha256 == digits and spec.batch_size == 8
