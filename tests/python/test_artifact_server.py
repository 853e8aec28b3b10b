"""The worker's artifact server under good and bad input: 4xx, never a 500, nothing written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from greenproof.data import dataset_cache_path
from greenproof.spec import parse_spec
from worker.journal import Journal
from worker.server import ArtifactServer, JournalIndex, ServerLimits, TokenBuckets, create_app

JOB = 7


class DirIndex:
    """A content-addressed directory standing in for journal + store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.known: dict[tuple[int, bytes], Path] = {}
        self.final: dict[int, bytes] = {}
        self.datasets: dict[int, Path] = {}

    def add(self, job_id: int, payload: bytes) -> bytes:
        h = hashlib.sha256(payload).digest()
        path = self.root / f"{h.hex()}.safetensors"
        path.write_bytes(payload)
        self.known[(job_id, h)] = path
        return h

    def checkpoint_path(self, job_id: int, state_hash: bytes) -> Path | None:
        return self.known.get((job_id, state_hash))

    def final_hash(self, job_id: int) -> bytes | None:
        return self.final.get(job_id)

    def dataset_path(self, job_id: int) -> Path | None:
        return self.datasets.get(job_id)


@pytest.fixture
def store(tmp_path: Path) -> DirIndex:
    root = tmp_path / "store"
    root.mkdir()
    return DirIndex(root)


@pytest.fixture
def client(store: DirIndex) -> TestClient:
    return TestClient(create_app(store), raise_server_exceptions=False)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_health(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_serves_a_known_checkpoint_streamed_with_filename(client: TestClient, store: DirIndex) -> None:
    payload = b"\x00checkpoint bytes\xff" * 1000
    h = store.add(JOB, payload)
    for name in (h.hex(), "0x" + h.hex()):
        r = client.get(f"/artifacts/{JOB}/{name}")
        assert r.status_code == 200
        assert r.content == payload
        assert r.headers["content-type"] == "application/octet-stream"
        assert f'{h.hex()}.safetensors' in r.headers["content-disposition"]
    head = client.head(f"/artifacts/{JOB}/{h.hex()}")
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(payload)


def test_final_model_served_once_known(client: TestClient, store: DirIndex) -> None:
    assert client.get(f"/artifacts/{JOB}/final").status_code == 404
    h = store.add(JOB, b"final model")
    store.final[JOB] = h
    r = client.get(f"/artifacts/{JOB}/final")
    assert r.status_code == 200
    assert r.content == b"final model"
    assert f"job-{JOB}-final.safetensors" in r.headers["content-disposition"]


def test_the_jobs_pinned_dataset_is_served_beside_its_checkpoints(client: TestClient, store: DirIndex) -> None:
    assert client.get(f"/artifacts/{JOB}/dataset").status_code == 404
    store.datasets[JOB] = store.root / "dataset"
    store.datasets[JOB].write_bytes(b"the requester's corpus")
    r = client.get(f"/artifacts/{JOB}/dataset")
    assert r.status_code == 200 and r.content == b"the requester's corpus"
    assert r.headers["content-type"] == "application/octet-stream"
    assert client.get(f"/artifacts/{JOB + 1}/dataset").status_code == 404
    assert client.get("/artifacts/abc/dataset").status_code == 422


def test_the_worker_serves_a_pinned_dataset_from_its_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENPROOF_CACHE", str(tmp_path / "cache"))
    raw = b"a pinned corpus"
    sha = hashlib.sha256(raw).hexdigest()
    journal = Journal(tmp_path / "worker.sqlite")
    for job_id, dataset in ((1, {"uri": "http://requester.example/corpus.txt", "sha256": sha}),
                            (2, {"uri": "builtin://digits"})):
        spec = parse_spec({"task": "mlp", "dataset": dataset, "batch_size": 8, "total_steps": 4,
                           "segment_steps": 2})
        journal.begin_accept(job_id, spec_json=spec.canonical_json().decode(), spec_hash=spec.spec_hash(),
                             determinism_class=b"\x22" * 32, deadline=100, num_segments=2, posted_block=5)
    index = JournalIndex(journal, store=None)
    assert index.dataset_path(1) is None  # not fetched (yet)
    dataset_cache_path(sha).parent.mkdir(parents=True)
    dataset_cache_path(sha).write_bytes(raw)
    assert index.dataset_path(1) == dataset_cache_path(sha)
    assert index.dataset_path(2) is None  # builtin: every verifier has it
    assert index.dataset_path(3) is None  # no such job
    journal.close()


def test_hash_of_another_job_is_not_served(client: TestClient, store: DirIndex) -> None:
    h = store.add(JOB, b"job 7 only")
    assert client.get(f"/artifacts/{JOB + 1}/{h.hex()}").status_code == 404


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/artifacts/{JOB}/{'ab' * 32}", 404),  # well-formed, unknown
        (f"/artifacts/{JOB}/{'AB' * 32}", 422),  # upper case
        (f"/artifacts/{JOB}/{'ab' * 31}", 422),  # too short
        (f"/artifacts/{JOB}/{'ab' * 33}", 422),  # too long
        (f"/artifacts/{JOB}/0x{'zz' * 32}", 422),  # not hex
        (f"/artifacts/{JOB}/{'ab' * 32}.safetensors", 422),
        (f"/artifacts/-1/{'ab' * 32}", 422),
        (f"/artifacts/{2**256}/{'ab' * 32}", 422),
        (f"/artifacts/abc/{'ab' * 32}", 422),
        ("/artifacts/7/..%2F..%2F..%2Fetc%2Fpasswd", 404),
        ("/artifacts/7/%2e%2e", 422),
        ("/artifacts/7/..", 404),
        ("/artifacts/../../etc/passwd", 404),
        ("/artifacts/7/%00", 422),
        ("/artifacts/7/final/../../x", 404),
        ("/nope", 404),
    ],
)
def test_bad_paths_are_4xx(client: TestClient, store: DirIndex, path: str, status: int) -> None:
    store.add(JOB, b"something")
    before = snapshot(store.root)
    r = client.get(path)
    assert r.status_code == status, (path, r.status_code, r.text)
    assert snapshot(store.root) == before


