"""The environment a job gets: built from scratch, never copied from the worker.

A worker holds secrets (cloud credentials, registry passwords, its own database
password); none of them may leak into a job by accident. A job's environment is
exactly, later entries winning:

1. the rule's `env`;
2. tracing settings a job needs to export its own spans the way the worker
   does (`TRACING_PASSTHROUGH`, copied only when set on the worker), and
   `LABSTREAM_DATABASE_URL` only when the runner is told to pass it;
3. `TRACEPARENT`/`TRACESTATE` (the job's span, else the request's context),
   `LABSTREAM_JOB_ID`, `LABSTREAM_JOB_KEY`, `LABSTREAM_JOB_ATTEMPT` (1, 2, ...: a new
   number for every launch), `LABSTREAM_JOB_IDEMPOTENCY_KEY` (the same for every attempt),
   `LABSTREAM_RULE_ID`, `LABSTREAM_TENANT_ID` (+ `LABSTREAM_EXPERIMENT_ID`).

The local backend adds PATH, LANG and HOME (= the job's temp dir) on top.
"""

from __future__ import annotations

from collections.abc import Mapping

from streams.jobs.model import JobRequest, idempotency_key_for

# Not secrets: they choose whether and how the job traces, never with what key.
TRACING_PASSTHROUGH = (
    "LABSTREAM_TRACING_ENABLED",
    "LABSTREAM_TRACING_EXPORTERS",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
)


def build_job_environment(
    request: JobRequest,
    *,
    job_id: str,
    attempt: int,
    trace_env: Mapping[str, str],
    worker_environ: Mapping[str, str],
    database_url: str | None = None,
) -> dict[str, str]:
    """The complete environment for one attempt of `request` (see the module docstring)."""
    env = dict(request.env)
    for name in TRACING_PASSTHROUGH:
        if name in worker_environ:
            env[name] = worker_environ[name]
    if database_url:
        env["LABSTREAM_DATABASE_URL"] = database_url
    env.pop("TRACEPARENT", None)
    env.pop("TRACESTATE", None)
    env.update(trace_env)
    env.update(
        {
            "LABSTREAM_JOB_ID": job_id,
            "LABSTREAM_JOB_KEY": request.job_key,
            "LABSTREAM_JOB_ATTEMPT": str(attempt),
            "LABSTREAM_JOB_IDEMPOTENCY_KEY": idempotency_key_for(request.job_key),
            "LABSTREAM_RULE_ID": request.rule_id,
            "LABSTREAM_TENANT_ID": request.tenant_id,
        }
    )
    if request.experiment_id:
        env["LABSTREAM_EXPERIMENT_ID"] = request.experiment_id
    return env


def request_trace_env(request: JobRequest) -> dict[str, str]:
    """TRACEPARENT/TRACESTATE straight from the request (used when no span is recording)."""
    env: dict[str, str] = {}
    if request.traceparent:
        env["TRACEPARENT"] = request.traceparent
        if request.tracestate:
            env["TRACESTATE"] = request.tracestate
    return env
