"""Errors of the stream worker; each says what the runner does with the record."""

from __future__ import annotations

from base.errors import ConfigError, LabstreamError, PoisonRecord


class StreamsError(LabstreamError):
    """Root of the stream worker's own errors."""


class UndecodableRecord(PoisonRecord, StreamsError):
    """The record's key or value cannot be decoded: it goes to the dead-letter topic."""


class UnprocessableRecord(PoisonRecord, StreamsError):
    """The record decoded but enrich/route/trigger cannot handle it: dead-letter topic."""


class WorkerConfigError(ConfigError, StreamsError):
    """The worker's settings are wrong (topics, partitions, app id)."""


class TopicSetupError(StreamsError):
    """The worker's topics could not be created or checked before start."""
