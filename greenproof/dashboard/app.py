"""FastAPI dashboard: HTML pages for people, a JSON API (``/api``) for programs.

``create_app(source, data_dirs=...)`` takes anything with a ``snapshot()``
returning a :class:`~greenproof.indexer.MarketSnapshot` — a live
:class:`IndexerSource` over a chain, or a :class:`StaticSource` in tests — and
the data directories where workers and verifiers keep run records and evidence.

Pages: ``/`` (jobs by state), ``/providers``, ``/verifiers`` (the court's class
pools with their members' seats, and every verifier's seats, votes and money),
``/jobs/{id}`` (loss curve, segments, the committee of each round with its
votes, the decision and each seat's settlement, audit evidence). API:
``/api/jobs``, ``/api/jobs/{id}``, ``/api/pools``, ``/api/providers``,
``/api/verifiers``, ``/api/stats``, ``/api/health``; the OpenAPI schema is at
``/openapi.json``. One router per audience (the JSON API, the pages) over one
:class:`Dashboard` holding the shared state.

Bad input is a 404 or a 422, never a 500: path parameters are bounded
integers, and an unreachable chain is reported as 503 with a reason.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from greenproof.dashboard.rundata import RunDataStore
from greenproof.indexer import (
    ClassPoolView,
    JobState,
    JobView,
    MarketSnapshot,
    MarketStats,
    ProviderView,
    VerifierView,
    mj_to_wh,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
UINT256_MAX = 2**256 - 1
JobId = Annotated[int, PathParam(ge=0, le=UINT256_MAX, description="on-chain job id")]


class SnapshotSource(Protocol):
    def snapshot(self) -> MarketSnapshot: ...


class StaticSource:
    """A fixed snapshot (tests, offline rendering of a finished demo)."""

    def __init__(self, snapshot: MarketSnapshot) -> None:
        self._snapshot = snapshot

    def snapshot(self) -> MarketSnapshot:
        return self._snapshot


class IndexerSource:
    """A live indexer, refreshed at most every ``min_interval`` seconds, thread-safe."""

    def __init__(self, indexer: Any, min_interval: float = 1.0) -> None:
        self.indexer = indexer
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._last = 0.0
        self._cached: MarketSnapshot | None = None

    def snapshot(self) -> MarketSnapshot:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._last >= self.min_interval:
                self._cached = self.indexer.snapshot()
                self._last = now
            return self._cached


class SourceUnavailable(Exception):
    """The chain behind the dashboard cannot be read right now."""


# --------------------------------------------------------------------------- API models


class JobSummary(BaseModel):
    job_id: int
    state: JobState
    requester: str
    provider: str | None
    num_segments: int
    payment: int
    verifier_fee: int
    collateral: int
    min_green_bps: int
    energy_wh: float
    carbon_mg: int
    outcome: str | None
    paid: int
    bonus: int
    slashed: int

    @classmethod
    def of(cls, job: JobView) -> JobSummary:
        return cls(
            **job.model_dump(
                include={
                    "job_id", "state", "requester", "provider", "num_segments", "payment",
                    "verifier_fee", "collateral", "min_green_bps", "carbon_mg", "outcome",
                    "paid", "bonus", "slashed",
                }
            ),
            energy_wh=job.energy_wh,
        )


class JobDetail(BaseModel):
    job: JobView
    energy_wh: float
    wall_s: float | None
    losses: list[float] = Field(default_factory=list, description="training loss per step")
    segment_energy_wh: list[float] = Field(default_factory=list)
    evidence: list[dict[str, Any]] = Field(
        default_factory=list, description="verifiers' audit evidence reports"
    )


class Health(BaseModel):
    ok: bool
    block: int


class ErrorBody(BaseModel):
    detail: str


# --------------------------------------------------------------------------- helpers


def _short(addr: str | None) -> str:
    if not addr:
        return "—"
    return f"{addr[:6]}…{addr[-4:]}" if len(addr) > 12 else addr


def _svg_polyline(values: list[float], width: int = 640, height: int = 240) -> str:
    """An inline SVG line chart with labelled axes (training step, loss): no JavaScript,
    no external assets."""
    if len(values) < 2:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    left, right, top, bottom = 64, 16, 16, 44
    w, h = width - left - right, height - top - bottom
    last = len(values) - 1

    def x(i: float) -> float:
        return left + i * w / last

    def y(v: float) -> float:
        return top + h - (v - lo) * h / span

    pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    ticks = []
    for k in range(5):  # y ticks: loss
        v = lo + span * k / 4
        ticks.append(f'<line x1="{left - 4}" y1="{y(v):.1f}" x2="{left}" y2="{y(v):.1f}" stroke="#555"/>'
                     f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{v:.3g}</text>')
    for k in range(5):  # x ticks: step
        i = round(last * k / 4)
        ticks.append(f'<line x1="{x(i):.1f}" y1="{top + h}" x2="{x(i):.1f}" y2="{top + h + 4}" stroke="#555"/>'
                     f'<text x="{x(i):.1f}" y="{top + h + 16}" font-size="10" text-anchor="middle">{i}</text>')
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="loss curve: training loss against step">'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fafafa"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="#555"/>'
        f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#555"/>'
        + "".join(ticks)
        + f'<polyline fill="none" stroke="#2e7d32" stroke-width="1.6" points="{pts}"/>'
        f'<text x="{left + w / 2:.1f}" y="{height - 6}" font-size="11" text-anchor="middle">training step</text>'
        f'<text x="14" y="{top + h / 2:.1f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + h / 2:.1f})">loss</text>'
        "</svg>"
    )


def _wants_html(request: Request) -> bool:
    """A page route (HTML errors) rather than the JSON API or the OpenAPI docs."""
    path = request.url.path
    return not (path.startswith("/api") or path.startswith("/openapi") or path.startswith("/docs")
                or path.startswith("/redoc") or "application/json" in request.headers.get("accept", ""))


def _when(timestamp: int) -> str:
    """A chain timestamp as UTC wall-clock time."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _tokens(amount: int, decimals: int) -> str:
    return f"{amount / 10**decimals:,.2f}"


