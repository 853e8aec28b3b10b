"""The worker's artifact server: read-only HTTP access to committed checkpoints.

``result_uri`` committed on chain is ``{public_url}/artifacts/{job_id}``, so a
verifier fetches boundary checkpoints at ``{result_uri}/{state_hash hex}`` and
the requester the trained model at ``{result_uri}/final``.

Routes (GET and HEAD only; nothing is writable from outside):

* ``GET /health`` -> ``{"status": "ok", ...}``
* ``GET /artifacts/{job_id}/{state_hash}`` -> the safetensors checkpoint,
  streamed (``application/octet-stream``); ``state_hash`` is 64 lowercase hex
  digits, optionally ``0x``-prefixed. Only hashes journaled as one of that
  job's boundaries are served, and only by content address inside the store:
  a name never becomes a path.
* ``GET /artifacts/{job_id}/final`` -> the job's final model (same format).
* ``GET /artifacts/{job_id}/dataset`` -> the job's sha256-pinned dataset, from the
  worker's dataset cache (``greenproof.data.dataset_cache_path``), so verifiers can
  audit even when the requester's dataset URI is gone; 404 for builtin datasets
  and for a dataset the worker does not hold.

Errors: 404 unknown job or hash, 422 malformed job id or hash, 405 any other
method, 413 a request body over the limit, 431 oversized headers, 429 over the
per-IP rate limit. Bad input never produces a 500.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("greenproof.worker.server")

HASH_RE = re.compile(r"^(?:0x)?([0-9a-f]{64})$")
JOB_ID_RE = re.compile(r"^[0-9]{1,78}$")
UINT256_MAX = 2**256 - 1


class ServerLimits(BaseModel):
    """Abuse limits of the artifact server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(1024, ge=0, description="largest request body (nothing accepts one)")
    max_header_bytes: int = Field(8192, gt=0, description="largest total size of request headers")
    rate_per_s: float = Field(20.0, gt=0, description="sustained requests per second per client IP")
    burst: int = Field(60, gt=0, description="requests a client IP may make at once")


class ArtifactIndex(Protocol):
    """What the server may serve. The worker implements it over journal + store."""

    def checkpoint_path(self, job_id: int, state_hash: bytes) -> Path | None:
        """The file of a journaled boundary checkpoint of ``job_id``, or None."""

    def final_hash(self, job_id: int) -> bytes | None:
        """The job's final state hash once training finished, or None."""

    def dataset_path(self, job_id: int) -> Path | None:
        """The file of the job's sha256-pinned dataset when the worker holds it, or None."""


class JournalIndex:
    """:class:`ArtifactIndex` over the worker's journal and artifact store."""

    def __init__(self, journal: Any, store: Any) -> None:
        self.journal = journal
        self.store = store

    def checkpoint_path(self, job_id: int, state_hash: bytes) -> Path | None:
        if not self.journal.has_boundary_hash(job_id, state_hash):
            return None
        if not self.store.has(state_hash):
            return None
        return Path(self.store.path(state_hash))

    def final_hash(self, job_id: int) -> bytes | None:
        row = self.journal.job(job_id)
        if row is not None and row.final_state_hash is not None:
            return row.final_state_hash
        bounds = self.journal.boundaries(job_id)
        if row is None or not bounds or bounds[-1].k != row.num_segments:
            return None
        return bounds[-1].state_hash

    def dataset_path(self, job_id: int) -> Path | None:
        from greenproof.data import dataset_cache_path
        from greenproof.spec import parse_spec

        row = self.journal.job(job_id)
        if row is None or row.spec_json is None:
            return None
        ref = parse_spec(json.loads(row.spec_json)).dataset
        if ref.sha256 is None or ref.uri.startswith("builtin://"):
            return None
        path = dataset_cache_path(ref.sha256)
        return path if path.is_file() else None


