"""ASGI middleware: tracing, security headers, request limits.

`TracingMiddleware`: one SERVER span per request, continuing the caller's trace.

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

from labstream.api.exceptions import PayloadTooLarge, error_body
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


# the console is same-origin static ES modules and CSS: nothing inline, no framing
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_STATIC_PREFIX = "/console/"


class SecurityHeadersMiddleware:
    """CSP, nosniff, no framing, no referrer on every answer; no-store on data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        data = not scope["path"].startswith(_STATIC_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                if data:  # tenant data must not linger in browser or proxy caches
                    extra.append((b"cache-control", b"no-store"))
                kept = [(k, v) for k, v in message.get("headers", [])
                        if k.lower() not in {name for name, _ in extra}]
                message["headers"] = kept + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


class LimitsMiddleware:
    """Refuse a body over `max_body_bytes` (413, before reading it when Content-Length
    says so, else as soon as the count passes it) and a NUL byte in the path (400)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            await _answer(send, 400, "the URL holds a NUL byte", "remove it")
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _answer(send, 400, "Content-Length is not a number", None)
                return
            if int(declared) > self.max_body_bytes:
                await _answer(send, 413, self._too_large(int(declared)), _BODY_HINT)
                return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise PayloadTooLarge(self._too_large(received), hint=_BODY_HINT)
            return message

        await self.app(scope, counted_receive, send)

    def _too_large(self, size: int) -> str:
        return f"the body is {size} bytes or more; the limit is {self.max_body_bytes} bytes"


_BODY_HINT = "keep large data out of the experiment (LABSTREAM_API_MAX_BODY_BYTES)"


async def _answer(send: Send, status: int, message: str, hint: str | None) -> None:
    body = error_body(status, message, hint)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
