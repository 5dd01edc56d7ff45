"""What the trigger asks for (`JobRequest`), a job's status, and how it ended."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from base.contracts.traceids import trace_id_of_traceparent
from streams.jobs.exceptions import InvalidJobRequest

BACKEND_NAMES = ("local", "docker", "kubernetes", "ecs")


class JobStatus(StrEnum):
    """The `jobs.status` column. queued -> started -> one of the four terminal states."""

    QUEUED = "queued"  # row written, waiting for a concurrency slot
    STARTED = "started"  # holds a slot; the backend was asked to start it
    SUCCEEDED = "succeeded"  # exit code 0
    FAILED = "failed"  # non-zero exit code, or the worker running it was lost
    TIMED_OUT = "timed_out"  # ran longer than timeout_s and was killed
    LAUNCH_FAILED = "launch_failed"  # the backend could not start it after every retry

    @property
    def is_terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.STARTED)

    @property
    def may_run_again(self) -> bool:
        """A new submit of the same job_key starts a new attempt (succeeded: only if asked)."""
        return self in (JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.LAUNCH_FAILED)


@dataclass(frozen=True)
class JobRequest:
    """One job the trigger wants run, with where it came from and its trace context.

    `job_key` is the idempotency key (rule + triggering event identity): however
    often the same key is submitted, at most one run is queued or running, and a
    succeeded one runs again only with `rerun_succeeded=True`.
    """

    job_key: str
    rule_id: str
    tenant_id: str
    experiment_id: str | None
    backend: str
    image: str | None
    command: tuple[str, ...]
    env: Mapping[str, str]
    timeout_s: float
    max_concurrency: int
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    traceparent: str | None
    tracestate: str | None
    rerun_succeeded: bool = False
    event_kind: str | None = None  # routed kind that fired, e.g. 'hplc.completed'

    def __post_init__(self) -> None:
        object.__setattr__(self, "command", tuple(str(part) for part in self.command))
        # a read-only copy: a frozen request cannot change under a running job
        env = MappingProxyType({str(k): str(v) for k, v in dict(self.env).items()})
        object.__setattr__(self, "env", env)
        problems = self._problems()
        if problems:
            raise InvalidJobRequest(
                f"job request {self.job_key!r} is invalid: {'; '.join(problems)}",
                hint="fix the trigger rule (command, backend, timeout_s, max_concurrency)",
            )

    def _problems(self) -> list[str]:
        problems = []
        if not self.job_key:
            problems.append("job_key is empty")
        if not self.command or not self.command[0]:
            problems.append("command is empty")
        if self.backend not in BACKEND_NAMES:
            problems.append(f"backend {self.backend!r} is not one of {', '.join(BACKEND_NAMES)}")
        if self.backend != "local" and not self.image:
            problems.append(f"backend {self.backend!r} needs an image")
        if not self.timeout_s > 0:
            problems.append(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_concurrency < 1:
            problems.append(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        return problems

    @property
    def trace_id(self) -> str | None:
        """The 32-hex trace id of `traceparent`, None when absent or malformed."""
        return trace_id_of_traceparent(self.traceparent)


@dataclass(frozen=True)
class SubmitResult:
    """What `JobRunner.submit` did.

    `created` is True when this call queued a run (a new job, or a new attempt of
    a failed one); False when the job_key was already queued, running, or
    succeeded, and nothing was launched. `status` is the job's status right after
    the call.
    """

    job_id: str
    created: bool
    status: JobStatus
    attempt: int


@dataclass(frozen=True)
class JobOutcome:
    """How one attempt of a job ended (what `JobRunner.wait`/`run` return)."""

    job_id: str
    job_key: str
    status: JobStatus
    attempt: int
    exit_code: int | None
    error: str | None
    trace_id: str | None
    backend_ref: str | None
    log_lines: int
    started_at: datetime | None
    finished_at: datetime | None


def job_id_for(job_key: str) -> str:
    """Stable per job_key: the decision names the job before its row is written."""
    return "job-" + hashlib.sha256(job_key.encode()).hexdigest()[:20]


def idempotency_key_for(job_key: str) -> str:
    """The same for every attempt of one job (LABSTREAM_JOB_IDEMPOTENCY_KEY): a job that
    calls an outside service passes it along so a repeated attempt changes nothing twice."""
    return hashlib.sha256(b"labstream-job\x1f" + job_key.encode()).hexdigest()[:32]
