"""ECS backend: one Fargate task per job attempt (`boto3`: `ecs.run_task`), logs from CloudWatch.

ECS cannot change a container's image at run time, so for this backend the
rule's `image` names the **task definition** (`family`, `family:revision` or an
ARN); the command and environment go into `overrides.containerOverrides` of the
container `LABSTREAM_JOBS_ECS_CONTAINER`. ECS has no run-time limit: the runner
enforces `timeout_s` with `ecs.stop_task`; the grace between SIGTERM and SIGKILL
is the task definition's `stopTimeout`. Logs are read with `logs.get_log_events`
from the awslogs stream `<prefix>/<container>/<task id>` (every line "stdout").
The same `clientToken` is sent on every launch retry of one attempt, so a
`run_task` whose answer was lost does not start a second task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from base.logs import kv
from streams.jobs.backends._threads import in_thread
from streams.jobs.exceptions import JobsConfigError, JobStartError
from streams.jobs.launcher import LogLine
from streams.jobs.model import JobRequest

log = logging.getLogger(__name__)

_AWS_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


class EcsSettings(BaseSettings):
    """ECS backend (LABSTREAM_JOBS_ECS_*; credentials and region the usual AWS way)."""

    model_config = SettingsConfigDict(env_prefix="LABSTREAM_JOBS_ECS_", frozen=True, extra="ignore")

    cluster: str = Field(default="default", description="Cluster name or ARN.")
    subnets: str = Field(default="", description="Comma-separated subnet ids (awsvpc).")
    security_groups: str = Field(default="", description="Comma-separated security group ids.")
    assign_public_ip: bool = Field(default=False, description="Fargate ENI gets a public IP.")
    container: str = Field(default="job", description="Container (in the task definition) to run.")
    platform_version: str | None = Field(default=None, description="Fargate platform version.")
    log_group: str | None = Field(
        default=None, description="awslogs group of the container; unset: no log lines."
    )
    log_stream_prefix: str = Field(default="labstream", description="awslogs-stream-prefix.")
    poll_s: float = Field(default=5.0, gt=0, description="Task status / log poll interval.")

    def subnet_ids(self) -> list[str]:
        return [item.strip() for item in self.subnets.split(",") if item.strip()]

    def security_group_ids(self) -> list[str]:
        return [item.strip() for item in self.security_groups.split(",") if item.strip()]


def run_task_parameters(
    request: JobRequest, *, job_id: str, env: Mapping[str, str], settings: EcsSettings
) -> dict[str, Any]:
    """The keyword arguments of `ecs.run_task` for one attempt of `request`."""
    vpc: dict[str, Any] = {
        "subnets": settings.subnet_ids(),
        "assignPublicIp": "ENABLED" if settings.assign_public_ip else "DISABLED",
    }
    if settings.security_group_ids():
        vpc["securityGroups"] = settings.security_group_ids()
    attempt = env.get("LABSTREAM_JOB_ATTEMPT", "1")
    parameters: dict[str, Any] = {
        "cluster": settings.cluster,
        "taskDefinition": request.image,
        "launchType": "FARGATE",
        "count": 1,
        "networkConfiguration": {"awsvpcConfiguration": vpc},
        "overrides": {
            "containerOverrides": [
                {
                    "name": settings.container,
                    "command": list(request.command),
                    "environment": [
                        {"name": name, "value": value} for name, value in sorted(env.items())
                    ],
                }
            ]
        },
        "startedBy": job_id[:36],
        "clientToken": f"{job_id}-{attempt}"[:64],
        "tags": [
            {"key": "labstream.job-id", "value": job_id},
            {"key": "labstream.rule-id", "value": request.rule_id},
            {"key": "labstream.tenant-id", "value": request.tenant_id},
        ],
    }
    if settings.platform_version:
        parameters["platformVersion"] = settings.platform_version
    return parameters


class EcsLauncher:
    """`JobLauncher` for backend 'ecs'."""

    name = "ecs"

    def __init__(self, ecs: Any, logs: Any, settings: EcsSettings | None = None) -> None:
        self._ecs, self._logs = ecs, logs
        self._settings = settings or EcsSettings()

    def stop_abandoned(self, backend_ref: str) -> bool:
        """Stop the Fargate task of an attempt whose runner is gone (task ARN)."""
        response = self._ecs.stop_task(cluster=self._settings.cluster, task=backend_ref,
                                       reason="labstream: its runner is gone; attempt re-run")
        return bool(response.get("task"))

    @classmethod
    def from_environment(cls, settings: EcsSettings | None = None) -> EcsLauncher:
        settings = settings or EcsSettings()
        if not settings.subnet_ids():
            raise JobsConfigError(
                "the ecs job backend needs at least one subnet",
                hint="set LABSTREAM_JOBS_ECS_SUBNETS=subnet-...,subnet-...",
            )
        session = boto3.session.Session()
        return cls(session.client("ecs"), session.client("logs"), settings)

    async def start(
        self, request: JobRequest, *, job_id: str, workdir: Path, env: Mapping[str, str]
    ) -> EcsJob:
        parameters = run_task_parameters(request, job_id=job_id, env=env, settings=self._settings)
        try:
            response = await asyncio.to_thread(self._ecs.run_task, **parameters)
        except _AWS_ERRORS as exc:
            raise JobStartError(
                f"ecs run_task failed for job {job_id} (task definition {request.image!r}): {exc}",
                hint="check the cluster, task definition, subnets and the worker's IAM permissions",
            ) from exc
        failures = response.get("failures") or []
        tasks = response.get("tasks") or []
        if failures or not tasks:
            reasons = "; ".join(
                f"{item.get('arn', '?')}: {item.get('reason', '?')} {item.get('detail', '')}"
                for item in failures
            )
            raise JobStartError(f"ecs did not start job {job_id}: {reasons or 'no task returned'}")
        return EcsJob(self._ecs, self._logs, tasks[0]["taskArn"], self._settings)


class EcsJob:
    """A Fargate task and its CloudWatch log stream (`RunningJob`)."""

    def __init__(self, ecs: Any, logs: Any, task_arn: str, settings: EcsSettings) -> None:
        self._ecs, self._logs = ecs, logs
        self._task_arn = task_arn
        self._settings = settings
        self._exit: asyncio.Future[int] | None = None
        self._stopped = False

    @property
    def backend_ref(self) -> str:
        return self._task_arn

    @property
    def log_stream_name(self) -> str:
        task_id = self._task_arn.rsplit("/", 1)[-1]
        return f"{self._settings.log_stream_prefix}/{self._settings.container}/{task_id}"

    def _describe(self) -> dict[str, Any] | None:
        response = self._ecs.describe_tasks(cluster=self._settings.cluster, tasks=[self._task_arn])
        tasks = response.get("tasks") or []
        return tasks[0] if tasks else None

    def _exit_code(self) -> int:
        """Blocks until the task is STOPPED; the container's exit code (-1 if it has none)."""
        while True:
            with contextlib.suppress(*_AWS_ERRORS):
                task = self._describe()
                if task is not None and task.get("lastStatus") == "STOPPED":
                    break
            time.sleep(self._settings.poll_s)
        self._stopped = True
        for container in task.get("containers", []):
            if container.get("name") == self._settings.container and "exitCode" in container:
                return int(container["exitCode"])
        kv(
            log,
            "warning",
            "ecs task stopped without exit code",
            task=self._task_arn,
            reason=task.get("stoppedReason", ""),
        )
        return -1  # e.g. CannotPullContainerError: the container never ran

    async def wait(self, timeout: float) -> int:
        if self._exit is None:
            self._exit = in_thread(self._exit_code, "ecs-wait")
        return await asyncio.wait_for(asyncio.shield(self._exit), timeout)

    async def lines(self) -> AsyncIterator[LogLine]:
        if not self._settings.log_group:
            return
        token: str | None = None
        while True:
            stopped_before_fetch = self._stopped
            events, token = await asyncio.to_thread(self._fetch_events, token)
            for event in events:
                for line in str(event.get("message", "")).splitlines() or [""]:
                    yield "stdout", line
            if not events:
                if stopped_before_fetch:
                    return  # nothing new after the task stopped: the stream is complete
                await asyncio.sleep(self._settings.poll_s)

    def _fetch_events(self, token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        arguments: dict[str, Any] = {
            "logGroupName": self._settings.log_group,
            "logStreamName": self.log_stream_name,
            "startFromHead": True,
        }
        if token:
            arguments["nextToken"] = token
        try:
            response = self._logs.get_log_events(**arguments)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return [], token  # the container has not written anything yet
            raise
        return response.get("events", []), response.get("nextForwardToken", token)

    async def kill(self) -> None:
        with contextlib.suppress(*_AWS_ERRORS):
            await asyncio.to_thread(
                self._ecs.stop_task,
                cluster=self._settings.cluster,
                task=self._task_arn,
                reason="labstream: job timed out or worker stopping",
            )

    async def close(self) -> None:
        if self._exit is None or not self._exit.done():
            await self.kill()
        self._stopped = True
