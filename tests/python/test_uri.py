"""The URI reader against hostile local servers: it gives up by its deadline, never reads
past its size cap, and refuses what it was not asked for.

Limits are scaled down (a 1.5 s deadline, a 1000-byte cap) so no test depends on the
machine's speed; time is only ever bounded from above, generously.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest
from local_http import Route, send

from greenproof.uri import (
    FetchError,
    FetchHashMismatch,
    FetchLimits,
    FetchNotFound,
    FetchRefused,
    FetchTimeout,
    FetchTooLarge,
    FetchUnavailable,
    download,
    open_uri,
    read_uri,
)

DEADLINE_S = 1.5
BOUND_S = 60.0  # an upper bound on giving up (40x the deadline), not a speed test: safe on a loaded machine
LIMITS = FetchLimits(max_bytes=1000, deadline_s=DEADLINE_S, read_timeout_s=30, retries=2, retry_backoff_s=0.05)

def dripper(stop: threading.Event) -> Route:
    """200 with a large Content-Length, then one byte every 0.3 s for ever."""

    def route(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "900")
        h.end_headers()
        while not stop.wait(0.3):
            h.wfile.write(b"x")
            h.wfile.flush()

    return route


def endless(h: http.server.BaseHTTPRequestHandler, *, chunked: bool) -> None:
    h.send_response(200)
    h.send_header("Transfer-Encoding" if chunked else "Connection", "chunked" if chunked else "close")
    h.end_headers()
    block = b"y" * 4096
    for _ in range(16384):  # 64 MiB: far past any cap here, finite so a broken reader still ends
        h.wfile.write(b"1000\r\n" + block + b"\r\n" if chunked else block)


# ---------------------------------------------------------------------------- slow servers


def test_a_server_dripping_its_body_is_cut_at_the_deadline(serve, stop, tmp_path):
    s = serve({"/drip": dripper(stop)})
    start = time.monotonic()
    with pytest.raises(FetchTimeout, match=rf"/drip: no complete response within {DEADLINE_S:g} s"):
        read_uri(f"{s.url}/drip", LIMITS)
    assert time.monotonic() - start < BOUND_S
    start = time.monotonic()
    with pytest.raises(FetchTimeout):
        download(f"{s.url}/drip", tmp_path / "drip", LIMITS)
    assert time.monotonic() - start < BOUND_S
    assert list(tmp_path.iterdir()) == []


def test_a_server_dripping_its_headers_is_cut_at_the_deadline(serve, stop):
    """Each header line arrives well inside the read timeout: only the deadline's watchdog stops it."""

    def route(h: http.server.BaseHTTPRequestHandler) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\n")
        while not stop.wait(0.3):
            h.wfile.write(b"X-Drip: 1\r\n")
            h.wfile.flush()

    s = serve({"/slow-headers": route})
    start = time.monotonic()
    with pytest.raises(FetchTimeout, match="no complete response within"):
        read_uri(f"{s.url}/slow-headers", LIMITS.model_copy(update={"read_timeout_s": 1.0}))
    assert time.monotonic() - start < BOUND_S


def test_a_slow_body_is_cut_by_the_minimum_rate_long_before_the_deadline(serve, stop):
    slow = serve({"/drip": dripper(stop)})
    limits = LIMITS.model_copy(update={"deadline_s": 60.0, "min_rate_bps": 1000.0, "rate_grace_s": 0.5})
    start = time.monotonic()
    with pytest.raises(FetchTimeout, match=r"bytes/s over .* is below the minimum rate of 1000 bytes/s"):
        read_uri(f"{slow.url}/drip", limits)
    assert time.monotonic() - start < 30


def test_a_server_that_accepts_and_never_answers_is_cut_at_the_deadline():
    listener = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody ever answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/x"
        start = time.monotonic()
        with pytest.raises(FetchTimeout, match=f"within {DEADLINE_S:g} s"):
            read_uri(url, LIMITS)
        assert time.monotonic() - start < BOUND_S
    finally:
        listener.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a test certificate")