def test_traversal_never_reads_outside_the_store(tmp_path: Path, store: DirIndex) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    client = TestClient(create_app(store), raise_server_exceptions=False)
    for path in ("/artifacts/7/../../secret.txt", "/artifacts/7/..%2f..%2fsecret.txt", "/artifacts/7/%2e%2e%2fsecret.txt"):
        r = client.get(path)
        assert 400 <= r.status_code < 500
        assert "do not serve" not in r.text


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_nothing_is_writable(client: TestClient, store: DirIndex, method: str) -> None:
    h = store.add(JOB, b"immutable")
    before = snapshot(store.root)
    for path in (f"/artifacts/{JOB}/{h.hex()}", f"/artifacts/{JOB}/final", "/health"):
        r = client.request(method, path, content=b"x")
        assert r.status_code == 405, (method, path, r.status_code)
    assert snapshot(store.root) == before


def test_oversized_body_and_headers(client: TestClient, store: DirIndex) -> None:
    before = snapshot(store.root)
    r = client.post(f"/artifacts/{JOB}/{'ab' * 32}", content=b"x" * 100_000)
    assert r.status_code == 413
    r = client.get("/health", headers={"X-Big": "y" * 20_000})
    assert r.status_code == 431
    assert snapshot(store.root) == before


def test_per_ip_rate_limit(store: DirIndex) -> None:
    client = TestClient(
        create_app(store, limits=ServerLimits(rate_per_s=0.001, burst=3)), raise_server_exceptions=False
    )
    codes = [client.get("/health").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    assert "retry-after" in client.get("/health").headers


def test_token_bucket_refills() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=2, clock=lambda: now[0])
    assert buckets.take("a") == 0 and buckets.take("a") == 0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0  # other IPs unaffected
    now[0] += 0.5
    assert buckets.take("a") == 0


class Cheat:
    def __init__(self, verdict: object) -> None:
        self.verdict = verdict
        self.calls: list[bytes] = []

    def serve(self, job_id: int, state_hash: bytes) -> object:
        assert job_id == JOB
        self.calls.append(state_hash)
        return self.verdict


def test_cheat_can_withhold_or_swap(store: DirIndex) -> None:
    h = store.add(JOB, b"honest")
    withhold = Cheat("withhold")
    r = TestClient(create_app(store, cheat=withhold)).get(f"/artifacts/{JOB}/{h.hex()}")
    assert r.status_code == 404 and withhold.calls == [h]
    r = TestClient(create_app(store, cheat=Cheat(b"forged"))).get(f"/artifacts/{JOB}/{h.hex()}")
    assert r.status_code == 200 and r.content == b"forged"
    r = TestClient(create_app(store, cheat=Cheat(None))).get(f"/artifacts/{JOB}/{h.hex()}")
    assert r.content == b"honest"


def test_real_uvicorn_in_background_thread(store: DirIndex) -> None:
    h = store.add(JOB, b"over the wire")
    server = ArtifactServer(create_app(store), host="127.0.0.1", port=0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{base}/artifacts/{JOB}/{h.hex()}").content == b"over the wire"
        assert httpx.get(f"{base}/artifacts/{JOB}/{'cd' * 32}").status_code == 404
        assert httpx.put(f"{base}/artifacts/{JOB}/{h.hex()}", content=b"x").status_code == 405
        big = httpx.post(f"{base}/health", content=b"x" * 2_000_000)
        assert big.status_code == 413
        huge = httpx.get(f"{base}/health", headers={"X-Big": "y" * 40_000})
        assert 400 <= huge.status_code < 500
    finally:
        server.stop()
