"""--rerun-succeeded travels as a header; the worker's handler passes it to the job runner."""

from __future__ import annotations

import asyncio
from typing import Any

from replay.headers import RERUN_SUCCEEDED, build_replay_headers
from streams.agents import RawRecord, RecordHandler, rerun_succeeded_requested
from streams.config import WorkerSettings
from streams.records import ChangeEnvelope, ChangeRecord
from streams.reference import ReferenceStore
from streams.topics import worker_topics


class Decoder:
    async def decode_async(self, key: Any, value: Any, coordinates: Any, headers: Any) -> Any:
        row = {
            "id": "run-1",
            "experiment_id": "exp-1",
            "instrument_id": "hplc-01",
            "status": "completed",
        }
        envelope = ChangeEnvelope.from_value(
            {
                "op": "u",
                "before": dict(row, status="running"),
                "after": row,
                "source": {"table": "runs", "lsn": 9},
            }
        )
        return ChangeRecord(envelope, {"id": "run-1"}, coordinates, headers)


class Serializer:
    def value(self, event: Any) -> bytes:
        return b"routed"


class Sink:
    async def send(self, topic: str, key: Any, value: Any, headers: Any) -> None:
        return None


class Runner:
    def __init__(self) -> None:
        self.requests: list[Any] = []

    async def submit(self, request: Any) -> Any:
        self.requests.append(request)

        class Result:
            job_id, created, status = "job-1", True, "queued"

        return Result()


def handle(headers: list[tuple[str, bytes]]) -> Any:
    settings = WorkerSettings(enrichment_wait_s=0)
    store = ReferenceStore()
    store.put("experiments", {"id": "exp-1", "tenant_id": "acme", "kind": "hplc"})
    store.put("instruments", {"id": "hplc-01", "kind": "hplc", "name": "HPLC 1"})
    store.put("tenants", {"id": "acme"})
    store.put(
        "trigger_rules",
        {"id": "peaks", "event_kind": "hplc.completed", "command": '["echo", "{payload.run_id}"]'},
    )
    runner = Runner()
    handler = RecordHandler(
        settings=settings,
        topics=worker_topics(settings),
        store=store,
        decoder=Decoder(),
        routed_serializer=Serializer(),  # type: ignore[arg-type]
        sink=Sink(),
        runner=runner,
    )
    asyncio.run(handler.handle(RawRecord("lab.public.runs", 0, 5, b"k", b"v", tuple(headers))))
    return runner.requests


def test_the_header_names_agree() -> None:
    headers = build_replay_headers(
        [], replay_id="rp-1", original_coordinates="t/0/1", rerun_succeeded=True
    )
    assert (RERUN_SUCCEEDED, b"true") in headers
    assert rerun_succeeded_requested(tuple(headers))
    assert not rerun_succeeded_requested(
        tuple(build_replay_headers([], replay_id="rp-1", original_coordinates="t/0/1"))
    )


def test_handler_asks_the_runner_to_rerun_only_when_the_replay_said_so() -> None:
    (plain,) = handle([])
    assert plain.rerun_succeeded is False
    (replayed,) = handle([("labstream-replay-id", b"rp-1"), (RERUN_SUCCEEDED, b"true")])
    assert replayed.rerun_succeeded is True
    assert replayed.job_key == plain.job_key  # same event identity: same job
