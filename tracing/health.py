"""`/healthz` (alive) and `/readyz` (able to do its work) with real checks, plus `/metrics`.

A process registers named checks; each is a callable returning None when fine or a
one-line reason when not (raising counts as failing, with the exception as the
reason). `/healthz` runs the liveness checks (is the process's main loop still
turning?), `/readyz` the readiness checks (database answers, Kafka answers, the slot is
streaming, partitions are assigned). Both answer 200 or 503 with a JSON body naming
every check, so an orchestrator restarts a stuck process and routes nothing to one that
is not ready, and a human sees which check failed.

`serve(port, checks)` starts a small HTTP server on a daemon thread serving `/metrics`
(prometheus-client text format), `/healthz` and `/readyz` for processes without a web
server of their own (the connector, the worker). The API mounts the same handlers.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from base.logs import kv

log = logging.getLogger(__name__)

Check = Callable[[], str | None]
CHECK_TIMEOUT_S = 3.0
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="health-check")


@dataclass
class HealthChecks:
    """The checks of one process: `live` for /healthz, `ready` for /readyz."""

    service: str
    live: dict[str, Check] = field(default_factory=dict)
    ready: dict[str, Check] = field(default_factory=dict)

    def run(self, which: str) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) of /healthz (`which="live"`) or /readyz ("ready")."""
        checks = self.live if which == "live" else self.ready
        results = {name: _run_one(check) for name, check in checks.items()}
        ok = all(reason is None for reason in results.values())
        body = {
            "service": self.service,
            "status": "ok" if ok else "failing",
            "checks": {name: {"ok": reason is None, **({"reason": reason} if reason else {})}
                       for name, reason in results.items()},
        }
        return (200 if ok else 503), body


def _run_one(check: Check) -> str | None:
    # a check that hangs (a database that does not answer) must fail, not hang the probe
    future = _pool.submit(check)
    try:
        return future.result(timeout=CHECK_TIMEOUT_S)
    except FutureTimeout:
        return f"no answer within {CHECK_TIMEOUT_S:.0f} s"
    except Exception as exc:
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def metrics_payload() -> tuple[bytes, str]:
    """The process's metrics in the Prometheus text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _handler(checks: HealthChecks) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, content_type = metrics_payload()
                self._reply(200, body, content_type)
            elif path in ("/healthz", "/readyz"):
                status, document = checks.run("live" if path == "/healthz" else "ready")
                self._reply(status, json.dumps(document).encode(), "application/json")
            else:
                self._reply(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every few seconds would drown the process's own log

    return Handler


def serve(port: int, checks: HealthChecks, host: str = "0.0.0.0") -> ThreadingHTTPServer | None:
    """Serve /metrics, /healthz, /readyz on `port` (0: an OS-chosen port) in a daemon thread.

    Never stops the process it observes: a port in use is logged and None returned.
    """
    try:
        server = ThreadingHTTPServer((host, port), _handler(checks))
    except OSError as exc:
        kv(log, "warning", "metrics endpoint not started", port=port, error=str(exc),
           hint="set LABSTREAM_METRICS_PORT to a free port")
        return None
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    kv(log, "info", "metrics and health endpoints", service=checks.service,
       url=f"http://{host}:{server.server_address[1]}/metrics")
    return server
