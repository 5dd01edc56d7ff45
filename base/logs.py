"""Structured logging: one `key=value` line per event, `trace_id` when there is one.

Use `log.info("slot created", extra={"kv": {"slot": name}})` or the helper
`kv(log, "info", "slot created", slot=name)`. The formatter adds the current
OpenTelemetry trace ID when a span is active, so every line written inside a
traced piece of work can be found from the trace.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

_CONFIGURED = False

# Client libraries that log every connection and metadata refresh at INFO.
# Their warnings still show; LABSTREAM_LOG_LEVEL=DEBUG shows everything.
CHATTY_LOGGERS = ("kafka", "aiokafka", "faust", "mode", "urllib3", "kubernetes", "botocore")


def _current_trace_id() -> str | None:
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - opentelemetry is a hard dependency
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x")


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or any(c in text for c in ' ="\n'):
        return json.dumps(text)
    return text


class KeyValueFormatter(logging.Formatter):
    """`ts=... level=info logger=... msg="..." key=value ... trace_id=...`"""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(getattr(record, "kv", {}) or {})
        trace_id = fields.get("trace_id") or _current_trace_id()
        if trace_id:
            fields["trace_id"] = trace_id
        line = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(KeyValueFormatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(getattr(record, "kv", {}) or {})
        trace_id = fields.get("trace_id") or _current_trace_id()
        if trace_id:
            fields["trace_id"] = trace_id
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return json.dumps(fields, default=str)


def configure(level: str | None = None, fmt: str | None = None) -> None:
    """Set up the root logger once: LABSTREAM_LOG_LEVEL, LABSTREAM_LOG_FORMAT=kv|json."""
    global _CONFIGURED
    if _CONFIGURED:
        return
    handler = logging.StreamHandler(sys.stderr)
    chosen = (fmt or os.environ.get("LABSTREAM_LOG_FORMAT", "kv")).lower()
    handler.setFormatter(JsonFormatter() if chosen == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    chosen_level = (level or os.environ.get("LABSTREAM_LOG_LEVEL", "INFO")).upper()
    root.setLevel(chosen_level)
    if chosen_level != "DEBUG":
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    _CONFIGURED = True


def kv(logger: logging.Logger, level: str, msg: str, **fields: Any) -> None:
    """Log `msg` with structured fields."""
    logger.log(logging.getLevelName(level.upper()), msg, extra={"kv": fields})
