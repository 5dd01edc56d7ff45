"""Kubernetes backend: the V1Job's shape, and the client's calls against a fake API server.

Not a real cluster: a tiny HTTP server on 127.0.0.1 answers the few endpoints the
backend calls and records each request (method, path, query, JSON body).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client as k8s

from streams.jobs.backends.kubernetes import (
    KubernetesLauncher,
    KubernetesSettings,
    build_job,
    job_name,
)
from streams.jobs.exceptions import JobStartError
from streams.jobs.model import JobRequest

NO_WORKDIR = Path("/nonexistent")  # container backends do not use the worker's temp dir
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
Route = Callable[[dict[str, Any]], tuple[int, Any]]


def make_request(**overrides: object) -> JobRequest:
    fields: dict[str, Any] = {
        "job_key": "hplc-summary/lab.public.runs/0/17",
        "rule_id": "hplc-summary",
        "tenant_id": "acme",
        "experiment_id": "exp-9",
        "backend": "kubernetes",
        "image": "ghcr.io/acme/hplc:1.2",
        "command": ("python", "-m", "hplc", "--run", "run-1"),
        "env": {"MODE": "fast"},
        "timeout_s": 90.5,
        "max_concurrency": 2,
        "source_topic": "lab.public.runs",
        "source_partition": 0,
        "source_offset": 17,
        "traceparent": TRACEPARENT,
        "tracestate": None,
    }
    fields.update(overrides)
    return JobRequest(**fields)


ENV = {"MODE": "fast", "TRACEPARENT": TRACEPARENT, "LABSTREAM_JOB_ID": "job-abc"}
SETTINGS = KubernetesSettings(namespace="lab-jobs", ttl_after_finished_s=600)


class FakeApiServer:
    def __init__(self, routes: dict[tuple[str, str], Route]) -> None:
        self.requests: list[dict[str, Any]] = []
        self.routes = routes
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                recorded = {
                    "method": self.command,
                    "path": parts.path,
                    "query": parse_qs(parts.query),
                    "body": json.loads(raw) if raw else None,
                }
                fake.requests.append(recorded)
                route = fake.routes.get((self.command, parts.path))
                status, payload = route(recorded) if route else (404, {"kind": "Status"})
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_api() -> Iterator[Callable[[dict[tuple[str, str], Route]], FakeApiServer]]:
    servers: list[FakeApiServer] = []

    def start(routes: dict[tuple[str, str], Route]) -> FakeApiServer:
        servers.append(FakeApiServer(routes))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def api_client(server: FakeApiServer) -> k8s.ApiClient:
    configuration = k8s.Configuration(host=server.url)
    return k8s.ApiClient(configuration)


def test_v1job_shape():
    job = build_job(make_request(), job_id="job-abc", env=ENV, settings=SETTINGS)
    body = k8s.ApiClient().sanitize_for_serialization(job)
    assert body["apiVersion"] == "batch/v1" and body["kind"] == "Job"
    assert body["metadata"]["name"] == "labstream-job-abc"
    assert body["metadata"]["namespace"] == "lab-jobs"
    assert body["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "labstream",
        "labstream.io/job-id": "job-abc",
        "labstream.io/rule-id": "hplc-summary",
        "labstream.io/tenant-id": "acme",
    }
    assert body["metadata"]["annotations"]["labstream.io/traceparent"] == TRACEPARENT
    spec = body["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 91  # rounded up, never shorter than asked
    assert spec["ttlSecondsAfterFinished"] == 600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/acme/hplc:1.2"
    assert container["command"] == ["python", "-m", "hplc", "--run", "run-1"]
    assert {item["name"]: item["value"] for item in container["env"]} == ENV


def test_label_values_are_made_valid():
    job = build_job(
        make_request(rule_id="rule with spaces/and-slash", tenant_id="x" * 80),
        job_id="job-abc",
        env={},
        settings=SETTINGS,
    )
    assert job.metadata is not None and job.metadata.labels is not None
    labels = job.metadata.labels
    assert labels["labstream.io/rule-id"] == "rule_with_spaces_and-slash"
    assert len(labels["labstream.io/tenant-id"]) == 63


def test_full_lifecycle_against_fake_api_server(fake_api):
    name = job_name("job-abc")
    pods = {
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": [
            {
                "metadata": {"name": f"{name}-xyz", "labels": {"job-name": name}},
                "status": {
                    "phase": "Succeeded",
                    "containerStatuses": [
                        {
                            "name": "job",
                            "image": "img",
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "state": {"terminated": {"exitCode": 3}},
                        }
                    ],
                },
            }
        ],
    }
    base = "/apis/batch/v1/namespaces/lab-jobs/jobs"
    # the first log request comes too early (container still creating): asked again
    log_answers: list[Route] = [
        lambda req: (400, {"kind": "Status", "code": 400, "reason": "BadRequest"}),
        lambda req: (200, b"first line\nsecond line\npartial"),
    ]
    server = fake_api(
        {
            ("POST", base): lambda req: (201, req["body"]),
            ("GET", f"{base}/{name}/status"): lambda req: (
                200,
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {"name": name},
                    "status": {"failed": 1},
                },
            ),
            ("GET", "/api/v1/namespaces/lab-jobs/pods"): lambda req: (200, pods),
            ("GET", f"/api/v1/namespaces/lab-jobs/pods/{name}-xyz/log"): (
                lambda req: log_answers.pop(0)(req)
            ),
        }
    )
    launcher = KubernetesLauncher(
        api_client(server), KubernetesSettings(namespace="lab-jobs", poll_s=0.05)
    )

    async def scenario() -> tuple[int, list, str]:
        running = await launcher.start(
            make_request(), job_id="job-abc", workdir=NO_WORKDIR, env=ENV
        )
        lines = [item async for item in running.lines()]
        exit_code = await running.wait(5)
        await running.close()
        return exit_code, lines, running.backend_ref

    exit_code, lines, backend_ref = asyncio.run(scenario())
    assert exit_code == 3
    assert lines == [("stdout", "first line"), ("stdout", "second line"), ("stdout", "partial")]
    assert backend_ref == f"job:lab-jobs/{name}"
    create = server.requests[0]
    assert (create["method"], create["path"]) == ("POST", base)
    assert create["body"]["spec"]["template"]["spec"]["containers"][0]["command"][0] == "python"
    assert create["body"]["spec"]["activeDeadlineSeconds"] == 91
    log_requests = [r for r in server.requests if r["path"].endswith("/log")]
    assert len(log_requests) == 2 and not log_answers
    log_request = log_requests[-1]
    assert log_request["query"]["follow"] == ["true"]
    assert log_request["query"]["container"] == ["job"]
    pod_list = next(r for r in server.requests if r["path"].endswith("/pods"))
    assert pod_list["query"]["labelSelector"] == [f"batch.kubernetes.io/job-name={name}"]
    # a finished Job is left for ttlSecondsAfterFinished, not deleted
    assert not [r for r in server.requests if r["method"] == "DELETE"]


def test_kill_deletes_the_job_with_its_pods(fake_api):
    name = job_name("job-abc")
    base = "/apis/batch/v1/namespaces/lab-jobs/jobs"
    server = fake_api(
        {
            ("POST", base): lambda req: (201, req["body"]),
            ("DELETE", f"{base}/{name}"): lambda req: (
                200,
                {"kind": "Status", "status": "Success"},
            ),
        }
    )
    launcher = KubernetesLauncher(api_client(server), KubernetesSettings(namespace="lab-jobs"))

    async def scenario() -> None:
        running = await launcher.start(
            make_request(), job_id="job-abc", workdir=NO_WORKDIR, env=ENV
        )
        await running.kill()

    asyncio.run(scenario())
    delete = server.requests[-1]
    assert (delete["method"], delete["path"]) == ("DELETE", f"{base}/{name}")
    assert delete["query"]["propagationPolicy"] == ["Background"]


def test_refused_create_is_a_start_error(fake_api):
    base = "/apis/batch/v1/namespaces/lab-jobs/jobs"
    server = fake_api({("POST", base): lambda req: (403, {"kind": "Status", "code": 403})})
    launcher = KubernetesLauncher(api_client(server), KubernetesSettings(namespace="lab-jobs"))
    with pytest.raises(JobStartError, match="403"):
        asyncio.run(launcher.start(make_request(), job_id="job-abc", workdir=NO_WORKDIR, env=ENV))


def test_an_abandoned_attempts_job_is_deleted_with_its_pods_by_the_taker(fake_api):
    base = "/apis/batch/v1/namespaces/lab-jobs/jobs"
    server = fake_api({("DELETE", f"{base}/lab-job-1"): lambda req: (
        200, {"kind": "Status", "status": "Success"})})
    launcher = KubernetesLauncher(api_client(server), KubernetesSettings(namespace="lab-jobs"))
    assert launcher.stop_abandoned("job:lab-jobs/lab-job-1") is True
    delete = server.requests[-1]
    assert (delete["method"], delete["path"]) == ("DELETE", f"{base}/lab-job-1")
    assert delete["query"]["propagationPolicy"] == ["Foreground"]  # pods gone first
    assert launcher.stop_abandoned("job:lab-jobs/gone") is False  # 404
