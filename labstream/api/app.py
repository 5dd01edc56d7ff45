"""The Starlette app: routes, who is calling, input checks, JSON in and out.

Every data route goes through `tenant_scoped`: authenticate the bearer
credential (401), rate-limit it (429), check its role (403), take the tenant
from it (operators name one and are audited), check ids and numbers (400), then
run the handler on a pooled connection. Errors all answer in one shape
(`exceptions.error_body`).
"""

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
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from base.contracts.traceids import is_trace_id
from base.settings import service_settings
from labstream.api import auth, store
from labstream.api.exceptions import (
    ApiError,
    BadInput,
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    error_body,
)
from labstream.api.middleware import LimitsMiddleware, SecurityHeadersMiddleware, TracingMiddleware
from labstream.api.settings import ApiSettings
from tracing import semconv
from tracing.propagation import job_environment, trace_id_hex
from tracing.spanstore import fetch_trace_async
from tracing.waterfall import trace_document

_ID, ID_RULE = auth.ID, auth.ID_RULE
# text fields of an experiment, in characters; protocol in bytes of its JSON
FIELD_LIMITS = {"id": 128, "title": 500, "submitted_by": 200, "protocol": 128 * 1024}


class ExperimentIn(BaseModel):
    """Body of POST /experiments."""

    model_config = {"extra": "forbid"}

    id: str | None = Field(default=None, pattern=_ID.pattern)
    kind: Literal["hplc", "synthesis", "cell-culture", "lc-ms", "plate-read"]
    submitted_by: str = Field(min_length=1, max_length=FIELD_LIMITS["submitted_by"])
    title: str = Field(default="", max_length=FIELD_LIMITS["title"])
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


def error_response(exc: ApiError) -> Response:
    return Response(error_body(exc.status_code, exc.message, exc.hint), exc.status_code,
                    headers=exc.headers, media_type="application/json")


Handler = Callable[[Request, psycopg.AsyncConnection, str], Awaitable[Response]]


def tenant_scoped(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate, rate-limit, check role and input, give the handler a pooled
    connection and the credential's tenant; turn errors into the one error shape."""

    async def endpoint(request: Request) -> Response:
        try:
            pool: AsyncConnectionPool = request.app.state.pool
            try:
                async with pool.connection() as conn:
                    principal = await auth.authenticate(request, conn)
                    auth.check_role(principal, request.method)
                    check_input(request)
                    await check_body(request)
                    tenant_id = await auth.tenant_of(request, conn, principal)
                    request.state.principal = principal
                    semconv.set_lab_attributes(trace.get_current_span(), tenant_id=tenant_id)
                    return await handler(request, conn, tenant_id)
            except psycopg.OperationalError as exc:
                raise Unavailable("the lab database did not answer",
                                  hint="retry in a few seconds") from exc
            except psycopg.errors.UndefinedTable as exc:
                raise Unavailable("the lab database is not migrated",
                                  hint="labstream db migrate") from exc
        except ApiError as exc:
            return error_response(exc)

    endpoint.__name__ = handler.__name__
    return endpoint


async def whoami(request: Request) -> Response:
    """GET /auth/whoami: the credential's role and tenant (the console's sign-in)."""
    try:
        pool: AsyncConnectionPool = request.app.state.pool
        async with pool.connection() as conn:
            principal = await auth.authenticate(request, conn)
        return json_response({"subject": principal.subject, "role": str(principal.role),
                              "tenant_id": principal.tenant_id})
    except ApiError as exc:
        return error_response(exc)


def check_input(request: Request) -> None:
    """Ids by charset, no NUL anywhere, no negative numbers in the query (but the
    `after=-1` start mark): else 400."""
    for name, value in request.path_params.items():
        if not _ID.match(value):
            raise BadInput(f"{name} {value[:64]!r} is not a valid id", hint=ID_RULE)
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise BadInput(f"query parameter {name!r} holds a NUL byte", hint="remove it")
        # after=-1 is the logs' "from the first line" (what the console sends)
        if re.fullmatch(r"\s*-\d+\s*", value) and (name, value.strip()) != ("after", "-1"):
            raise BadInput(f"{name} must not be negative (got {value})",
                           hint=f"{name}=0 or more")


async def check_body(request: Request) -> None:
    """A NUL byte anywhere in a JSON body: 400 naming the field (PostgreSQL text and
    jsonb cannot hold one; unchecked it became a 500)."""
    if request.method in auth.READ_METHODS:
        return
    raw = await request.body()  # kept by Starlette: the handler reads it again
    if b"\\u0000" not in raw and b"\x00" not in raw:
        return
    try:
        field = _nul_field(json.loads(raw), "")
    except (ValueError, UnicodeDecodeError):
        field = None
    if field is not None or b"\x00" in raw:
        raise BadInput(f"{field or 'the body'} holds a NUL byte (\\u0000), which the lab DB "
                       "cannot store", hint="remove it")


def _nul_field(value: Any, path: str) -> str | None:
    """The first field (dotted path) whose key or text holds a NUL byte."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return f"{path}.{key!r}"
        found = _nul_field(item, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


def parse_experiment(raw: bytes) -> ExperimentIn:
    """The body as an experiment: 413 for an oversized field, 400 for a negative
    priority, 422 for anything else the schema refuses."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not JSON: {exc}",
                             hint="send JSON with kind and submitted_by") from exc
    if isinstance(data, dict):  # (NUL bytes were refused by `check_body`)
        for field, limit in FIELD_LIMITS.items():
            value = data.get(field)
            size = len(json.dumps(value).encode()) if field == "protocol" else \
                len(value) if isinstance(value, str) else 0
            if size > limit:
                unit = "bytes of JSON" if field == "protocol" else "characters"
                raise PayloadTooLarge(f"{field} is {size} {unit}; the limit is {limit}",
                                      hint="keep large data out of the experiment row")
        if isinstance(data.get("priority"), int | float) and data["priority"] < 0:
            raise BadInput(f"priority must not be negative (got {data['priority']})",
                           hint="0 to 100")
    try:
        return ExperimentIn.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(
            "invalid experiment: "
            + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
            hint="send JSON with kind and submitted_by",
        ) from exc


