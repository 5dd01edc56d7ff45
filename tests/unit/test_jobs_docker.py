"""Docker backend: the Docker SDK against a fake Docker Engine API server on 127.0.0.1.

Not a real daemon: the fake answers create/start/inspect/logs/wait/kill/delete
and records each request, so the tests check what the SDK sends for our job.
"""

from __future__ import annotations

import asyncio
import json
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import docker
import pytest

from streams.jobs.backends.docker import DockerLauncher, DockerSettings
from streams.jobs.exceptions import JobStartError
from streams.jobs.model import JobRequest

NO_WORKDIR = Path("/nonexistent")  # container backends do not use the worker's temp dir
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
API_VERSION = "1.43"
CONTAINER_ID = "c0ffee" * 10 + "abcd"
ENV = {"TRACEPARENT": TRACEPARENT, "LABSTREAM_JOB_ID": "job-abc", "RUN_ID": "run-1"}


def frame(stream: int, payload: bytes) -> bytes:
    # the Engine's multiplexed log format: stream type, 3 zero bytes, big-endian size
    return struct.pack(">BxxxL", stream, len(payload)) + payload


class FakeEngine:
    def __init__(self, *, create_status: int = 201, exit_code: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.create_status = create_status
        self.exit_code = exit_code
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                path = parts.path.removeprefix(f"/v{API_VERSION}")
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = {
                    "method": self.command,
                    "path": path,
                    "query": parse_qs(parts.query),
                    "body": json.loads(raw) if raw else None,
                }
                engine.requests.append(request)
                status, payload, content_type = engine.answer(request)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, request: dict[str, Any]) -> tuple[int, bytes, str]:
        method, path = request["method"], request["path"]
        as_json = "application/json"
        container = f"/containers/{CONTAINER_ID}"
        if (method, path) == ("POST", "/containers/create"):
            if self.create_status != 201:
                return self.create_status, b'{"message": "no such image"}', as_json
            return 201, json.dumps({"Id": CONTAINER_ID, "Warnings": []}).encode(), as_json
        if (method, path) == ("GET", f"{container}/json"):
            attrs = {"Id": CONTAINER_ID, "Name": "/x", "Config": {"Tty": False}, "State": {}}
            return 200, json.dumps(attrs).encode(), as_json
        if method == "POST" and path in (f"{container}/start", f"{container}/kill"):
            return 204, b"", as_json
        if (method, path) == ("GET", f"{container}/logs"):
            if request["query"].get("stdout") == ["1"]:
                body = frame(1, b"line one\nline t") + frame(1, b"wo\n") + frame(1, b"tail")
            else:
                body = frame(2, b"warning: low signal\n")
            return 200, body, "application/vnd.docker.multiplexed-stream"
        if (method, path) == ("POST", f"{container}/wait"):
            return 200, json.dumps({"StatusCode": self.exit_code}).encode(), as_json
        if (method, path) == ("DELETE", container):
            return 204, b"", as_json
        return 404, b'{"message": "not found"}', as_json

    @property
    def client(self) -> docker.DockerClient:
        port = self.server.server_address[1]
        return docker.DockerClient(base_url=f"tcp://127.0.0.1:{port}", version=API_VERSION)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def find(self, method: str, path: str) -> dict[str, Any]:
        return next(r for r in self.requests if (r["method"], r["path"]) == (method, path))


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine(exit_code=4)
    yield fake
    fake.close()


def make_request() -> JobRequest:
    return JobRequest(
        job_key="hplc/lab.public.runs/0/3",
        rule_id="hplc-summary",
        tenant_id="acme",
        experiment_id="exp-1",
        backend="docker",
        image="ghcr.io/acme/hplc:1.2",
        command=("python", "-m", "hplc"),
        env={},
        timeout_s=60,
        max_concurrency=1,
        source_topic=None,
        source_partition=None,
        source_offset=None,
        traceparent=TRACEPARENT,
        tracestate=None,
    )


