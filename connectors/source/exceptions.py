"""Errors of the CDC runtime; each names the cause and the fix."""

from __future__ import annotations

from base.errors import ConfigError, LabstreamError, RetryableError


class CdcError(LabstreamError):
    """Root of the CDC runtime's errors."""


class CdcConfigError(ConfigError):
    """A CDC setting or the database's configuration prevents capture."""


class SlotLost(CdcError):
    """The replication slot recorded in the offsets is gone."""

    exit_code = 4


class SourceDisconnected(RetryableError):
    """PostgreSQL or Kafka went away; the connector reconnects from the confirmed LSN."""


class DeliveryFailed(RetryableError):
    """Kafka refused a record; unconfirmed changes are sent again after a restart."""
