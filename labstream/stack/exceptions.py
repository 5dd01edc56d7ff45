"""Errors of the local stack: each names the thing, the port or the tool, and the fix."""

from __future__ import annotations

from base.errors import ConfigError, ServiceUnavailable


class StackError(ServiceUnavailable):
    """PostgreSQL or Kafka did not start or did not become ready."""


class PortTaken(ConfigError):
    """Another process already listens on a port the stack needs."""


class ToolMissing(ConfigError):
    """Java, Maven or the PostgreSQL binaries are not installed or not reachable."""


class ReplicationRefused(ConfigError):
    """The PostgreSQL on the configured port cannot do logical replication."""
