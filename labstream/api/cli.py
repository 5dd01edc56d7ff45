"""`labstream api`: serve the lab API with uvicorn."""

from __future__ import annotations

import click

from labstream.api.settings import ApiSettings


@click.command("api")
@click.option("--host", default=None, help="Listen address (LABSTREAM_API_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (LABSTREAM_API_PORT, 8080).")
def api(host: str | None, port: int | None) -> None:
    """Serve the lab API: POST /experiments, GET experiments, jobs, job logs and traces.

    Every data request needs Authorization: Bearer <token> (labstream tokens
    create); the tenant comes from the token. Traces continue from traceparent or
    X-Honeycomb-Trace; spans go where LABSTREAM_TRACING_EXPORTERS says.
    """
    import uvicorn

    from labstream.api.app import create_app
    from tracing.setup import configure_tracing, shutdown_tracing

    settings = ApiSettings()
    configure_tracing("labstream-api")
    try:
        uvicorn.run(
            create_app(settings=settings),
            host=host or settings.host,
            port=port if port is not None else settings.port,
            log_config=None,  # keep labstream's key=value logging
            server_header=False,  # no "server: uvicorn": nothing to fingerprint
        )
    finally:
        shutdown_tracing()
