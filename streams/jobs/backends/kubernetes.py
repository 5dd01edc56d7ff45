"""Kubernetes backend: one `batch/v1` Job per job attempt (official `kubernetes` client).

The Job runs one pod, never restarted (`backoffLimit: 0`, `restartPolicy: Never`:
retrying is the runner's decision, not the cluster's), is killed by the cluster
itself after `timeout_s` (`activeDeadlineSeconds`, a backstop for a worker that
died) and cleaned up `ttlSecondsAfterFinished` after it ends. Logs are followed
from the pod (`read_namespaced_pod_log(follow=True)`); Kubernetes interleaves
stdout and stderr, so every line is reported as "stdout".
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.jobs.backends._threads import LineSplitter, in_thread, iterate_in_thread
from streams.jobs.exceptions import JobsConfigError, JobStartError
from streams.jobs.launcher import LogLine
from streams.jobs.model import JobRequest

CONTAINER_NAME = "job"
LABEL_PREFIX = "labstream.io/"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]+")


class KubernetesSettings(BaseSettings):
    """Kubernetes backend (LABSTREAM_JOBS_K8S_*; cluster access from in-cluster or kubeconfig)."""

    model_config = SettingsConfigDict(env_prefix="LABSTREAM_JOBS_K8S_", frozen=True, extra="ignore")

    namespace: str = Field(default="default", description="Namespace the Jobs are created in.")
    ttl_after_finished_s: int = Field(
        default=3600, ge=0, description="ttlSecondsAfterFinished of every Job."
    )
    service_account: str | None = Field(default=None, description="Pod service account.")
    poll_s: float = Field(default=2.0, gt=0, description="Job status poll interval.")
    kubeconfig_context: str | None = Field(default=None, description="kubeconfig context to use.")


def label_value(text: str) -> str:
    """A valid label value: <= 63 chars of [A-Za-z0-9_.-], alphanumeric at both ends."""
    return _LABEL_VALUE.sub("_", text)[:63].strip("_.-")


def job_name(job_id: str) -> str:
    return f"labstream-{job_id}".lower()[:63]


def build_job(
    request: JobRequest,
    *,
    job_id: str,
    env: Mapping[str, str],
    settings: KubernetesSettings,
) -> k8s.V1Job:
    """The `V1Job` for one attempt of `request`."""
    labels = {
        "app.kubernetes.io/managed-by": "labstream",
        f"{LABEL_PREFIX}job-id": label_value(job_id),
        f"{LABEL_PREFIX}rule-id": label_value(request.rule_id),
        f"{LABEL_PREFIX}tenant-id": label_value(request.tenant_id),
    }
    # annotations take any text: the exact key and trace context for whoever runs kubectl
    annotations = {f"{LABEL_PREFIX}job-key": request.job_key}
    if request.traceparent:
        annotations[f"{LABEL_PREFIX}traceparent"] = request.traceparent
    container = k8s.V1Container(
        name=CONTAINER_NAME,
        image=request.image,
        command=list(request.command),
        env=[k8s.V1EnvVar(name=name, value=value) for name, value in sorted(env.items())],
    )
    pod_spec = k8s.V1PodSpec(
        restart_policy="Never",
        containers=[container],
        service_account_name=settings.service_account,
    )
    return k8s.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=k8s.V1ObjectMeta(
            name=job_name(job_id),
            namespace=settings.namespace,
            labels=labels,
            annotations=annotations,
        ),
        spec=k8s.V1JobSpec(
            backoff_limit=0,
            active_deadline_seconds=max(1, math.ceil(request.timeout_s)),
            ttl_seconds_after_finished=settings.ttl_after_finished_s,
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels, annotations=annotations),
                spec=pod_spec,
            ),
        ),
    )


class KubernetesLauncher:
    """`JobLauncher` for backend 'kubernetes'."""

    name = "kubernetes"

    def __init__(
        self, api_client: k8s.ApiClient, settings: KubernetesSettings | None = None
    ) -> None:
        self._settings = settings or KubernetesSettings()
        self._batch = k8s.BatchV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)

    def stop_abandoned(self, backend_ref: str) -> bool:
        """Delete the Job (and its pods) of an attempt whose runner is gone."""
        namespace, _, name = backend_ref.removeprefix("job:").partition("/")
        try:
            self._batch.delete_namespaced_job(name, namespace, propagation_policy="Foreground")
        except k8s.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    @classmethod
    def from_environment(cls, settings: KubernetesSettings | None = None) -> KubernetesLauncher:
        settings = settings or KubernetesSettings()
        try:
            k8s_config.load_incluster_config()
        except k8s_config.ConfigException:
            try:
                k8s_config.load_kube_config(context=settings.kubeconfig_context)
            except (k8s_config.ConfigException, OSError) as exc:
                raise JobsConfigError(
                    f"the kubernetes job backend found no cluster credentials: {exc}",
                    hint="run the worker in a pod with a service account, or set KUBECONFIG",
                ) from exc
        return cls(k8s.ApiClient(), settings)

    async def start(
        self, request: JobRequest, *, job_id: str, workdir: Path, env: Mapping[str, str]
    ) -> KubernetesJob:
        body = build_job(request, job_id=job_id, env=env, settings=self._settings)
        name, namespace = job_name(job_id), self._settings.namespace
        try:
            await asyncio.to_thread(self._batch.create_namespaced_job, namespace, body)
        except k8s.ApiException as exc:
            raise JobStartError(
                f"kubernetes refused Job {name} in {namespace}: {exc.status} {exc.reason}",
                hint="check the namespace, the worker's RBAC (create batch/jobs) and quotas",
            ) from exc
        except (OSError, urllib3.exceptions.HTTPError) as exc:  # connection refused, TLS
            raise JobStartError(f"kubernetes API not reachable: {exc}") from exc
        return KubernetesJob(self._batch, self._core, name, namespace, poll_s=self._settings.poll_s)


class KubernetesJob:
    """A Job and its pod (`RunningJob`)."""

    def __init__(
        self,
        batch: k8s.BatchV1Api,
        core: k8s.CoreV1Api,
        name: str,
        namespace: str,
        *,
        poll_s: float,
    ) -> None:
        self._batch, self._core = batch, core
        self._name, self._namespace = name, namespace
        self._poll_s = poll_s
        self._exit: asyncio.Future[int] | None = None
        self._stopped = False

    @property
    def backend_ref(self) -> str:
        return f"job:{self._namespace}/{self._name}"

    def _pod(self) -> Any | None:
        pods = self._core.list_namespaced_pod(
            self._namespace, label_selector=f"{JOB_NAME_LABEL}={self._name}"
        )
        return pods.items[0] if pods.items else None

    def _open_log(self) -> Any | None:
        """The followed log (a urllib3 response) once the container runs; None if stopped first."""
        while not self._stopped:
            try:
                pod = self._pod()
                # a pending pod's container has no log yet ("ContainerCreating": 400)
                if pod is not None and pod.status and pod.status.phase not in (None, "Pending"):
                    return self._core.read_namespaced_pod_log(
                        pod.metadata.name,
                        self._namespace,
                        container=CONTAINER_NAME,
                        follow=True,
                        _preload_content=False,
                    )
            except k8s.ApiException as exc:
                if exc.status in (401, 403):  # RBAC: asking again will not help
                    raise
            except (OSError, urllib3.exceptions.HTTPError):
                pass  # the API server is briefly unreachable: ask again
            time.sleep(self._poll_s)
        return None

    def _follow_log(self) -> Iterator[bytes]:
        response = self._open_log()
        if response is None:
            return
        try:
            yield from response.stream(64 * 1024)
        finally:
            response.release_conn()

    async def lines(self) -> AsyncIterator[LogLine]:
        splitter = LineSplitter()
        async for chunk in iterate_in_thread(self._follow_log, f"k8s-log-{self._name}"):
            for line in splitter.feed(chunk):
                yield "stdout", line
        for line in splitter.rest():
            yield "stdout", line

    def _exit_code(self) -> int:
        """Blocks until the Job has succeeded or failed; the container's exit code."""
        while True:
            try:
                job = self._batch.read_namespaced_job_status(self._name, self._namespace)
            except k8s.ApiException as exc:
                if exc.status == 404:  # deleted: killed by us or by someone with kubectl
                    return -1
                job = None  # a hiccup of the API server: ask again
            except (OSError, urllib3.exceptions.HTTPError):
                job = None
            status = job.status if job is not None else None
            if status and (status.succeeded or status.failed):
                break
            time.sleep(self._poll_s)
        pod = self._pod()
        for container in (pod.status.container_statuses or []) if pod and pod.status else []:
            terminated = container.state.terminated if container.state else None
            if container.name == CONTAINER_NAME and terminated is not None:
                return int(terminated.exit_code)
        return 0 if status.succeeded else -1  # pod gone (deadline, eviction): no exit code

    async def wait(self, timeout: float) -> int:
        if self._exit is None:
            self._exit = in_thread(self._exit_code, f"k8s-wait-{self._name}")
        return await asyncio.wait_for(asyncio.shield(self._exit), timeout)

    async def kill(self) -> None:
        self._stopped = True
        with contextlib.suppress(k8s.ApiException):
            await asyncio.to_thread(
                self._batch.delete_namespaced_job,
                self._name,
                self._namespace,
                propagation_policy="Background",
            )

    async def close(self) -> None:
        self._stopped = True
        if self._exit is None or not self._exit.done():
            await self.kill()
        # a finished Job stays for ttlSecondsAfterFinished, for `kubectl describe`
