"""Job runner settings (LABSTREAM_JOBS_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class JobSettings(BaseSettings):
    """How the job runner launches, retries, and records jobs (LABSTREAM_JOBS_*)."""

    model_config = SettingsConfigDict(env_prefix="LABSTREAM_JOBS_", frozen=True, extra="ignore")

    launch_attempts: int = Field(
        default=3, ge=1, description="Tries to start a job before it is launch_failed."
    )
    launch_backoff_s: float = Field(
        default=0.5, gt=0, description="Wait before the 2nd try; doubles for each later one."
    )
    launch_backoff_max_s: float = Field(
        default=30.0, gt=0, description="Longest wait between tries."
    )
    kill_grace_s: float = Field(
        default=5.0, ge=0, description="SIGTERM to SIGKILL delay when a job is killed."
    )
    slot_poll_s: float = Field(
        default=0.5, gt=0, description="How often `JobRunner.wait` re-reads a job's row."
    )
    lease_s: float = Field(
        default=30.0, gt=0,
        description="A leased job whose runner did not renew it for this long is taken over.",
    )
    heartbeat_s: float = Field(
        default=5.0, gt=0,
        description="How often a runner renews its leases and looks for jobs to take over.",
    )
    max_running: int = Field(
        default=32, ge=1, description="Jobs one runner leases at a time (all tenants)."
    )
    stop_grace_s: float = Field(
        default=30.0, ge=0,
        description="On SIGTERM, how long running jobs may finish before they are killed "
        "and handed back to the queue as their next attempt.",
    )
    retry_max_s: float = Field(
        default=5.0, gt=0, description="Longest wait between retries of a status write."
    )
    log_batch_lines: int = Field(default=200, ge=1, description="Log lines per INSERT batch.")
    log_flush_s: float = Field(
        default=0.25, gt=0, description="Longest a log line waits before it is written."
    )
    log_line_max_chars: int = Field(
        default=16_384, ge=80, description="Longer lines are cut (and marked) before storing."
    )
    db_pool_size: int = Field(
        default=8, ge=1, description="Pooled lab DB connections for job status and log writes."
    )
    application_name: str = Field(
        default="labstream-jobs",
        description="application_name of the runner's DB connections (see pg_stat_activity).",
    )
    workdir_root: Path | None = Field(
        default=None, description="Parent of the per-job temp dirs (default: the system temp dir)."
    )
    database_url_backends: str = Field(
        default="local",
        description=(
            "Comma-separated backends whose jobs get LABSTREAM_DATABASE_URL (the worker's lab DB) "
            "to read lab data and export spans; empty: none. Local jobs run as the worker's user "
            "on its machine; containers elsewhere get the password only if listed here."
        ),
    )

    def passes_database_url(self, backend: str) -> bool:
        names = {name.strip() for name in self.database_url_backends.split(",")}
        return backend in names
