"""Errors raised by the replay package: each names the option or thing and the fix."""

from __future__ import annotations

from base.errors import ConfigError, LabstreamError


class ReplayError(LabstreamError):
    """Root of the replay package's errors."""


class SelectionError(ConfigError, ReplayError):
    """A selection option is wrong (time, topic, range, filter): fix the command line."""


class FilterSyntaxError(SelectionError):
    """`--filter` does not parse; the message says where and what was expected."""


class EmptySelection(ReplayError):
    """The selection matched nothing (e.g. the time window is outside the topic's data)."""


class ReplayNotFound(ReplayError):
    """No replay with that id is recorded in `labstream.replays`."""


class ReplayStateError(ReplayError):
    """The replay cannot be resumed in its current state (finished, dry run, ...)."""