async def create_experiment(
    request: Request, conn: psycopg.AsyncConnection, tenant_id: str
) -> Response:
    experiment = parse_experiment(await request.body())
    values = experiment.model_dump()
    values["id"] = values["id"] or store.new_experiment_id()
    server_span = trace.get_current_span()
    trace_id = trace_id_hex()
    if trace_id:  # the first authenticated writer owns the trace; nobody takes it over
        owner = await store.claim_trace(conn, trace_id=trace_id, tenant_id=tenant_id,
                                        claimed_by=request.state.principal.subject)
        if owner != tenant_id:
            raise Conflict("traceparent continues a trace this tenant did not start",
                           hint="send no traceparent (a new trace starts) or one of yours")
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
    if limit < 1:
        raise BadInput("limit must be at least 1", hint="e.g. ?limit=1000")
    if not await store.job_belongs_to(conn, tenant_id=tenant_id, job_id=job_id):
        raise NotFound(f"no job {job_id!r}")
    lines = await store.job_log_lines(conn, job_id=job_id, after_seq=after_seq, limit=limit)
    return json_response({"job_id": job_id, "lines": lines})


async def read_trace(request: Request, conn: psycopg.AsyncConnection, tenant_id: str) -> Response:
    trace_id = request.path_params["trace_id"].lower()
    if not is_trace_id(trace_id):
        raise InvalidRequest(f"{trace_id!r} is not a trace id", hint="32 hex digits")
    if not await store.trace_belongs_to(conn, tenant_id=tenant_id, trace_id=trace_id):
        raise NotFound(f"no trace {trace_id}")
    spans = store.own_spans(await fetch_trace_async(conn, trace_id), tenant_id)
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
    routes.append(Route("/auth/whoami", whoami, methods=["GET"]))
    templates = {route.endpoint: route.path for route in routes if isinstance(route, Route)}
    routes += static_routes()  # the lab console page (labstream/api/console/)
    # the lab-DB schema registry, read-only, Confluent REST shape (`labstream registry serve`)
    from connectors.registry.server import create_registry_app

    routes.append(Mount("/registry", app=create_registry_app(database_url=url, read_only=True)))
    from labstream.api.ops_routes import ops_routes

    routes = [*ops_routes(), *routes]  # /metrics, /healthz, /readyz

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            kwargs={"application_name": "labstream-api"},
            # a connection that died (PostgreSQL restarted) is replaced before use, not
            # handed to a request; while the DB is down, answer 503 after timeout_s
            check=AsyncConnectionPool.check_connection,
            timeout=settings.pool_timeout_s,
            open=False,
        )
        await pool.open()
        app.state.pool = pool
        app.state.tracer = tracer
        app.state.token_verifier = auth.TokenVerifier(settings)
        app.state.rate_limiter = auth.RateLimiter(settings.rate_per_s, settings.rate_burst)
        app.state.failure_limiter = auth.RateLimiter(settings.auth_failures_per_s,
                                                     settings.auth_failure_burst)
        app.state.oidc = oidc_verifier(settings)
        app.state.console_verdicts = VerdictCache(ConsoleSettings())
        try:
            yield
        finally:
            await pool.close()

    return Starlette(
        routes=routes,
        middleware=[
            # outermost first: every answer, even a 413 or a 500, gets the headers
            Middleware(SecurityHeadersMiddleware),
            Middleware(TracingMiddleware, tracer=tracer, templates=templates),
            Middleware(LimitsMiddleware, max_body_bytes=settings.max_body_bytes),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )


def oidc_verifier(settings: ApiSettings) -> Any:
    if not settings.oidc_issuer:
        return None
    from labstream.api.oidc import OidcVerifier

    return OidcVerifier(settings)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 / 405 in the one error shape."""
    assert isinstance(exc, HTTPException)
    hint = "see GET /console/ or docs/console.md for the routes" if exc.status_code == 404 \
        else None
    return Response(error_body(exc.status_code, str(exc.detail), hint), exc.status_code,
                    headers=exc.headers, media_type="application/json")


async def _server_error(request: Request, exc: Exception) -> Response:
    """A bug: the caller gets the trace id to report, never a traceback."""
    trace_id = trace_id_hex()
    return Response(error_body(500, "internal error", f"report trace id {trace_id}"), 500,
                    media_type="application/json")