def test_tls_is_cut_at_the_deadline_too(serve, stop, tmp_path, monkeypatch):
    """TLS wraps (and detaches) the socket the watchdog saw: it must still reach it."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)

    def drip_headers(h: http.server.BaseHTTPRequestHandler) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\n")
        while not stop.wait(0.3):
            h.wfile.write(b"X-Drip: 1\r\n")
            h.wfile.flush()

    s = serve({"/ok": lambda h: send(h, b"over tls"), "/slow-headers": drip_headers}, tls)
    assert read_uri(f"{s.url}/ok", LIMITS) == b"over tls"
    start = time.monotonic()
    with pytest.raises(FetchTimeout, match="no complete response within"):
        read_uri(f"{s.url}/slow-headers", LIMITS.model_copy(update={"read_timeout_s": 1.0}))
    assert time.monotonic() - start < BOUND_S
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never shakes hands
        start = time.monotonic()
        with pytest.raises(FetchTimeout, match="no complete response within"):
            read_uri(f"https://127.0.0.1:{silent.getsockname()[1]}/x", LIMITS)
        assert time.monotonic() - start < BOUND_S


# ---------------------------------------------------------------------------- big bodies


def test_an_honest_content_length_over_the_cap_is_refused_before_reading(serve):
    s = serve({"/big": lambda h: send(h, b"z" * 5000)})
    with pytest.raises(FetchTooLarge, match=r"/big: Content-Length 5000 exceeds the 1000 bytes size cap"):
        read_uri(f"{s.url}/big", LIMITS)


@pytest.mark.parametrize("chunked", [False, True], ids=["no-length", "chunked"])
def test_an_endless_body_stops_at_the_cap(serve, chunked):
    s = serve({"/endless": lambda h: endless(h, chunked=chunked)})
    with pytest.raises(FetchTooLarge, match="body exceeded the 1000 bytes size cap"):
        read_uri(f"{s.url}/endless", LIMITS)
    with open_uri(f"{s.url}/endless", LIMITS) as body:
        got = body.read(1000)
        assert len(got) <= 1000
        with pytest.raises(FetchTooLarge):
            while body.read(1000):
                pass
        assert body.bytes_read == 1001


def test_a_lying_content_length_gets_only_what_it_announced(serve):
    s = serve({"/liar": lambda h: send(h, b"w" * 50_000, length=100)})
    assert read_uri(f"{s.url}/liar", LIMITS) == b"w" * 100


def test_a_truncated_body_is_retried_then_unavailable(serve):
    s = serve({"/short": lambda h: send(h, b"0123456789", length=500)})
    with pytest.raises(FetchUnavailable, match=r"/short: .*gave up after 3 tries"):
        read_uri(f"{s.url}/short", LIMITS)
    assert [p for p, _ in s.requests] == ["/short"] * 3


# ---------------------------------------------------------------------------- rules


def test_identity_is_asked_for_and_gzip_refused(serve):
    bomb = gzip.compress(b"\0" * 1_000_000)  # 1 MB inflated from about 1 kB
    s = serve({
        "/plain": lambda h: send(h, b"hello"),
        "/bomb": lambda h: send(h, bomb, headers={"Content-Encoding": "gzip"}),
    })
    assert read_uri(f"{s.url}/plain", LIMITS) == b"hello"
    assert s.requests[0][1]["Accept-Encoding"] == "identity"
    with pytest.raises(FetchRefused, match=r"/bomb: Content-Encoding 'gzip' refused \(identity only\)"):
        read_uri(f"{s.url}/bomb", LIMITS.model_copy(update={"max_bytes": 10 << 20}))


def test_redirects_stay_on_the_same_origin(serve):
    elsewhere = serve({"/x": lambda h: send(h, b"from elsewhere")})

    def to(target: str) -> Route:
        return lambda h: send(h, b"", status=302, headers={"Location": target})

    s = serve({
        "/a": to("/b"),
        "/b": to("/c"),
        "/c": lambda h: send(h, b"arrived"),
        "/off": to(f"http://localhost:{elsewhere.port}/x"),  # same machine, another host and port
        "/loop": to("/loop"),
    })
    assert read_uri(f"{s.url}/a", LIMITS) == b"arrived"
    assert [p for p, _ in s.requests] == ["/a", "/b", "/c"]
    with pytest.raises(FetchRefused, match=rf"redirect to another origin \(http://localhost:{elsewhere.port}/x\) refused"):
        read_uri(f"{s.url}/off", LIMITS)
    assert elsewhere.requests == []
    with pytest.raises(FetchRefused, match="more than 3 redirects"):
        read_uri(f"{s.url}/loop", LIMITS)


def test_not_found_is_its_own_error(serve, tmp_path):
    s = serve({})
    with pytest.raises(FetchNotFound, match=r"GET .*/missing: HTTP 404 \(not found\)"):
        read_uri(f"{s.url}/missing", LIMITS)
    with pytest.raises(FetchNotFound, match="no such file"):
        read_uri(f"file://{tmp_path}/missing", LIMITS)
    assert len(s.requests) == 1  # not retried


def test_transient_errors_are_retried_within_the_deadline(serve):
    calls = []

    def flaky(h: http.server.BaseHTTPRequestHandler) -> None:
        calls.append(1)
        send(h, b"busy", status=503) if len(calls) < 3 else send(h, b"ok")

    s = serve({
        "/flaky": flaky,
        "/down": lambda h: send(h, b"busy", status=503),
        "/forbidden": lambda h: send(h, b"no", status=403),
    })
    assert read_uri(f"{s.url}/flaky", LIMITS) == b"ok"
    with pytest.raises(FetchUnavailable, match=r"HTTP 503 \(gave up after 3 tries\)"):
        read_uri(f"{s.url}/down", LIMITS)
    with pytest.raises(FetchRefused, match=r"HTTP 403 \(only 200 is accepted\)"):
        read_uri(f"{s.url}/forbidden", LIMITS)
    assert [p for p, _ in s.requests].count("/forbidden") == 1  # a refusal is not retried


# ---------------------------------------------------------------------------- other schemes


def test_files_paths_and_data_uris(tmp_path):
    (tmp_path / "a b.txt").write_bytes(b"on disk")
    assert read_uri(tmp_path / "a b.txt", LIMITS) == b"on disk"
    assert read_uri(f"file://{tmp_path}/a%20b.txt", LIMITS) == b"on disk"
    assert read_uri("data:," + "hello%20world", LIMITS) == b"hello world"
    assert read_uri("data:application/json;base64," + base64.b64encode(b'{"a":1}').decode(), LIMITS) == b'{"a":1}'
    (tmp_path / "big").write_bytes(b"q" * 1001)
    with pytest.raises(FetchTooLarge, match=r"1001 bytes exceed the 1000 bytes size cap"):
        read_uri(tmp_path / "big", LIMITS)
    with pytest.raises(FetchTooLarge, match="body exceeded"):
        read_uri("/dev/zero", LIMITS)  # no size to check up front: the read stops at the cap
    with pytest.raises(FetchTooLarge):
        read_uri("data:;base64," + base64.b64encode(b"q" * 1001).decode(), LIMITS)


@pytest.mark.parametrize("uri", ["gs://bucket/x", "s3://bucket/x", "memory://x", "ftp://host/x", "builtin://digits"])
def test_other_schemes_are_refused(uri):
    scheme = uri.split(":", 1)[0]
    with pytest.raises(FetchRefused, match=rf"unsupported URI scheme '{scheme}' \(http\(s\), file and data: only"):
        read_uri(uri, LIMITS)


def test_every_failure_is_a_fetch_error():
    for cls in (FetchNotFound, FetchTimeout, FetchTooLarge, FetchRefused, FetchUnavailable, FetchHashMismatch):
        assert issubclass(cls, FetchError)


# ---------------------------------------------------------------------------- download


def test_download_streams_to_disk_and_checks_the_hash(serve, tmp_path):
    body = bytes(range(256)) * 3
    s = serve({"/blob": lambda h: send(h, body)})
    digest = hashlib.sha256(body).hexdigest()
    dest = download(f"{s.url}/blob", tmp_path / "out" / "blob", LIMITS, sha256=digest.upper())
    assert dest.read_bytes() == body
    with pytest.raises(FetchHashMismatch, match=f"expected {'0' * 64}, got {digest}"):
        download(f"{s.url}/blob", tmp_path / "wrong", LIMITS, sha256="0" * 64)
    with pytest.raises(FetchTooLarge):
        download("/dev/zero", tmp_path / "zero", LIMITS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no partial or wrong file left
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["blob"]
