"""Job launchers: run what a trigger rule asks for, once, and record it in the lab DB.

The trigger agent builds a `JobRequest` (rule, tenant, command, env, timeout,
max_concurrency, the Kafka record it came from, and its trace context) and
hands it to a `JobRunner`::

    from streams.jobs import JobRequest, JobRunner

    runner = JobRunner(database_url)          # one per worker process
    await runner.start()                      # claims queued jobs; takes over a dead runner's
    result = await runner.submit(request)     # the row is queued: the DB owns the job now
    if not result.created:
        ...                                   # job_key already queued/running/succeeded
    outcome = await runner.wait(result.job_id)  # optional: JobOutcome when it is done
    await runner.aclose()                     # SIGTERM: grace, then kill + hand back

What the runner guarantees:

- **Once per job_key**: `INSERT ... ON CONFLICT (job_key) DO NOTHING`. A job_key
  that is queued, started or succeeded is not launched again (succeeded only with
  `rerun_succeeded=True`); a failed, timed_out or launch_failed one is retried as
  a new attempt (`jobs.attempt` + 1) on the same row.
- **Status lifecycle** in `public.jobs`: queued -> started -> succeeded | failed |
  timed_out, or queued -> started -> launch_failed; `created_at`, `started_at`,
  `finished_at`, `exit_code`, `error`, `backend_ref`.
- **Durable**: the row is the job. Runners lease queued rows (owner, lease expiry,
  heartbeat); a runner's jobs are taken over when its session ends or its lease
  expires: the abandoned attempt is killed, the next one queued. Nothing is
  marked failed because a worker died.
- **Per-tenant limit and fairness**: at most the rule's `max_concurrency` jobs of
  one (tenant, rule) hold live leases at once, across all workers; claims go round
  robin over tenants, so one tenant's burst queues behind itself only.
  Every job gets its own process/container and its own temp dir.
- **Timeout**: after `timeout_s` the job (its whole process group / container /
  Kubernetes Job / ECS task) is killed; status timed_out.
- **Launch retries**: `JobStartError` from a backend is retried with exponential
  backoff (`LABSTREAM_JOBS_LAUNCH_ATTEMPTS`, `..._LAUNCH_BACKOFF_S`), then launch_failed.
- **Logs**: every stdout/stderr line into `public.job_log_lines` (seq order,
  batched, tagged with the trace id).
- **Tracing**: a span `job <rule_id>` in the request's trace (INTERNAL for local,
  CLIENT for remote backends); the job gets TRACEPARENT of that span.
- **Scrubbed environment**: see `streams.jobs.environment`.

Backends (`JOB_BACKENDS` in `streams.jobs.registry`): local (default), docker,
kubernetes, ecs. A backend implements `JobLauncher` (`streams.jobs.launcher`).
The full guide is docs/jobs.md.
"""

from streams.jobs.exceptions import InvalidJobRequest, JobsConfigError, JobsError, JobStartError
from streams.jobs.launcher import JobLauncher, RunningJob
from streams.jobs.model import JobOutcome, JobRequest, JobStatus, SubmitResult
from streams.jobs.registry import JOB_BACKENDS
from streams.jobs.runner import JobRunner

__all__ = [
    "JOB_BACKENDS",
    "InvalidJobRequest",
    "JobLauncher",
    "JobOutcome",
    "JobRequest",
    "JobRunner",
    "JobStartError",
    "JobStatus",
    "JobsConfigError",
    "JobsError",
    "RunningJob",
    "SubmitResult",
]
