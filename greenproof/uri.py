"""The one URI reader: every spec, dataset and checkpoint the project downloads comes through here.

A provider's artifact server is untrusted (docs/protocol.md §4): it may drip one byte
every half second, accept and never answer, send a gzip bomb, redirect elsewhere or
send an endless body. Every read therefore runs under :class:`FetchLimits`:

* ``max_bytes``: a ``Content-Length`` above it is refused before the body is read,
  and reading stops at ``max_bytes + 1`` whatever the headers said;
* ``deadline_s``: the whole transfer (connect, redirects, retries, body) ends by
  then. A watchdog thread shuts the transfer's sockets at the deadline, so even a
  server that drips its *headers* cannot hold a reader past it;
* ``min_rate_bps``: once a body has been read for ``rate_grace_s``, it is abandoned
  when its average throughput falls below this;
* ``connect_timeout_s`` / ``read_timeout_s``: per connect and per socket read, both
  clamped to the time left before the deadline;
* ``retries``: transient failures (connection refused or reset, a truncated body,
  HTTP 408/425/429/5xx, a read timeout) are retried with exponential backoff while
  the deadline allows.

Schemes: ``http``/``https`` (``Accept-Encoding: identity``; any other
``Content-Encoding`` is refused; redirects followed only to the same scheme, host
and port, at most three), ``file`` and plain local paths, ``data:``. Anything else,
fsspec URLs included, is refused.

Failures are :class:`FetchError` subclasses, so a caller can tell a missing artifact
(:class:`FetchNotFound`) from one that broke a limit or a rule (:class:`FetchTimeout`,
:class:`FetchTooLarge`, :class:`FetchRefused`), a server that could not be reached
(:class:`FetchUnavailable`) and bytes that are not what was pinned
(:class:`FetchHashMismatch`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import io
import logging
import os
import socket
import ssl
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, unquote_to_bytes, urljoin, urlsplit

import requests
import urllib3
from pydantic import BaseModel, ConfigDict, Field
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16
MAX_REDIRECTS = 3
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
NOT_FOUND_STATUS = frozenset({404, 410})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HEADERS = {"Accept-Encoding": "identity", "User-Agent": "greenproof"}
T = TypeVar("T")


# ---------------------------------------------------------------------------- limits and errors


class FetchLimits(BaseModel):
    """How much, how long and how slowly one fetch may go before it is abandoned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_bytes: int = Field(gt=0, description="size cap of the body")
    deadline_s: float = Field(gt=0, description="the whole transfer, connect and retries included")
    min_rate_bps: float = Field(0.0, ge=0, description="average bytes/s an attempt must keep (0: off)")
    rate_grace_s: float = Field(10.0, ge=0, description="how long an attempt runs before the rate counts")
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0, description="longest wait for any one socket read")
    retries: int = Field(2, ge=0, description="extra tries after a transient failure")
    retry_backoff_s: float = Field(0.5, ge=0, description="first backoff; doubles per retry")

    @classmethod
    def sized(cls, max_bytes: int, *, min_rate_bps: float, base_s: float = 60.0, **kw: Any) -> FetchLimits:
        """Limits whose deadline lets ``max_bytes`` arrive at ``min_rate_bps``: ``base_s + max_bytes / rate``."""
        return cls(
            max_bytes=max_bytes, deadline_s=base_s + max_bytes / min_rate_bps, min_rate_bps=min_rate_bps, **kw
        )


class FetchError(Exception):
    """A URI that could not be read within its limits; the message names the URI and the limit."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient  # worth another try while the deadline allows


class FetchNotFound(FetchError):
    """Nothing there: HTTP 404/410 or no such file."""


class FetchTimeout(FetchError):
    """The deadline, the minimum rate or a read timeout ran out."""


class FetchTooLarge(FetchError):
    """The body is (or announces itself as) larger than ``max_bytes``."""


class FetchRefused(FetchError):
    """The URI or the answer breaks a rule: scheme, encoding, redirect, status."""


class FetchUnavailable(FetchError):
    """The source could not be reached or read (connection errors, HTTP 5xx, a truncated body)."""


class FetchHashMismatch(FetchError):
    """The bytes arrived but do not hash to the pinned value."""


def format_bytes(n: float) -> str:
    """``12 MiB``, ``1.5 GiB``, ``800 bytes``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n:.0f} bytes"


# ---------------------------------------------------------------------------- the transfer clock


class _Current(threading.local):
    transfer: _Transfer | None = None


