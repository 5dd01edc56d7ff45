"""ASGI middleware: one SERVER span per request, continuing the caller's trace.

The incoming context is read with `extract_http_headers` (W3C `traceparent`
first, then the beeline's `X-Honeycomb-Trace`). The span is named after the
route template (`GET /experiments/{experiment_id}`), carries the HTTP semantic
attributes, and the response gets `traceparent` (and `X-Trace-Id`) headers so a
caller can find its trace.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labstream.api.ops_routes import OPS_PATHS
from tracing import beeline
from tracing.metrics import HTTP_REQUESTS
from tracing.propagation import beeline_outbound, extract_http_headers, inject_http_headers
from tracing.semconv import BEELINE_TRACE_ID


class TracingMiddleware:
    def __init__(self, app: ASGIApp, *, tracer: Tracer, templates: Mapping[Any, str]) -> None:
        self.app = app
        self.tracer = tracer
        # endpoint -> route path template, to name spans by route and not by raw path
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPS_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        parent = extract_http_headers(headers)
        method = scope["method"]
        with self.tracer.start_as_current_span(
            method, context=parent, kind=SpanKind.SERVER, record_exception=True
        ) as span:
            if span.is_recording():
                span.set_attribute("http.request.method", method)
                span.set_attribute("url.path", scope["path"])
                span.set_attribute("url.scheme", scope.get("scheme", "http"))
                kept = span.get_span_context().trace_state.get(beeline.TRACESTATE_KEY)
                if kept:
                    span.set_attribute(BEELINE_TRACE_ID, kept)

            status = [500]  # what the client got (500 when the app raised before answering)
            began = time.perf_counter()

            async def send_with_trace(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = int(message["status"])
                    _on_response_start(span, message)
                await send(message)

            try:
                await self.app(scope, receive, send_with_trace)
            finally:
                template = self.templates.get(scope.get("endpoint"))
                if template:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                HTTP_REQUESTS.labels(method, template or "other", str(status[0])).observe(
                    time.perf_counter() - began)


def _on_response_start(span: trace.Span, message: Message) -> None:
    status = int(message["status"])
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
    out: dict[str, str] = {}
    inject_http_headers(out, trace.set_span_in_context(span), with_beeline=beeline_outbound())
    trace_id = span.get_span_context()
    extra = [(key.encode("latin-1"), value.encode("latin-1")) for key, value in out.items()]
    if trace_id.is_valid:
        extra.append((b"x-trace-id", format(trace_id.trace_id, "032x").encode()))
    message["headers"] = list(message.get("headers", [])) + extra
