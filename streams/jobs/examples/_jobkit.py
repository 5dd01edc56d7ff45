"""What every example job does first and last: logging, trace context, tracing, DB URL."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from base.errors import ConfigError
from tracing.propagation import configure_job_logging

log = logging.getLogger("labstream.job")


def database_url() -> str:
    url = os.environ.get("LABSTREAM_DATABASE_URL")
    if not url:
        raise ConfigError(
            "this job needs LABSTREAM_DATABASE_URL to read the lab database",
            hint="set it in the trigger rule's env, or list the rule's backend in the "
            "worker's LABSTREAM_JOBS_DATABASE_URL_BACKENDS",
        )
    return url


def tracing_wanted() -> bool:
    """Export spans only when the launcher configured it (the runner passes these through)."""
    if os.environ.get("LABSTREAM_TRACING_ENABLED", "").lower() == "false":
        return False
    return bool(
        os.environ.get("LABSTREAM_TRACING_EXPORTERS") or os.environ.get("LABSTREAM_DATABASE_URL")
    )


@contextmanager
def job_session(service_name: str = "labstream-job") -> Iterator[str | None]:
    """Logging with the launcher's trace id, spans exported if configured, flushed at exit.

    Yields the trace id handed over in TRACEPARENT (None without one).
    """
    trace_id = configure_job_logging()  # attaches the TRACEPARENT context for this process
    configured = False
    if tracing_wanted():
        from tracing.setup import configure_tracing

        configure_tracing(service_name)
        configured = True
    try:
        yield trace_id
    finally:
        if configured:
            from tracing.setup import shutdown_tracing

            shutdown_tracing()
