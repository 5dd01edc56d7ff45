"""Errors raised by the job launchers and the job runner."""

from __future__ import annotations

from base.errors import ConfigError, JobLaunchError, LabstreamError


class JobsError(LabstreamError):
    """Root of the jobs package's errors."""


class JobsConfigError(ConfigError, JobsError):
    """A backend is unknown, its client package is missing, or its settings are wrong."""


class JobStartError(JobLaunchError, JobsError):
    """A backend could not start a job; the runner retries it with backoff.

    Raised by `JobLauncher.start` for failures that may pass (the container
    runtime is busy, the API server refused, the executable was not found on a
    node). After the runner's last attempt the job's status is `launch_failed`.
    """


class InvalidJobRequest(JobsError):
    """A `JobRequest` is malformed (empty command, unknown backend, timeout <= 0)."""
