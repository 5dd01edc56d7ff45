"""The lab console: its page (static files) and the read endpoints it needs.

    GET  /                          -> redirect to /console/
    GET  /console/                  -> the page (index.html, ES modules, CSS)
    GET  /experiments?q=&status=&kind=&submitted_by=&rule=&job_status=&since=&until=
         &limit=&before=            -> {"experiments": [... with "trace_id", "jobs"], "next_before"}
    GET  /experiments/{id}/overview -> the experiment, its runs, all its jobs, every trace
    GET  /experiments/{id}/explain  -> the `labstream explain` verdict of the experiment
    GET  /jobs?...same filters...   -> {"jobs": [...], "next_before"}
    GET  /jobs/{id}                 -> the job, "finished", "source", "replay" commands
    GET  /traces/{id}/related       -> its jobs, experiments, replays and sibling traces
    POST /jobs/{id}/replay/dry-run  -> then vs now for the job's record (console_replay.py)
    POST /jobs/{id}/replay/execute  -> re-drive it, with the consent recorded first
    GET  /traces/{id}/explain       -> {"headline", "explanation"} (`labstream explain --json`)
    POST /traces/{id}/spans         -> store the page's own span (the trace's front-end root)

Every endpoint but the static files needs a bearer credential (see `app.tenant_scoped`).
A trace is readable here only when every tenant it names is the caller's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from base.contracts.traceids import is_trace_id
from base.errors import LabstreamError
from base.logs import kv
from labstream.api import console_store, store
from labstream.api.app import Handler, json_response
from labstream.api.console_model import (
    EXPERIMENT_STATUSES,
    JOB_STATUSES,
    BrowserSpanIn,
    ListQuery,
    QueryError,
    headline,
    job_document,
    page,
    parse_list_query,
)
from labstream.api.console_replay import replay_routes
from labstream.api.exceptions import InvalidRequest, NotFound

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
log = logging.getLogger(__name__)


class ConsoleSettings(BaseSettings):
    """LABSTREAM_CONSOLE_*: how hard the trace view's verdict may look."""

    model_config = SettingsConfigDict(env_prefix="LABSTREAM_CONSOLE_", frozen=True,
                                      extra="ignore")

    explain_budget_s: float = Field(default=5.0, gt=0, description=(
        "Seconds each Kafka topic scan of the verdict may take (labstream explain --budget)."))
    explain_cache_s: float = Field(default=5.0, ge=0, description=(
        "Reuse a trace's verdict for this long (the page refreshes it while the trace grows)."))
    explain_concurrency: int = Field(default=2, ge=1, description=(
        "Verdicts worked out at once (each scans Kafka in a thread)."))


def _list_query(request: Request, statuses: tuple[str, ...]) -> ListQuery:
    try:
        return parse_list_query(request.query_params, statuses=statuses)
    except QueryError as exc:
        raise InvalidRequest(str(exc), hint=exc.hint) from exc


async def list_experiments(request: Request, conn: psycopg.AsyncConnection,
                           tenant_id: str) -> Response:
    query = _list_query(request, EXPERIMENT_STATUSES)
    rows = await console_store.search_experiments(conn, tenant_id=tenant_id, query=query)
    experiments, next_before = page(rows, query.limit)
    return json_response({"tenant_id": tenant_id, "experiments": experiments,
                          "next_before": next_before})


async def list_jobs(request: Request, conn: psycopg.AsyncConnection, tenant_id: str) -> Response:
    query = _list_query(request, JOB_STATUSES)
    rows = await console_store.search_jobs(conn, tenant_id=tenant_id, query=query)
    jobs, next_before = page(rows, query.limit)
    return json_response({"tenant_id": tenant_id, "jobs": jobs, "next_before": next_before})


async def read_experiment_overview(request: Request, conn: psycopg.AsyncConnection,
                                   tenant_id: str) -> Response:
    experiment_id = request.path_params["experiment_id"]
    overview = await console_store.experiment_overview(conn, tenant_id=tenant_id,
                                                       experiment_id=experiment_id)
    if overview is None:
        raise NotFound(f"no experiment {experiment_id!r}")
    overview["jobs"] = [job_document(job) for job in overview["jobs"]]
    return json_response(overview)


async def explain_experiment(request: Request, conn: psycopg.AsyncConnection,
                             tenant_id: str) -> Response:
    experiment_id = request.path_params["experiment_id"]
    if await store.get_experiment(conn, tenant_id=tenant_id,
                                  experiment_id=experiment_id) is None:
        raise NotFound(f"no experiment {experiment_id!r}")
    verdicts: VerdictCache = request.app.state.console_verdicts
    document = await verdicts.get(experiment_id)
    return json_response({"experiment_id": experiment_id, "headline": headline(document),
                          "explanation": document})


async def read_related(request: Request, conn: psycopg.AsyncConnection,
                       tenant_id: str) -> Response:
    trace_id = await _own_trace(request, conn, tenant_id)
    return json_response(await console_store.related_traces(conn, tenant_id=tenant_id,
                                                            trace_id=trace_id))