class Dashboard:
    """What every route shares: the snapshot source, the run records, the templates."""

    def __init__(self, source: SnapshotSource, runs: RunDataStore, templates: Jinja2Templates) -> None:
        self.source = source
        self.runs = runs
        self.templates = templates

    def snap(self) -> MarketSnapshot:
        try:
            return self.source.snapshot()
        except Exception as exc:  # RPC down, node restarting: say so, do not 500
            log.warning("dashboard: cannot read the chain: %s", exc)
            raise SourceUnavailable(str(exc)) from exc

    def detail_of(self, job_id: int) -> JobDetail:
        job = self.snap().job(job_id)
        if job is None:
            raise HTTPException(status_code=404, detail=f"job {job_id} not found")
        extra = self.runs.for_job(job_id)
        return JobDetail(
            job=job,
            energy_wh=job.energy_wh,
            wall_s=job.wall_s,
            losses=extra.losses,
            segment_energy_wh=[mj_to_wh(e) for e in extra.segment_energy_mj],
            evidence=extra.evidence,
        )

    def page(self, request: Request, name: str, page: str, **context: Any) -> HTMLResponse:
        return self.templates.TemplateResponse(request, name, {"page": page, **context})


def api_router(dash: Dashboard) -> APIRouter:
    """The JSON API under ``/api``: a response model for every route."""
    api = APIRouter(prefix="/api", tags=["api"])
    not_found: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}

    @api.get("/health", response_model=Health)
    def api_health() -> Health:
        return Health(ok=True, block=dash.snap().block)

    @api.get("/jobs", response_model=list[JobSummary])
    def api_jobs(
        state: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
    ) -> list[JobSummary]:
        return [JobSummary.of(j) for j in dash.snap().jobs if state is None or j.state == state]

    @api.get("/jobs/{job_id}", response_model=JobDetail, responses=not_found)
    def api_job(job_id: JobId) -> JobDetail:
        return dash.detail_of(job_id)

    @api.get("/pools", response_model=list[ClassPoolView])
    def api_pools() -> list[ClassPoolView]:
        return dash.snap().pools

    @api.get("/providers", response_model=list[ProviderView])
    def api_providers() -> list[ProviderView]:
        return dash.snap().providers

    @api.get("/verifiers", response_model=list[VerifierView])
    def api_verifiers() -> list[VerifierView]:
        return dash.snap().verifiers

    @api.get("/stats", response_model=MarketStats)
    def api_stats() -> MarketStats:
        return dash.snap().stats

    return api


def page_router(dash: Dashboard) -> APIRouter:
    """The HTML pages (left out of the OpenAPI schema)."""
    pages = APIRouter(include_in_schema=False)

    @pages.get("/", response_class=HTMLResponse)
    def page_jobs(request: Request) -> HTMLResponse:
        s = dash.snap()
        by_state = {st: [j for j in s.jobs if j.state == st] for st in JobState if st is not JobState.NONE}
        return dash.page(request, "jobs.html", "jobs", snap=s, by_state=by_state)

    @pages.get("/providers", response_class=HTMLResponse)
    def page_providers(request: Request) -> HTMLResponse:
        return dash.page(request, "providers.html", "providers", snap=dash.snap())

    @pages.get("/verifiers", response_class=HTMLResponse)
    def page_verifiers(request: Request) -> HTMLResponse:
        return dash.page(request, "verifiers.html", "verifiers", snap=dash.snap())

    @pages.get("/jobs/{job_id}", response_class=HTMLResponse)
    def page_job(request: Request, job_id: JobId) -> HTMLResponse:
        d = dash.detail_of(job_id)
        return dash.page(request, "job.html", "jobs", d=d, job=d.job, chart=_svg_polyline(d.losses))

    return pages


def create_app(
    source: SnapshotSource,
    *,
    data_dirs: list[Path] | None = None,
    title: str = "greenproof",
    token_decimals: int = 18,
    token_symbol: str = "tokens",
) -> FastAPI:
    """Build the dashboard app over ``source`` (see module docstring)."""
    app = FastAPI(
        title=f"{title} dashboard",
        version="1",
        description="Jobs, court pools, providers and verifiers of a greenproof deployment.",
    )
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(
        short=_short,
        tokens=lambda a: _tokens(a, token_decimals),
        symbol=token_symbol,
        title=title,
        states=[st for st in JobState if st is not JobState.NONE],
        wh=lambda mj: f"{mj_to_wh(mj):.4f}",
        when=_when,
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not _wants_html(request):
            return await http_exception_handler(request, exc)
        return templates.TemplateResponse(
            request, "error.html", {"page": "", "status": exc.status_code, "message": exc.detail},
            status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> Response:
        if not _wants_html(request):
            return await request_validation_exception_handler(request, exc)
        return templates.TemplateResponse(
            request, "error.html",
            {"page": "", "status": 404, "message": f"no such page: {request.url.path}"}, status_code=404)

    @app.exception_handler(SourceUnavailable)
    async def _unavailable(request: Request, exc: SourceUnavailable) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": f"chain unavailable: {exc}"})

    dash = Dashboard(source, RunDataStore(data_dirs), templates)
    app.include_router(api_router(dash))
    app.include_router(page_router(dash))
    return app
