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


class _KafkaCaused(RetryableError):
    """Carries librdkafka's error name, so the classifier can tell a broker restart
    (transient) from an unknown host or a refused credential (permanent)."""

    def __init__(self, message: str, *, retry_after: float = 1.0, hint: str | None = None,
                 kafka_error_name: str | None = None) -> None:
        super().__init__(message, retry_after=retry_after, hint=hint)
        self.kafka_error_name = kafka_error_name


class SourceDisconnected(_KafkaCaused):
    """PostgreSQL or Kafka went away; the connector reconnects from the confirmed LSN."""


class DeliveryFailed(_KafkaCaused):
    """Kafka refused a record; unconfirmed changes are sent again after a restart."""


class ConnectorGaveUp(CdcError):
    """A permanent error outlived its bounded attempts: the connector exits."""

    exit_code = 3


class OversizedRecord(CdcError):
    """A change record does not fit its topic and the mode is `fail`."""

    exit_code = 5
