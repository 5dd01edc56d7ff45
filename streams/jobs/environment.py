"""The environment a job gets: built from scratch, never copied from the worker.

A worker holds secrets (cloud credentials, registry passwords, its own database
password); none of them may leak into a job by accident. A job's environment is
exactly, later entries winning:

1. the rule's `env`;
2. tracing settings a job needs to export its own spans the way the worker
   does (`TRACING_PASSTHROUGH`: exporters, OTLP endpoint/protocol, sampler; copied
   only when set on the worker; the exporter keys in `TRACING_KEYS` only with
   `LABSTREAM_JOBS_PASS_TRACING_KEYS=true`), `OTEL_SERVICE_NAME=labstream-job` unless
   the rule names one, `OTEL_RESOURCE_ATTRIBUTES` = the worker's + the rule's + the
   job's identity (lab.job.id, lab.rule.id, ...), and `LABSTREAM_DATABASE_URL` only
   when the runner is told to pass it;
3. `TRACEPARENT`/`TRACESTATE` (the job's span, else the request's context),
   `LABSTREAM_JOB_ID`, `LABSTREAM_JOB_KEY`, `LABSTREAM_JOB_ATTEMPT` (1, 2, ...: a new
   number for every launch), `LABSTREAM_JOB_IDEMPOTENCY_KEY` (the same for every attempt),
   `LABSTREAM_RULE_ID`, `LABSTREAM_TENANT_ID` (+ `LABSTREAM_EXPERIMENT_ID`).

The local backend adds PATH, LANG and HOME (= the job's temp dir) on top.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, unquote

from streams.jobs.model import JobRequest, idempotency_key_for

# Not secrets: they choose whether, how and where the job's own spans go (the worker's
# exporters, collector endpoint, sampler), never with what key.
TRACING_PASSTHROUGH = (
    "LABSTREAM_TRACING_ENABLED",
    "LABSTREAM_TRACING_EXPORTERS",
    "LABSTREAM_TRACING_BEELINE_HEADERS",
    "LABSTREAM_TRACING_HONEYCOMB_REGION",
    "LABSTREAM_TRACING_HONEYCOMB_ENDPOINT",
    "LABSTREAM_TRACING_HONEYCOMB_DATASET",
    "HONEYCOMB_REGION",
    "HONEYCOMB_API_ENDPOINT",
    "HONEYCOMB_DATASET",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
    "OTEL_TRACES_EXPORTER",
    *(f"OTEL_EXPORTER_OTLP_{part}{name}" for part in ("", "TRACES_")
      for name in ("ENDPOINT", "PROTOCOL", "COMPRESSION", "TIMEOUT", "INSECURE")),
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
)
# Exporter keys: only when the operator lets jobs have them
# (LABSTREAM_JOBS_PASS_TRACING_KEYS=true on the worker); a job's spans then reach a
# collector or Honeycomb that needs a key, like the worker's do.
TRACING_KEYS = (
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "HONEYCOMB_API_KEY",
    "LABSTREAM_TRACING_HONEYCOMB_API_KEY",
)
PASS_KEYS_SWITCH = "LABSTREAM_JOBS_PASS_TRACING_KEYS"
JOB_SERVICE_NAME = "labstream-job"


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
    passed = TRACING_PASSTHROUGH
    if worker_environ.get(PASS_KEYS_SWITCH, "").strip().lower() == "true":
        passed += TRACING_KEYS
    for name in passed:
        if name in worker_environ:
            env[name] = worker_environ[name]
    env.setdefault("OTEL_SERVICE_NAME", JOB_SERVICE_NAME)  # a job on any OTel SDK names itself
    env["OTEL_RESOURCE_ATTRIBUTES"] = resource_attributes(
        worker_environ.get("OTEL_RESOURCE_ATTRIBUTES", ""), request.env.get(
            "OTEL_RESOURCE_ATTRIBUTES", ""), _job_resource(request, job_id, attempt))
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


def _job_resource(request: JobRequest, job_id: str, attempt: int) -> dict[str, str]:
    attributes = {
        "service.namespace": "labstream",
        "lab.job.id": job_id,
        "lab.job.attempt": str(attempt),
        "lab.rule.id": request.rule_id,
        "lab.tenant.id": request.tenant_id,
    }
    if request.experiment_id:
        attributes["lab.experiment.id"] = request.experiment_id
    return attributes


def resource_attributes(worker: str, rule: str, job: Mapping[str, str]) -> str:
    """`OTEL_RESOURCE_ATTRIBUTES` for the job: the worker's (deployment, region, ...), then
    the rule's, then the job's identity, later ones winning; values percent-encoded as the
    OTel spec wants (a comma or '=' in a tenant id must not split the list)."""
    merged: dict[str, str] = {}
    for text in (worker, rule):
        for item in text.split(","):
            key, sep, value = item.partition("=")
            if sep and key.strip():
                merged[key.strip()] = unquote(value.strip())
    merged.update(job)
    return ",".join(f"{key}={quote(value, safe='')}" for key, value in merged.items())