def test_create_and_start_bodies_then_logs_wait_and_remove(engine):
    launcher = DockerLauncher(engine.client, DockerSettings(network="labnet", memory="512m"))

    async def scenario() -> tuple[int, list, str]:
        running = await launcher.start(
            make_request(), job_id="job-abc", workdir=NO_WORKDIR, env=ENV
        )
        lines = [item async for item in running.lines()]
        exit_code = await running.wait(5)
        await running.close()
        return exit_code, lines, running.backend_ref

    exit_code, lines, backend_ref = asyncio.run(scenario())

    create = engine.find("POST", "/containers/create")
    assert create["query"]["name"] == ["labstream-job-abc"]
    body = create["body"]
    assert body["Image"] == "ghcr.io/acme/hplc:1.2"
    assert body["Cmd"] == ["python", "-m", "hplc"]
    assert sorted(body["Env"]) == sorted(f"{k}={v}" for k, v in ENV.items())
    assert body["Labels"] == {
        "labstream.job-id": "job-abc",
        "labstream.job-key": "hplc/lab.public.runs/0/3",
        "labstream.rule-id": "hplc-summary",
        "labstream.tenant-id": "acme",
        "labstream.trace-id": "4bf92f3577b34da6a3ce929d0e0e4736",
    }
    assert body["Tty"] is False
    assert not body["HostConfig"].get("AutoRemove")  # removed by close(), see the module doc
    assert body["HostConfig"]["NetworkMode"] == "labnet"
    assert body["HostConfig"]["Memory"] == 512 * 1024 * 1024
    assert engine.find("POST", f"/containers/{CONTAINER_ID}/start")

    assert sorted(lines) == sorted(
        [
            ("stdout", "line one"),
            ("stdout", "line two"),
            ("stdout", "tail"),
            ("stderr", "warning: low signal"),
        ]
    )
    assert [line for stream, line in lines if stream == "stdout"] == [
        "line one",
        "line two",
        "tail",
    ]
    log_requests = [r for r in engine.requests if r["path"].endswith("/logs")]
    assert all(r["query"]["follow"] == ["1"] for r in log_requests)
    assert exit_code == 4
    assert backend_ref == f"container:{CONTAINER_ID}"
    delete = engine.find("DELETE", f"/containers/{CONTAINER_ID}")
    assert delete["query"]["force"] == ["True"]


def test_kill_posts_kill(engine):
    launcher = DockerLauncher(engine.client)

    async def scenario() -> None:
        running = await launcher.start(
            make_request(), job_id="job-abc", workdir=NO_WORKDIR, env=ENV
        )
        await running.kill()

    asyncio.run(scenario())
    assert engine.find("POST", f"/containers/{CONTAINER_ID}/kill")


def test_create_refused_is_a_start_error():
    fake = FakeEngine(create_status=500)
    try:
        launcher = DockerLauncher(fake.client)
        with pytest.raises(JobStartError, match="docker could not start job job-abc"):
            asyncio.run(
                launcher.start(make_request(), job_id="job-abc", workdir=NO_WORKDIR, env=ENV)
            )
    finally:
        fake.close()


def test_auto_remove_setting_reaches_the_host_config(engine):
    launcher = DockerLauncher(engine.client, DockerSettings(auto_remove=True))
    asyncio.run(launcher.start(make_request(), job_id="job-abc", workdir=NO_WORKDIR, env=ENV))
    assert engine.find("POST", "/containers/create")["body"]["HostConfig"]["AutoRemove"] is True


def test_an_abandoned_attempts_container_is_removed_by_the_taker(engine):
    launcher = DockerLauncher(engine.client)
    assert launcher.stop_abandoned(f"container:{CONTAINER_ID}") is True
    removed = engine.find("DELETE", f"/containers/{CONTAINER_ID}")
    assert removed["query"]["force"] == ["True"]  # killed first if it still runs
    assert launcher.stop_abandoned("container:gone") is False  # 404: nothing left to stop