_current = _Current()


class _Transfer:
    """One fetch's clock: the overall deadline, and a watchdog that shuts its sockets at it."""

    def __init__(self, uri: str, limits: FetchLimits) -> None:
        self.uri = uri
        self.limits = limits
        self.deadline = time.monotonic() + limits.deadline_s
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(limits.deadline_s, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Transfer:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down at the deadline (at once if it has passed).

        The watchdog keeps a duplicate descriptor: TLS wrapping detaches the original
        socket object, but a shutdown through any descriptor ends the connection.
        """
        dup = sock.dup()
        with self._lock:
            self._sockets.append(dup)
            late = self.expired
        if late:
            _shutdown(dup)

    @contextmanager
    def connecting(self) -> Iterator[None]:
        """Sockets this thread opens meanwhile belong to this transfer (see ``_WatchedConnection``)."""
        outer, _current.transfer = _current.transfer, self
        try:
            yield
        finally:
            _current.transfer = outer

    def over(self) -> bool:
        return self.expired or time.monotonic() >= self.deadline

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def timeout(self) -> FetchTimeout:
        return FetchTimeout(f"{self.uri}: no complete response within {self.limits.deadline_s:g} s")

    def check(self) -> None:
        if self.over():
            raise self.timeout()

    def timeouts(self) -> tuple[float, float]:
        """(connect, read) timeouts for the next request, never past the deadline."""
        self.check()
        left = self.remaining()
        return min(self.limits.connect_timeout_s, left), min(self.limits.read_timeout_s, left)

    def failure(self, exc: BaseException, where: str, read_s: float) -> FetchError:
        """The FetchError for a network exception raised while reading ``where``."""
        if self.over():
            return self.timeout()
        if isinstance(exc, requests.exceptions.SSLError | ssl.SSLCertVerificationError):
            return FetchRefused(f"{where}: TLS: {_reason(exc)}")
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            limit = self.limits.connect_timeout_s
            return FetchUnavailable(f"{where}: no connection within {limit:g} s", transient=True)
        if isinstance(exc, requests.exceptions.ReadTimeout | urllib3.exceptions.ReadTimeoutError | TimeoutError):
            return FetchTimeout(f"{where}: no data for {read_s:.3g} s", transient=True)
        network = requests.exceptions.ConnectionError | urllib3.exceptions.HTTPError | http.client.HTTPException
        if isinstance(exc, network | OSError):
            return FetchUnavailable(f"{where}: {_reason(exc)}", transient=True)
        return FetchRefused(f"{where}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error (``Connection refused``, not the pool's repr)."""
    while True:
        if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
            exc = exc.reason
        elif isinstance(exc, requests.RequestException) and exc.args and isinstance(exc.args[0], BaseException):
            exc = exc.args[0]
        elif isinstance(exc.__cause__, OSError):
            exc = exc.__cause__
        else:
            break
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a recv() blocked in another thread
    except OSError:
        pass  # already closed


def _retrying(t: _Transfer, attempt: Callable[[], T]) -> T:
    """``attempt()``, again after each transient failure while retries and the deadline allow."""
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except FetchError as e:
            if not e.transient:
                raise
            wait = t.limits.retry_backoff_s * 2 ** (tries - 1)
            if tries > t.limits.retries or t.remaining() <= wait:
                raise type(e)(f"{e} (gave up after {tries} tries)") from None
            log.info("fetch %s: %s; retry %d in %.1f s", t.uri, e, tries, wait)
            time.sleep(wait)


# ---------------------------------------------------------------------------- the body stream


class FetchStream(io.RawIOBase):
    """A body being read: every read stops at the size cap, the deadline and the minimum rate."""

    def __init__(
        self, t: _Transfer, read1: Callable[[int], bytes], close: Callable[[], None], *, where: str, read_s: float
    ) -> None:
        super().__init__()
        self._t = t
        self._read1 = read1
        self._close = close
        self._where = where
        self._read_s = read_s
        self._started = time.monotonic()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        lim = self._t.limits
        want = min(len(b), lim.max_bytes + 1 - self.bytes_read)
        if want <= 0:
            return 0
        try:
            chunk = self._read1(want)
        except FetchError:
            raise
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as e:
            raise self._t.failure(e, self._where, self._read_s) from None
        if not chunk:
            self._t.check()  # the watchdog's shutdown also reads as end of stream
            return 0
        self.bytes_read += len(chunk)
        if self.bytes_read > lim.max_bytes:
            raise FetchTooLarge(f"{self._where}: body exceeded the {format_bytes(lim.max_bytes)} size cap")
        self._t.check()
        self._check_rate()
        b[: len(chunk)] = chunk
        return len(chunk)

    def _check_rate(self) -> None:
        lim = self._t.limits
        elapsed = time.monotonic() - self._started
        if lim.min_rate_bps and elapsed >= lim.rate_grace_s and self.bytes_read < lim.min_rate_bps * elapsed:
            raise FetchTimeout(
                f"{self._where}: {self.bytes_read / elapsed:.0f} bytes/s over {elapsed:.1f} s is below "
                f"the minimum rate of {format_bytes(lim.min_rate_bps)}/s"
            )

    def close(self) -> None:
        if not self.closed:
            self._close()
        super().close()


# ---------------------------------------------------------------------------- schemes


def _open(t: _Transfer) -> FetchStream:
    """One attempt at opening ``t.uri`` (no retries)."""
    t.check()
    scheme = urlsplit(t.uri).scheme.lower()
    if scheme in ("http", "https"):
        return _open_http(t)
    if scheme in ("", "file"):
        return _open_file(t)
    if scheme == "data":
        return _open_data(t)
    raise FetchRefused(
        f"{t.uri}: unsupported URI scheme {scheme!r} (http(s), file and data: only; fsspec URLs are not read)"
    )


def local_path(uri: str) -> Path:
    """The file a plain path or ``file://`` URI names."""
    p = urlsplit(uri)
    if p.scheme.lower() != "file":
        return Path(uri).expanduser()
    if p.netloc not in ("", "localhost"):
        raise FetchRefused(f"{uri}: file URIs must name a local file (host {p.netloc!r})")
    return Path(unquote(p.path))


def _open_file(t: _Transfer) -> FetchStream:
    path = local_path(t.uri)
    try:
        f = open(path, "rb")  # closed by the stream
    except (FileNotFoundError, NotADirectoryError):
        raise FetchNotFound(f"{t.uri}: no such file") from None
    except OSError as e:
        raise FetchUnavailable(f"{t.uri}: {e.strerror or e}") from None
    st = os.fstat(f.fileno())
    if stat.S_ISREG(st.st_mode) and st.st_size > t.limits.max_bytes:
        f.close()
        raise FetchTooLarge(
            f"{t.uri}: {st.st_size} bytes exceed the {format_bytes(t.limits.max_bytes)} size cap"
        )
    return FetchStream(t, f.read1, f.close, where=t.uri, read_s=t.limits.read_timeout_s)


def _open_data(t: _Transfer) -> FetchStream:
    header, comma, payload = t.uri[len("data:") :].partition(",")
    cap = t.limits.max_bytes
    where = t.uri[:48] + ("…" if len(t.uri) > 48 else "")
    if not comma:
        raise FetchRefused(f"{where}: malformed data: URI (no comma)")
    if len(payload) > 3 * cap + 4:  # no encoding is less dense than %XX: refuse before decoding
        raise FetchTooLarge(f"{where}: data: URI larger than the {format_bytes(cap)} size cap")
    try:
        raw = base64.b64decode(payload) if header.endswith(";base64") else unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as e:
        raise FetchRefused(f"{where}: bad base64 in data: URI ({e})") from None
    if len(raw) > cap:
        raise FetchTooLarge(f"{where}: {len(raw)} bytes exceed the {format_bytes(cap)} size cap")
    buf = io.BytesIO(raw)
    return FetchStream(t, buf.read1, buf.close, where=where, read_s=t.limits.read_timeout_s)


class _WatchedConnection:
    """Registers each new socket with the transfer running in this thread, whose watchdog
    shuts it at the deadline: a per-read timeout alone never stops a server that drips
    (headers included), since each drip restarts it."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        if _current.transfer is not None:
            _current.transfer.watch(sock)
        return sock


class _HTTPConnection(_WatchedConnection, HTTPConnection):
    pass


class _HTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connections the transfer's watchdog can shut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS managers bring their own pools
            manager.pool_classes_by_scheme = _POOLS
        return manager


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urlsplit(url)
    scheme = p.scheme.lower()
    try:
        port = p.port
    except ValueError:
        raise FetchRefused(f"{url}: bad port") from None
    return scheme, (p.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def _open_http(t: _Transfer) -> FetchStream:
    session = requests.Session()
    adapter = _WatchedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    try:
        resp, url, read_s = _get(t, session)
    except BaseException:
        session.close()
        raise
    raw = resp.raw

    def close() -> None:
        resp.close()
        session.close()

    return FetchStream(
        t, lambda n: raw.read1(n, decode_content=False), close, where=f"GET {url}", read_s=read_s
    )


def _get(t: _Transfer, session: requests.Session) -> tuple[requests.Response, str, float]:
    """The 200 response for ``t.uri`` after same-origin redirects, headers checked, body unread."""
    url, origin = t.uri, _origin(t.uri)
    for _hop in range(MAX_REDIRECTS + 1):
        connect_s, read_s = t.timeouts()
        try:
            with t.connecting():
                resp = session.get(
                    url, headers=_HEADERS, stream=True, allow_redirects=False, timeout=(connect_s, read_s)
                )
        except requests.RequestException as e:
            raise t.failure(e, f"GET {url}", read_s) from None
        if not resp.is_redirect:
            try:
                _check_headers(t, url, resp)
            except BaseException:
                resp.close()
                raise
            return resp, url, read_s
        target = urljoin(url, resp.headers["location"])
        resp.close()
        if _origin(target) != origin:
            raise FetchRefused(
                f"GET {url}: redirect to another origin ({target}) refused; only the same scheme, "
                "host and port are followed"
            )
        url = target
    raise FetchRefused(f"GET {t.uri}: more than {MAX_REDIRECTS} redirects")


def _check_headers(t: _Transfer, url: str, resp: requests.Response) -> None:
    code = resp.status_code
    if code in NOT_FOUND_STATUS:
        raise FetchNotFound(f"GET {url}: HTTP {code} (not found)")
    if code in TRANSIENT_STATUS:
        raise FetchUnavailable(f"GET {url}: HTTP {code}", transient=True)
    if code != 200:
        raise FetchRefused(f"GET {url}: HTTP {code} (only 200 is accepted)")
    encoding = resp.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise FetchRefused(f"GET {url}: Content-Encoding {encoding!r} refused (identity only)")
    length = resp.headers.get("content-length")
    if length is not None:
        try:
            n = int(length)
        except ValueError:
            raise FetchRefused(f"GET {url}: bad Content-Length {length!r}") from None
        cap = t.limits.max_bytes
        if n > cap:
            raise FetchTooLarge(f"GET {url}: Content-Length {n} exceeds the {format_bytes(cap)} size cap")


# ---------------------------------------------------------------------------- entry points


@contextmanager
def open_uri(uri: str | Path, limits: FetchLimits) -> Iterator[FetchStream]:
    """A binary stream of ``uri``'s body under ``limits``.

    Opening is retried on transient failures; reads from the stream are not (the caller
    has already seen the bytes). The deadline covers the whole ``with`` block.
    """
    with _Transfer(str(uri), limits) as t:
        stream = _retrying(t, lambda: _open(t))
        with stream:
            yield stream


def _read_all(t: _Transfer) -> bytes:
    buf = bytearray()
    with _open(t) as body:
        while chunk := body.read(CHUNK_BYTES):
            buf += chunk
    return bytes(buf)


def read_uri(uri: str | Path, limits: FetchLimits) -> bytes:
    """The whole body of ``uri`` in memory (small things: specs); retried as a whole."""
    with _Transfer(str(uri), limits) as t:
        return _retrying(t, lambda: _read_all(t))


def download(uri: str | Path, dest: str | Path, limits: FetchLimits, *, sha256: str | None = None) -> Path:
    """Stream ``uri`` to ``dest`` on disk, hashing while it streams; return ``dest``.

    The bytes go to a temporary file beside ``dest`` that is renamed into place only
    once complete and (when ``sha256`` is given) matching: ``dest`` never holds a
    partial or wrong file, and the body is never held in memory.
    """
    uri, dest = str(uri), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f, _Transfer(uri, limits) as t:

            def attempt() -> str:
                f.seek(0)
                f.truncate()
                h = hashlib.sha256()
                with _open(t) as body:
                    while chunk := body.read(CHUNK_BYTES):
                        f.write(chunk)
                        h.update(chunk)
                return h.hexdigest()

            digest = _retrying(t, attempt)
        if sha256 is not None and digest != sha256.lower():
            raise FetchHashMismatch(f"sha256 mismatch for {uri} (expected {sha256.lower()}, got {digest})")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.debug("fetched %s to %s (sha256 %s)", uri, dest, digest)
    return dest
