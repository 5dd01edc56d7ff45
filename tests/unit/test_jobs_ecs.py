"""ECS backend against botocore's Stubber: parameters are validated against AWS's API model.

Not a real AWS account: the Stubber checks each call's parameters against the
service model shipped with botocore (unknown or mistyped fields fail) and
returns the responses given here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber

from streams.jobs.backends.ecs import EcsLauncher, EcsSettings, run_task_parameters
from streams.jobs.exceptions import JobStartError
from streams.jobs.model import JobRequest

NO_WORKDIR = Path("/nonexistent")  # container backends do not use the worker's temp dir
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TASK_ARN = "arn:aws:ecs:eu-west-1:123456789012:task/lab/0123456789abcdef0123456789abcdef"
SETTINGS = EcsSettings(
    cluster="lab",
    subnets="subnet-a, subnet-b",
    security_groups="sg-1",
    container="job",
    log_group="/lab/jobs",
    log_stream_prefix="labstream",
    poll_s=0.01,
)
ENV = {"TRACEPARENT": TRACEPARENT, "LABSTREAM_JOB_ID": "job-abc", "LABSTREAM_JOB_ATTEMPT": "2"}


def make_request() -> JobRequest:
    return JobRequest(
        job_key="retrain/lab.public.runs/1/5",
        rule_id="retrain",
        tenant_id="acme",
        experiment_id=None,
        backend="ecs",
        image="retrain-model:7",
        command=("python", "-m", "retrain"),
        env={},
        timeout_s=300,
        max_concurrency=1,
        source_topic="lab.public.runs",
        source_partition=1,
        source_offset=5,
        traceparent=TRACEPARENT,
        tracestate=None,
    )


def clients() -> tuple[object, object]:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
    )
    return session.client("ecs"), session.client("logs")


def test_run_task_parameters_shape():
    parameters = run_task_parameters(make_request(), job_id="job-abc", env=ENV, settings=SETTINGS)
    assert parameters["taskDefinition"] == "retrain-model:7"
    assert parameters["launchType"] == "FARGATE"
    assert parameters["networkConfiguration"] == {
        "awsvpcConfiguration": {
            "subnets": ["subnet-a", "subnet-b"],
            "assignPublicIp": "DISABLED",
            "securityGroups": ["sg-1"],
        }
    }
    (override,) = parameters["overrides"]["containerOverrides"]
    assert override["name"] == "job"
    assert override["command"] == ["python", "-m", "retrain"]
    assert {"name": "TRACEPARENT", "value": TRACEPARENT} in override["environment"]
    assert parameters["clientToken"] == "job-abc-2"  # same on every retry of attempt 2


def test_full_lifecycle_validated_by_stubber():
    ecs, logs = clients()
    parameters = run_task_parameters(make_request(), job_id="job-abc", env=ENV, settings=SETTINGS)
    with Stubber(ecs) as ecs_stub, Stubber(logs) as logs_stub:
        ecs_stub.add_response(
            "run_task", {"tasks": [{"taskArn": TASK_ARN}], "failures": []}, parameters
        )
        describe = {"cluster": "lab", "tasks": [TASK_ARN]}
        ecs_stub.add_response("describe_tasks", {"tasks": [{"lastStatus": "RUNNING"}]}, describe)
        ecs_stub.add_response(
            "describe_tasks",
            {
                "tasks": [
                    {
                        "lastStatus": "STOPPED",
                        "containers": [{"name": "job", "exitCode": 0}],
                    }
                ]
            },
            describe,
        )
        stream = {
            "logGroupName": "/lab/jobs",
            "logStreamName": "labstream/job/0123456789abcdef0123456789abcdef",
            "startFromHead": True,
        }
        logs_stub.add_response(
            "get_log_events",
            {
                "events": [{"message": "peak count 3"}, {"message": "done"}],
                "nextForwardToken": "f/2",
            },
            stream,
        )
        # after the task stopped: one more read finds nothing new, and the stream ends
        logs_stub.add_response(
            "get_log_events",
            {"events": [], "nextForwardToken": "f/2"},
            {**stream, "nextToken": "f/2"},
        )
        launcher = EcsLauncher(ecs, logs, SETTINGS)

        async def scenario() -> tuple[int, list]:
            running = await launcher.start(
                make_request(),
                job_id="job-abc",
                workdir=NO_WORKDIR,
                env=ENV,
            )
            exit_code = await running.wait(5)
            lines = [item async for item in running.lines()]
            await running.close()
            return exit_code, lines

        exit_code, lines = asyncio.run(scenario())
        ecs_stub.assert_no_pending_responses()
        logs_stub.assert_no_pending_responses()
    assert exit_code == 0
    assert lines == [("stdout", "peak count 3"), ("stdout", "done")]


def test_failures_in_the_response_are_a_start_error():
    ecs, logs = clients()
    with Stubber(ecs) as stub:
        stub.add_response(
            "run_task",
            {"tasks": [], "failures": [{"arn": "x", "reason": "RESOURCE:MEMORY"}]},
            {
                "cluster": "lab",
                "taskDefinition": "retrain-model:7",
                "launchType": "FARGATE",
                "count": 1,
                "networkConfiguration": ANY,
                "overrides": ANY,
                "startedBy": ANY,
                "clientToken": ANY,
                "tags": ANY,
            },
        )
        with pytest.raises(JobStartError, match="RESOURCE:MEMORY"):
            asyncio.run(
                EcsLauncher(ecs, logs, SETTINGS).start(
                    make_request(),
                    job_id="job-abc",
                    workdir=NO_WORKDIR,
                    env=ENV,
                )
            )


def test_client_error_is_a_start_error_and_kill_calls_stop_task():
    ecs, logs = clients()
    with Stubber(ecs) as stub:
        stub.add_client_error("run_task", "ThrottlingException", "Rate exceeded")
        with pytest.raises(JobStartError, match="Rate exceeded"):
            asyncio.run(
                EcsLauncher(ecs, logs, SETTINGS).start(
                    make_request(),
                    job_id="job-abc",
                    workdir=NO_WORKDIR,
                    env=ENV,
                )
            )
        stub.add_response(
            "stop_task",
            {"task": {"taskArn": TASK_ARN}},
            {"cluster": "lab", "task": TASK_ARN, "reason": ANY},
        )
        from streams.jobs.backends.ecs import EcsJob

        asyncio.run(EcsJob(ecs, logs, TASK_ARN, SETTINGS).kill())
        stub.assert_no_pending_responses()


def test_an_abandoned_attempts_task_is_stopped_by_the_taker():
    ecs, logs = clients()
    with Stubber(ecs) as stub:
        stub.add_response("stop_task", {"task": {"taskArn": TASK_ARN}},
                          {"cluster": "lab", "task": TASK_ARN, "reason": ANY})
        assert EcsLauncher(ecs, logs, SETTINGS).stop_abandoned(TASK_ARN) is True
        stub.assert_no_pending_responses()
