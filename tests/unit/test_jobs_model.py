"""JobRequest validation, JobStatus rules, the job environment, the backend registry."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from streams.jobs.environment import build_job_environment, request_trace_env
from streams.jobs.exceptions import InvalidJobRequest, JobsConfigError
from streams.jobs.model import JobRequest, JobStatus, idempotency_key_for
from streams.jobs.registry import JOB_BACKENDS, build_launcher
from streams.jobs.settings import JobSettings

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def make(**overrides: object) -> JobRequest:
    fields: dict[str, Any] = {
        "job_key": "k",
        "rule_id": "r",
        "tenant_id": "t",
        "experiment_id": None,
        "backend": "local",
        "image": None,
        "command": ["echo", 1],
        "env": {"A": "1"},
        "timeout_s": 5,
        "max_concurrency": 1,
        "source_topic": None,
        "source_partition": None,
        "source_offset": None,
        "traceparent": TRACEPARENT,
        "tracestate": None,
    }
    fields.update(overrides)
    return JobRequest(**fields)


def test_request_normalises_command_and_freezes_env():
    request = make()
    assert request.command == ("echo", "1")
    with pytest.raises(TypeError):
        request.env["A"] = "2"  # type: ignore[index]
    assert request.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert make(traceparent="garbage").trace_id is None
    assert make(traceparent=None).trace_id is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"command": []}, "command is empty"),
        ({"backend": "slurm"}, "backend 'slurm'"),
        ({"backend": "docker", "image": None}, "needs an image"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"job_key": ""}, "job_key"),
    ],
)
def test_invalid_requests_name_the_field(overrides, message):
    with pytest.raises(InvalidJobRequest, match=message):
        make(**overrides)


def test_status_rules():
    assert not JobStatus.QUEUED.is_terminal and not JobStatus.STARTED.is_terminal
    assert all(JobStatus(s).is_terminal for s in ("succeeded", "failed", "timed_out"))
    assert {s for s in JobStatus if s.may_run_again} == {
        JobStatus.FAILED,
        JobStatus.TIMED_OUT,
        JobStatus.LAUNCH_FAILED,
    }


def test_job_environment_layers_rule_env_passthrough_and_identity():
    request = make(env={"A": "1", "TRACEPARENT": "forged", "LABSTREAM_JOB_ID": "forged"})
    worker = {
        "AWS_SECRET_ACCESS_KEY": "secret",
        "HONEYCOMB_API_KEY": "secret",
        "LABSTREAM_TRACING_EXPORTERS": "db",
        "LABSTREAM_DATABASE_URL": "postgresql://lab:pw@db/lab",
    }
    env = build_job_environment(
        request,
        job_id="job-1",
        attempt=2,
        trace_env={"TRACEPARENT": TRACEPARENT},
        worker_environ=worker,
    )
    assert env == {
        "A": "1",
        "LABSTREAM_TRACING_EXPORTERS": "db",
        "TRACEPARENT": TRACEPARENT,
        "LABSTREAM_JOB_ID": "job-1",
        "LABSTREAM_JOB_KEY": "k",
        "LABSTREAM_JOB_ATTEMPT": "2",
        "LABSTREAM_JOB_IDEMPOTENCY_KEY": idempotency_key_for("k"),
        "LABSTREAM_RULE_ID": "r",
        "LABSTREAM_TENANT_ID": "t",
        "OTEL_SERVICE_NAME": "labstream-job",
        "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=labstream,lab.job.id=job-1,"
        "lab.job.attempt=2,lab.rule.id=r,lab.tenant.id=t",
    }
    with_db = build_job_environment(
        request, job_id="j", attempt=1, trace_env={}, worker_environ={}, database_url="pg://x"
    )
    assert with_db["LABSTREAM_DATABASE_URL"] == "pg://x"
    assert "TRACEPARENT" not in with_db  # a rule cannot forge the trace context


def test_job_spans_go_where_the_worker_s_go_with_keys_only_when_allowed():
    request = make(env={"OTEL_RESOURCE_ATTRIBUTES": "lab.chain=c1,deployment.environment=rule"})
    worker = {
        "LABSTREAM_TRACING_EXPORTERS": "db,otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=secret",
        "HONEYCOMB_API_KEY": "secret",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,cloud.region=eu-west-1",
    }
    env = build_job_environment(request, job_id="job-9", attempt=1, trace_env={},
                                worker_environ=worker)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
    assert env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
    assert env["LABSTREAM_TRACING_EXPORTERS"] == "db,otlp"
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_always_on"
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in env and "HONEYCOMB_API_KEY" not in env
    resource = dict(item.split("=") for item in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    assert resource["deployment.environment"] == "rule"  # the rule's wins over the worker's
    assert resource["cloud.region"] == "eu-west-1" and resource["lab.chain"] == "c1"
    assert resource["lab.job.id"] == "job-9" and resource["lab.tenant.id"] == "t"
    keyed = build_job_environment(request, job_id="job-9", attempt=1, trace_env={},
                                  worker_environ={**worker,
                                                  "LABSTREAM_JOBS_PASS_TRACING_KEYS": "true"})
    assert keyed["OTEL_EXPORTER_OTLP_HEADERS"] == "x-honeycomb-team=secret"
    assert keyed["HONEYCOMB_API_KEY"] == "secret"


def test_resource_attribute_values_are_percent_encoded():
    import os
    from unittest import mock

    from opentelemetry.sdk.resources import OTELResourceDetector

    env = build_job_environment(make(tenant_id="a,b=c"), job_id="j", attempt=1, trace_env={},
                                worker_environ={})
    with mock.patch.dict(os.environ, {"OTEL_RESOURCE_ATTRIBUTES":
                                      env["OTEL_RESOURCE_ATTRIBUTES"]}):
        detected = OTELResourceDetector().detect().attributes
    assert detected["lab.tenant.id"] == "a,b=c" and detected["lab.job.id"] == "j"


def test_request_trace_env():
    assert request_trace_env(make(tracestate="a=b")) == {
        "TRACEPARENT": TRACEPARENT,
        "TRACESTATE": "a=b",
    }
    assert request_trace_env(make(traceparent=None)) == {}


def test_registry_is_explicit_and_unknown_backend_is_a_config_error():
    assert set(JOB_BACKENDS) == {"local", "docker", "kubernetes", "ecs"}
    local = build_launcher("local", JobSettings(kill_grace_s=1.5))
    assert local.name == "local" and local.kill_grace_s == 1.5  # type: ignore[attr-defined]
    with pytest.raises(JobsConfigError, match="unknown job backend 'slurm'"):
        build_launcher("slurm")


@pytest.mark.parametrize(
    ("backend", "package"), [("docker", "docker"), ("kubernetes", "kubernetes"), ("ecs", "boto3")]
)
def test_missing_client_package_names_the_package(monkeypatch, backend, package):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import <package>` fail
    with pytest.raises(JobsConfigError, match=f"needs the Python package '{package}'") as info:
        build_launcher(backend)
    assert info.value.hint and package in info.value.hint


def test_database_url_goes_to_local_jobs_only_by_default():
    from streams.jobs.settings import JobSettings

    default = JobSettings()
    assert default.passes_database_url("local")
    assert not any(default.passes_database_url(name) for name in ("docker", "kubernetes", "ecs"))
    none = JobSettings(database_url_backends="")
    assert not none.passes_database_url("local")
    assert JobSettings(database_url_backends="local, docker").passes_database_url("docker")