# ----------------------------------------------------------------- limits
class TokenBuckets:
    """A token bucket per client IP (thread-safe; stale buckets are pruned)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token; returns 0 if allowed, else the seconds to wait."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            if len(self._buckets) > 10_000:
                horizon = self.burst / self.rate
                self._buckets = {
                    k: v for k, v in self._buckets.items() if now - v[1] < horizon
                }
        return wait


def _plain(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class LimitsMiddleware:
    """Header size, body size and rate limits, before any routing happens."""

    def __init__(self, app: ASGIApp, limits: ServerLimits) -> None:
        self.app = app
        self.limits = limits
        self.buckets = TokenBuckets(limits.rate_per_s, limits.burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        header_bytes = sum(len(k) + len(v) + 4 for k, v in headers)
        if header_bytes > self.limits.max_header_bytes:
            await _plain(431, f"request headers over {self.limits.max_header_bytes} bytes")(
                scope, receive, send
            )
            return
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        wait = self.buckets.take(ip)
        if wait > 0:
            await _plain(
                429, "rate limit exceeded", {"Retry-After": str(max(1, round(wait)))}
            )(scope, receive, send)
            return
        length = 0
        chunked = False
        for k, v in headers:
            if k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    await _plain(400, "bad Content-Length")(scope, receive, send)
                    return
            elif k == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
        if length > self.limits.max_body_bytes or (chunked and self.limits.max_body_bytes == 0):
            await _plain(413, f"request body over {self.limits.max_body_bytes} bytes")(
                scope, receive, send
            )
            return
        await self.app(scope, self._capped(receive), send)

    def _capped(self, receive: Receive) -> Receive:
        seen = 0
        cap = self.limits.max_body_bytes

        async def wrapped() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise StarletteHTTPException(413, f"request body over {cap} bytes")
            return message

        return wrapped


# ----------------------------------------------------------------- app
def _parse_job_id(raw: str) -> int | None:
    if not JOB_ID_RE.match(raw):
        return None
    value = int(raw)
    return value if value <= UINT256_MAX else None


def dataset_router(index: ArtifactIndex) -> APIRouter:
    """``/artifacts/{job_id}/dataset``: the job's pinned dataset when the worker holds it."""
    router = APIRouter()

    @router.api_route("/artifacts/{job_id}/dataset", methods=["GET", "HEAD"])
    def dataset(job_id: str) -> Response:
        jid = _parse_job_id(job_id)
        if jid is None:
            return _plain(422, "job id must be a decimal uint256")
        path = index.dataset_path(jid)
        if path is None or not path.is_file():
            return _plain(404, "no pinned dataset for this job here")
        return FileResponse(path, media_type="application/octet-stream", filename=f"job-{jid}-dataset")

    return router


def create_app(
    index: ArtifactIndex,
    *,
    cheat: Any = None,
    limits: ServerLimits | None = None,
    info: dict[str, Any] | None = None,
) -> ASGIApp:
    """The artifact server's ASGI app (tests drive it with ``TestClient``)."""
    limits = limits or ServerLimits()
    app = FastAPI(
        title="greenproof worker artifacts",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    started = time.time()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _plain(422, "malformed request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _plain(exc.status_code, str(exc.detail), exc.headers)

    def _serve(job_id: int, state_hash: bytes, filename: str, request: Request) -> Response:
        if cheat is not None:
            verdict = cheat.serve(job_id, state_hash)
            if verdict == "withhold":
                log.info("job %d: cheat withholds checkpoint %s", job_id, state_hash.hex())
                return _plain(404, "unknown checkpoint")
            if isinstance(verdict, bytes | bytearray):
                log.info("job %d: cheat swaps checkpoint %s", job_id, state_hash.hex())
                return Response(
                    bytes(verdict),
                    media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'},
                )
        path = index.checkpoint_path(job_id, state_hash)
        if path is None or not path.is_file():
            return _plain(404, "unknown checkpoint")
        log.debug("job %d: serving %s to %s", job_id, state_hash.hex(), request.client)
        return FileResponse(
            path,
            media_type="application/octet-stream",
            filename=filename,
            headers={"X-State-Hash": state_hash.hex()},
        )

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health() -> dict[str, Any]:
        return {"status": "ok", "uptime_s": round(time.time() - started, 1), **(info or {})}

    @app.api_route("/artifacts/{job_id}/final", methods=["GET", "HEAD"])
    def final(job_id: str, request: Request) -> Response:
        jid = _parse_job_id(job_id)
        if jid is None:
            return _plain(422, "job id must be a decimal uint256")
        h = index.final_hash(jid)
        if h is None:
            return _plain(404, "no final model for this job (yet)")
        return _serve(jid, h, f"job-{jid}-final.safetensors", request)

    app.include_router(dataset_router(index))  # before the route that takes any name as a hash

    @app.api_route("/artifacts/{job_id}/{state_hash}", methods=["GET", "HEAD"])
    def artifact(job_id: str, state_hash: str, request: Request) -> Response:
        jid = _parse_job_id(job_id)
        if jid is None:
            return _plain(422, "job id must be a decimal uint256")
        m = HASH_RE.match(state_hash)
        if m is None:
            return _plain(422, "state hash must be 64 lowercase hex digits (optionally 0x-prefixed)")
        h = bytes.fromhex(m.group(1))
        return _serve(jid, h, f"{h.hex()}.safetensors", request)

    return LimitsMiddleware(app, limits)


class ArtifactServer:
    """uvicorn serving :func:`create_app` in a background thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8700) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            h11_max_incomplete_event_size=16 * 1024,
            timeout_keep_alive=5,
            limit_concurrency=64,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="artifact-server", daemon=True)
        self.host = host
        self.port = port

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"worker: artifact server could not listen on {self.host}:{self.port} "
                    "(port in use? try --port)"
                )
            time.sleep(0.02)
        servers = self._server.servers  # set by uvicorn's startup, before `started`
        if servers and servers[0].sockets:
            self.port = servers[0].sockets[0].getsockname()[1]
        log.info("artifact server listening on http://%s:%d", self.host, self.port)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
