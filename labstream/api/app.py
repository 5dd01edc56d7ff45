"""The Starlette app: routes, tenant check, JSON in and out."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import psycopg
from opentelemetry import trace
from opentelemetry.trace import TracerProvider
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from base.settings import service_settings
from labstream.api import store
from labstream.api.exceptions import (
    ApiError,
    Conflict,
    InvalidRequest,
    MissingTenant,
    NotFound,
    UnknownTenant,
)
from labstream.api.middleware import TracingMiddleware
from labstream.api.settings import ApiSettings
from tracing import semconv
from tracing.propagation import job_environment, trace_id_hex
from tracing.spanstore import fetch_trace_async
from tracing.waterfall import trace_document

TENANT_HEADER = "x-lab-tenant"
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class ExperimentIn(BaseModel):
    """Body of POST /experiments."""

    model_config = {"extra": "forbid"}

    id: str | None = Field(default=None, min_length=1, max_length=100)
    kind: Literal["hplc", "synthesis", "cell-culture", "lc-ms", "plate-read"]
    submitted_by: str = Field(min_length=1)
    title: str = ""
    protocol: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=5, ge=0, le=100)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def json_response(body: Any, status_code: int = 200) -> Response:
    return Response(json.dumps(body, default=_default), status_code, media_type="application/json")


Handler = Callable[[Request, psycopg.AsyncConnection, str], Awaitable[Response]]


def tenant_scoped(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Check `X-Lab-Tenant`, give the handler a pooled connection, turn errors into JSON."""

    async def endpoint(request: Request) -> Response:
        try:
            tenant_id = request.headers.get(TENANT_HEADER, "").strip()
            if not tenant_id:
                raise MissingTenant(
                    "the X-Lab-Tenant header is required", hint="send X-Lab-Tenant: <tenant id>"
                )
            semconv.set_lab_attributes(trace.get_current_span(), tenant_id=tenant_id)
            pool: AsyncConnectionPool = request.app.state.pool
            async with pool.connection() as conn:
                if not await store.tenant_exists(conn, tenant_id):
                    raise UnknownTenant(f"unknown tenant {tenant_id!r}")
                return await handler(request, conn, tenant_id)
        except ApiError as exc:
            return json_response({"error": exc.message, "hint": exc.hint}, exc.status_code)

    endpoint.__name__ = handler.__name__
    return endpoint


async def create_experiment(
    request: Request, conn: psycopg.AsyncConnection, tenant_id: str
) -> Response:
    try:
        experiment = ExperimentIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidRequest(
            "invalid experiment: "
            + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
            hint="send JSON with kind and submitted_by",
        ) from exc
    values = experiment.model_dump()
    values["id"] = values["id"] or store.new_experiment_id()
    server_span = trace.get_current_span()
    semconv.set_lab_attributes(server_span, experiment_id=values["id"])
    tracer = request.app.state.tracer
    with tracer.start_as_current_span("insert experiment") as span:
        semconv.set_lab_attributes(span, tenant_id=tenant_id, experiment_id=values["id"])
        try:
            row, emitted = await store.insert_experiment(
                conn, tenant_id=tenant_id, experiment=values
            )
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict(f"experiment {values['id']!r} already exists") from exc
        traceparent = job_environment().get("TRACEPARENT") if emitted else None
    return json_response(
        {**row, "trace_id": trace_id_hex(), "traceparent": traceparent}, status_code=201
    )


async def read_experiment(
    request: Request, conn: psycopg.AsyncConnection, tenant_id: str
) -> Response:
    experiment_id = request.path_params["experiment_id"]
    row = await store.get_experiment(conn, tenant_id=tenant_id, experiment_id=experiment_id)
    if row is None:
        raise NotFound(f"no experiment {experiment_id!r}")
    return json_response(row)


async def list_experiment_jobs(
    request: Request, conn: psycopg.AsyncConnection, tenant_id: str
) -> Response:
    experiment_id = request.path_params["experiment_id"]
    if await store.get_experiment(conn, tenant_id=tenant_id, experiment_id=experiment_id) is None:
        raise NotFound(f"no experiment {experiment_id!r}")
    jobs = await store.experiment_jobs(conn, experiment_id=experiment_id)
    return json_response({"experiment_id": experiment_id, "jobs": jobs})


async def read_job_logs(
    request: Request, conn: psycopg.AsyncConnection, tenant_id: str
) -> Response:
    job_id = request.path_params["job_id"]
    try:
        after_seq = int(request.query_params.get("after", "-1"))
        limit = min(int(request.query_params.get("limit", "1000")), 10_000)
    except ValueError as exc:
        raise InvalidRequest("after and limit must be integers") from exc
    if not await store.job_belongs_to(conn, tenant_id=tenant_id, job_id=job_id):
        raise NotFound(f"no job {job_id!r}")
    lines = await store.job_log_lines(conn, job_id=job_id, after_seq=after_seq, limit=limit)
    return json_response({"job_id": job_id, "lines": lines})


async def read_trace(request: Request, conn: psycopg.AsyncConnection, tenant_id: str) -> Response:
    trace_id = request.path_params["trace_id"].lower()
    if not _TRACE_ID.match(trace_id):
        raise InvalidRequest(f"{trace_id!r} is not a trace id", hint="32 hex digits")
    if not await store.trace_belongs_to(conn, tenant_id=tenant_id, trace_id=trace_id):
        raise NotFound(f"no trace {trace_id}")
    spans = await fetch_trace_async(conn, trace_id)
    from labstream.api.console_store import linking_spans  # replays linking into the trace

    linking = await linking_spans(conn, tenant_id=tenant_id, trace_id=trace_id)
    return json_response(trace_document(trace_id, spans, linking))


ROUTES = [
    ("/experiments", create_experiment, ["POST"]),
    ("/experiments/{experiment_id}", read_experiment, ["GET"]),
    ("/experiments/{experiment_id}/jobs", list_experiment_jobs, ["GET"]),
    ("/jobs/{job_id}/logs", read_job_logs, ["GET"]),
    ("/traces/{trace_id}", read_trace, ["GET"]),
]


def create_app(
    *,
    database_url: str | None = None,
    tracer_provider: TracerProvider | None = None,
    settings: ApiSettings | None = None,
) -> Starlette:
    """The API app; `tracer_provider` defaults to the global one (`configure_tracing`)."""
    settings = settings or ApiSettings()
    url = database_url or service_settings().database_url
    tracer = trace.get_tracer("labstream.api", tracer_provider=tracer_provider)
    from labstream.api.console_routes import (
        ConsoleSettings,
        VerdictCache,
        console_routes,
        static_routes,
    )

    routes: list[Route | Mount] = [
        Route(path, tenant_scoped(fn), methods=methods)
        for path, fn, methods in [*ROUTES, *console_routes()]
    ]
    templates = {route.endpoint: route.path for route in routes if isinstance(route, Route)}
    routes += static_routes()  # the lab console page (labstream/api/console/)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            kwargs={"application_name": "labstream-api"},
            open=False,
        )
        await pool.open()
        app.state.pool = pool
        app.state.tracer = tracer
        app.state.console_verdicts = VerdictCache(ConsoleSettings())
        try:
            yield
        finally:
            await pool.close()

    return Starlette(
        routes=routes,
        middleware=[Middleware(TracingMiddleware, tracer=tracer, templates=templates)],
        lifespan=lifespan,
    )