async def read_job(request: Request, conn: psycopg.AsyncConnection, tenant_id: str) -> Response:
    job_id = request.path_params["job_id"]
    job = await console_store.get_job(conn, tenant_id=tenant_id, job_id=job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return json_response(job_document(job))


async def _own_trace(request: Request, conn: psycopg.AsyncConnection, tenant_id: str) -> str:
    trace_id = request.path_params["trace_id"].lower()
    if not is_trace_id(trace_id):
        raise InvalidRequest(f"{trace_id!r} is not a trace id", hint="32 hex digits")
    if not await store.trace_belongs_to(conn, tenant_id=tenant_id, trace_id=trace_id):
        raise NotFound(f"no trace {trace_id}", hint="spans reach the store a few seconds late")
    return trace_id


async def explain_trace(request: Request, conn: psycopg.AsyncConnection,
                        tenant_id: str) -> Response:
    trace_id = await _own_trace(request, conn, tenant_id)
    verdicts: VerdictCache = request.app.state.console_verdicts
    document = await verdicts.get(trace_id)
    if document.get("experiment_tenant") not in (None, tenant_id):
        raise NotFound(f"no trace {trace_id}")
    return json_response({"trace_id": trace_id, "headline": headline(document),
                          "explanation": document})


async def record_browser_span(request: Request, conn: psycopg.AsyncConnection,
                              tenant_id: str) -> Response:
    trace_id = await _own_trace(request, conn, tenant_id)
    try:
        span = BrowserSpanIn.model_validate_json(await request.body())
        row = span.row(trace_id, tenant_id)
    except (ValidationError, ValueError) as exc:
        raise InvalidRequest(f"invalid span: {exc}", hint="send the page's span as JSON") from exc
    if await store.get_experiment(conn, tenant_id=tenant_id,
                                  experiment_id=span.experiment_id) is None:
        raise NotFound(f"no experiment {span.experiment_id!r}")
    stored = await console_store.insert_browser_span(conn, row)
    return json_response({"trace_id": trace_id, "span_id": span.span_id, "stored": stored},
                         status_code=201 if stored else 200)


class VerdictCache:
    """`labstream explain` documents per trace, worked out in threads, kept a few seconds."""

    def __init__(self, settings: ConsoleSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._documents: dict[str, tuple[float, dict[str, Any]]] = {}
        self._running = asyncio.Semaphore(settings.explain_concurrency)

    async def get(self, trace_id: str) -> dict[str, Any]:
        cached = self._documents.get(trace_id)
        if cached and self._clock() - cached[0] < self._settings.explain_cache_s:
            return cached[1]
        async with self._running:
            document = await run_in_threadpool(explain_document, trace_id,
                                               self._settings.explain_budget_s)
        self._documents = {k: v for k, v in self._documents.items()
                           if self._clock() - v[0] < self._settings.explain_cache_s}
        self._documents[trace_id] = (self._clock(), document)
        return document


def explain_document(trace_id: str, budget_s: float) -> dict[str, Any]:
    """`labstream explain <trace_id> --json`, with the experiment's tenant (blocking)."""
    from explain.facts import ExplainNotFound, Sources, gather_facts
    from explain.render import explanation_document
    from explain.verdict import explain

    try:
        facts = gather_facts(trace_id, Sources.from_settings(budget_s=budget_s))
    except ExplainNotFound as exc:
        raise NotFound(exc.message, hint=exc.hint) from exc
    except LabstreamError as exc:  # Kafka or the DB could not be read: say so, do not fail
        return _no_verdict(exc.message)
    except Exception as exc:  # the page shows "no verdict" rather than an HTTP 500
        kv(log, "warning", "console verdict failed", trace_id=trace_id, error=repr(exc))
        return _no_verdict(f"the verdict could not be worked out: {type(exc).__name__}: {exc}")
    document = explanation_document(explain(facts), facts)
    document["experiment_tenant"] = facts.experiment.tenant_id if facts.experiment else None
    return document


def _no_verdict(note: str) -> dict[str, Any]:
    return {"first_problem": "unknown", "answers": [], "notes": [note], "experiment_tenant": None}


def console_routes() -> list[tuple[str, Handler, list[str]]]:
    """(path, tenant-scoped handler, methods), added to the API's routes."""
    return [
        ("/experiments", list_experiments, ["GET"]),
        ("/experiments/{experiment_id}/overview", read_experiment_overview, ["GET"]),
        ("/experiments/{experiment_id}/explain", explain_experiment, ["GET"]),
        ("/jobs", list_jobs, ["GET"]),
        ("/jobs/{job_id}", read_job, ["GET"]),
        ("/traces/{trace_id}/explain", explain_trace, ["GET"]),
        ("/traces/{trace_id}/related", read_related, ["GET"]),
        *replay_routes(),
        ("/traces/{trace_id}/spans", record_browser_span, ["POST"]),
    ]


def static_routes() -> list[Route | Mount]:
    """The page itself: no data in it, so no tenant header needed to load it."""

    async def to_console(request: Request) -> Response:
        return RedirectResponse("/console/", status_code=307)

    return [
        Route("/", to_console, methods=["GET"]),
        Mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True), name="console"),
    ]
