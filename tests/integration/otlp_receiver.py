"""A real OTLP/HTTP trace receiver on 127.0.0.1 for tests (reusable by every area).

    from otlp_receiver import OtlpReceiver

    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.traces_url)
        ... emit and flush spans ...
        spans = receiver.wait_for_spans(3)
        assert spans[0].trace_id == ...

It accepts `POST /v1/traces` (protobuf, optionally gzip), parses the body with
`opentelemetry.proto`, and keeps every request's headers and spans. Stopped
(and its port closed) when the `with` block ends.
"""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

TRACES_PATH = "/v1/traces"


def _any_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_any_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which) if which else None


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str  # SPAN_KIND_PRODUCER, ...
    service_name: str | None
    attributes: dict[str, Any]
    links: list[tuple[str, str]]  # (trace_id, span_id)
    status_code: str
    resource: dict[str, Any] = field(default_factory=dict)


def parse_request(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _any_value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        kind=ProtoSpan.SpanKind.Name(span.kind),
                        service_name=resource.get("service.name"),
                        attributes={a.key: _any_value(a.value) for a in span.attributes},
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                        status_code=span.status.StatusCode.Name(span.status.code),
                        resource=resource,
                    )
                )
    return spans


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]  # lower-case names
    spans: list[ReceivedSpan]


class OtlpReceiver:
    """An OTLP/HTTP receiver on an ephemeral 127.0.0.1 port."""

    def __init__(self, *, status: int = 200) -> None:
        self._status = status
        self._requests: list[ReceivedRequest] = []
        self._lock = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """Base URL, as OTEL_EXPORTER_OTLP_ENDPOINT wants it (the SDK adds /v1/traces)."""
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    @property
    def traces_url(self) -> str:
        return self.endpoint + TRACES_PATH

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def spans(self) -> list[ReceivedSpan]:
        return [span for request in self.requests for span in request.spans]

    def wait_for_spans(self, count: int, timeout_s: float = 10.0) -> list[ReceivedSpan]:
        """At least `count` spans, waiting up to `timeout_s`; AssertionError otherwise."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while sum(len(r.spans) for r in self._requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = sum(len(r.spans) for r in self._requests)
                    raise AssertionError(f"OTLP receiver got {got} spans, expected {count}")
                self._lock.wait(remaining)
        return self.spans()

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                if self.path != TRACES_PATH:
                    self.send_error(404)
                    return
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver._record(ReceivedRequest(self.path, headers, parse_request(body)))
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(receiver._status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler
