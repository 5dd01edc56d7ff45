"""`/metrics`, `/healthz`, `/readyz` of the lab API (no tenant header, no span).

`/healthz`: the event loop answered this request. `/readyz`: a pooled connection runs
`SELECT 1` within 2 s (the API can do nothing without its database). `/metrics`: the
process's Prometheus metrics (request durations by route and status, spans dropped, the
client's process metrics).
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tracing.health import metrics_payload

OPS_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})  # not traced: scrapes every 15 s
READY_TIMEOUT_S = 2.0


async def metrics(_request: Request) -> Response:
    body, content_type = metrics_payload()
    return Response(body, media_type=content_type)


async def healthz(_request: Request) -> Response:
    return JSONResponse({"service": "labstream-api", "status": "ok",
                         "checks": {"event_loop": {"ok": True}}})


async def readyz(request: Request) -> Response:
    pool: AsyncConnectionPool | None = getattr(request.app.state, "pool", None)
    reason = None
    try:
        if pool is None:
            raise RuntimeError("the connection pool is not open")
        async with pool.connection(timeout=READY_TIMEOUT_S) as conn:
            await conn.execute("SELECT 1")
    except Exception as exc:  # any failure is "not ready", with its first line as the reason
        text = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    check = {"ok": reason is None, **({"reason": reason} if reason else {})}
    return JSONResponse({"service": "labstream-api", "status": "ok" if reason is None
                         else "failing", "checks": {"database": check}},
                        status_code=200 if reason is None else 503)


def ops_routes() -> list[Route]:
    return [Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz)]
