"""Errors of the lab database area."""

from __future__ import annotations

from base.errors import ConfigError, LabstreamError


class DatabaseError(LabstreamError):
    """Root of the database area's errors."""


class MigrationError(DatabaseError):
    """A migration file could not be applied."""


class MigrationFileError(ConfigError):
    """The migrations folder holds a file that breaks the rules (name, duplicate version)."""


class ChecksumMismatch(ConfigError):
    """An already-applied migration file was edited after it ran."""
