"""Errors raised by the tracing package."""

from __future__ import annotations

from base.errors import ConfigError, LabstreamError


class TracingError(LabstreamError):
    """Root of the tracing package's errors."""


class TracingConfigError(ConfigError, TracingError):
    """Tracing settings are wrong (unknown exporter, missing Honeycomb key, bad region)."""


class TraceNotFound(TracingError):
    """No span of the asked trace is in the span store."""
