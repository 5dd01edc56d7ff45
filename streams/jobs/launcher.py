"""The one interface every job backend implements: `JobLauncher` and `RunningJob`.

The runner (`streams.jobs.runner.JobRunner`) owns everything else: the `jobs`
row, idempotency, concurrency slots, retries, the timeout, the span, and the
log lines. A backend only starts a job, streams its output, waits, and kills.

The runner calls, in this order, for every attempt of a job:

1. `launcher.start(request, job_id=..., workdir=..., env=...)` once the job has a
   concurrency slot. Raise `JobStartError` for a failure worth retrying (the
   runner retries with exponential backoff, then marks the job `launch_failed`);
   any other exception is a launch failure that is not retried.
2. `running.lines()` is iterated to its end by one task, concurrently with
3. `running.wait(timeout)`: returns the exit code; raises `TimeoutError` when the
   job is still running after `timeout` seconds. Then the runner calls
4. `running.kill()` (only after a timeout or when the worker shuts down) and
5. `running.close()` always, last: kill the job if it is still running (the
   worker is stopping, or the runner failed), then free what the backend holds
   (container, pipes, leftover processes). It must not raise for a job that is
   already gone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from streams.jobs.model import JobRequest

StreamName = Literal["stdout", "stderr"]
LogLine = tuple[StreamName, str]


@runtime_checkable
class RunningJob(Protocol):
    """One started job, as its backend sees it."""

    @property
    def backend_ref(self) -> str:
        """What identifies it in the backend: pid, container id, Job name, task ARN."""
        ...

    def lines(self) -> AsyncIterator[LogLine]:
        """(stream, line) in the order the job wrote them, without the newline.

        Ends when the job's output ends. Backends that cannot tell stdout from
        stderr (CloudWatch Logs) report "stdout".
        """
        ...

    async def wait(self, timeout: float) -> int:
        """The exit code; `TimeoutError` if the job has not ended within `timeout` seconds."""
        ...

    async def kill(self) -> None:
        """Stop the job now, with everything it started (process group, container, pods)."""
        ...

    async def close(self) -> None:
        """Kill the job if still running, then release backend resources; called once, last."""
        ...


@runtime_checkable
class JobLauncher(Protocol):
    """Starts jobs on one backend. One instance serves many jobs concurrently."""

    name: str

    async def start(
        self, request: JobRequest, *, job_id: str, workdir: Path, env: Mapping[str, str]
    ) -> RunningJob:
        """Start `request.command` with exactly `env` as its environment.

        `workdir` is a fresh empty directory for this job only (the local backend
        runs in it; container backends may ignore it). `env` is already scrubbed
        and complete (trace context, job id, the rule's env): add nothing from the
        worker's own environment except what the backend needs to run a process
        at all (the local backend's PATH, HOME, LANG).
        """
        ...


@runtime_checkable
class AbandonedStopper(Protocol):
    """A container backend that can stop an attempt whose runner is gone.

    `stop_abandoned(backend_ref)` is called (blocking, inside the take-over's
    transaction, so the next attempt is queued only after it) with the `backend_ref`
    the dead runner recorded; True if something was stopped, False if it was gone.
    """

    def stop_abandoned(self, backend_ref: str) -> bool: ...

