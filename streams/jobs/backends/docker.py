"""Docker backend: one detached container per job, through the Docker SDK (`docker`).

The container gets the job's environment (nothing else), labels naming the job,
rule, tenant and trace, and runs `request.command` in `request.image`. stdout and
stderr are followed as two log streams. The container is removed in `close()`
rather than with Docker's AutoRemove: AutoRemove deletes a fast job's container
before its exit code and logs can be read. A worker that dies leaves stopped
containers behind; `docker container prune --filter label=labstream.job-id`
removes them (`LABSTREAM_JOBS_DOCKER_AUTO_REMOVE=true` trades that for AutoRemove).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from base.logs import kv
from streams.jobs.backends._threads import LineSplitter, in_thread, iterate_in_thread
from streams.jobs.exceptions import JobStartError
from streams.jobs.launcher import LogLine, StreamName
from streams.jobs.model import JobRequest

log = logging.getLogger(__name__)
LABEL_PREFIX = "labstream."


class DockerSettings(BaseSettings):
    """Docker backend (LABSTREAM_JOBS_DOCKER_*; the daemon address is DOCKER_HOST)."""

    model_config = SettingsConfigDict(
        env_prefix="LABSTREAM_JOBS_DOCKER_", frozen=True, extra="ignore"
    )

    network: str | None = Field(default=None, description="Network to attach job containers to.")
    auto_remove: bool = Field(
        default=False, description="Docker AutoRemove (loses exit code/logs of very fast jobs)."
    )
    memory: str | None = Field(default=None, description="Memory limit per job, e.g. 2g.")


def job_labels(request: JobRequest, job_id: str) -> dict[str, str]:
    labels = {
        f"{LABEL_PREFIX}job-id": job_id,
        f"{LABEL_PREFIX}job-key": request.job_key,
        f"{LABEL_PREFIX}rule-id": request.rule_id,
        f"{LABEL_PREFIX}tenant-id": request.tenant_id,
    }
    if request.trace_id:
        labels[f"{LABEL_PREFIX}trace-id"] = request.trace_id
    return labels


class DockerLauncher:
    """`JobLauncher` for backend 'docker'."""

    name = "docker"

    def __init__(self, client: docker.DockerClient, settings: DockerSettings | None = None) -> None:
        self._client = client
        self._settings = settings or DockerSettings()

    def stop_abandoned(self, backend_ref: str) -> bool:
        """Remove (kill first) the container of an attempt whose runner is gone."""
        container_id = backend_ref.removeprefix("container:")
        try:
            self._client.containers.get(container_id).remove(force=True)
        except docker.errors.NotFound:
            return False
        return True

    @classmethod
    def from_environment(cls) -> DockerLauncher:
        # DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH as the docker CLI reads them
        return cls(docker.from_env())

    def run_arguments(
        self, request: JobRequest, job_id: str, env: Mapping[str, str]
    ) -> dict[str, Any]:
        """Keyword arguments of `containers.run` for this job."""
        arguments: dict[str, Any] = {
            "image": request.image,
            "command": list(request.command),
            "environment": dict(env),
            "labels": job_labels(request, job_id),
            "name": f"labstream-{job_id}",
            "detach": True,
            "auto_remove": self._settings.auto_remove,
            "stdin_open": False,
            "tty": False,  # keeps stdout and stderr apart
        }
        if self._settings.network:
            arguments["network"] = self._settings.network
        if self._settings.memory:
            arguments["mem_limit"] = self._settings.memory
        return arguments

    async def start(
        self, request: JobRequest, *, job_id: str, workdir: Path, env: Mapping[str, str]
    ) -> DockerJob:
        arguments = self.run_arguments(request, job_id, env)
        try:
            container = await asyncio.to_thread(self._client.containers.run, **arguments)
        except (docker.errors.DockerException, OSError) as exc:
            raise JobStartError(
                f"docker could not start job {job_id} (image {request.image!r}): {exc}",
                hint="check DOCKER_HOST, that the image exists and can be pulled",
            ) from exc
        return DockerJob(container)


class DockerJob:
    """A running container (`RunningJob`)."""

    def __init__(self, container: Any) -> None:
        self._container = container
        self._exit: asyncio.Future[Any] | None = None

    @property
    def backend_ref(self) -> str:
        return f"container:{self._container.id}"

    async def _stream(self, stream: StreamName) -> AsyncIterator[LogLine]:
        def follow() -> Any:
            return self._container.logs(
                stream=True, follow=True, stdout=stream == "stdout", stderr=stream == "stderr"
            )

        splitter = LineSplitter()
        async for chunk in iterate_in_thread(follow, f"docker-logs-{stream}"):
            for line in splitter.feed(chunk):
                yield stream, line
        for line in splitter.rest():
            yield stream, line

    async def lines(self) -> AsyncIterator[LogLine]:
        queue: asyncio.Queue[LogLine | None] = asyncio.Queue()

        async def pump(stream: StreamName) -> None:
            try:
                async for item in self._stream(stream):
                    await queue.put(item)
            except (docker.errors.DockerException, OSError) as exc:
                # e.g. an AutoRemove container gone before its logs were attached
                kv(
                    log,
                    "warning",
                    "docker log stream ended early",
                    stream=stream,
                    container=self._container.id,
                    error=str(exc),
                )
            finally:
                await queue.put(None)

        pumps = [asyncio.create_task(pump("stdout")), asyncio.create_task(pump("stderr"))]
        try:
            open_streams = len(pumps)
            while open_streams:
                item = await queue.get()
                if item is None:
                    open_streams -= 1
                else:
                    yield item
        finally:
            for task in pumps:
                task.cancel()

    async def wait(self, timeout: float) -> int:
        if self._exit is None:
            self._exit = in_thread(self._container.wait, "docker-wait")
        result = await asyncio.wait_for(asyncio.shield(self._exit), timeout)
        return int(result.get("StatusCode", -1))

    async def kill(self) -> None:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            await asyncio.to_thread(self._container.kill)

    async def close(self) -> None:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            await asyncio.to_thread(self._container.remove, force=True)
