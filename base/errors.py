"""The root exception and the generic kinds every component raises.

Each error carries a message (what went wrong, naming the field or thing) and a
hint (what to do about it). The CLI prints both on one or two lines and exits
non-zero; only `--debug` shows a traceback. The subclasses tell a runner what
to do: retry later, dead-letter the record, or stop and let a human fix config.
"""

from __future__ import annotations


class LabstreamError(Exception):
    """Root of every error labstream raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (fix: {self.hint})"


class ConfigError(LabstreamError):
    """Settings are missing or wrong; nothing will work until a human fixes them."""

    exit_code = 2


class ServiceUnavailable(LabstreamError):
    """A service (PostgreSQL, Kafka, a registry) did not answer."""

    exit_code = 3


class RetryableError(LabstreamError):
    """A transient failure: the runner should try again after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float = 1.0, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class PoisonRecord(LabstreamError):
    """This record can never be processed: send it to the dead-letter topic and go on."""


class JobLaunchError(LabstreamError):
    """A job backend could not start a job (after its retries)."""
