"""--rerun-succeeded travels as a signed header; the worker's handler passes it to the job
runner only when the signature holds for the very record (streams/replay_consent.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from base.errors import ConfigError
from replay.headers import RERUN_SUCCEEDED, build_replay_headers
from streams.agents import RawRecord, RecordHandler
from streams.config import WorkerSettings
from streams.records import ChangeEnvelope, ChangeRecord
from streams.reference import ReferenceStore
from streams.replay_consent import consented, sign
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


KEY = b"k" * 32


@pytest.fixture(autouse=True)
def consent_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABSTREAM_REPLAY_CONSENT_KEY", KEY.decode())


def handle(headers: list[tuple[str, bytes]], value: bytes = b"v") -> Any:
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
    asyncio.run(handler.handle(RawRecord("lab.public.runs", 0, 5, b"k", value, tuple(headers))))
    return runner.requests


def test_replay_signs_the_consent_over_the_record_it_produces() -> None:
    headers = build_replay_headers(
        [], replay_id="rp-1", original_coordinates="t/0/1", rerun_succeeded=True,
        record_key=b"k", record_value=b"v",
    )
    [value] = [v for name, v in headers if name == RERUN_SUCCEEDED]
    assert value.startswith(b"v1.") and value != b"true"
    assert consented(headers, key=KEY, record_key=b"k", record_value=b"v")
    # another record, another key, or none: no consent
    assert not consented(headers, key=KEY, record_key=b"k", record_value=b"other")
    assert not consented(headers, key=b"x" * 32, record_key=b"k", record_value=b"v")
    assert not consented(headers, key=None, record_key=b"k", record_value=b"v")
    plain = build_replay_headers([], replay_id="rp-1", original_coordinates="t/0/1")
    assert not consented(plain, key=KEY, record_key=b"k", record_value=b"v")


def test_an_expired_consent_is_refused() -> None:
    value = sign(KEY, replay_id="rp-1", record_key=b"k", record_value=b"v", ttl_s=60, now=1000)
    headers = [("labstream-replay-id", b"rp-1"), (RERUN_SUCCEEDED, value)]
    assert consented(headers, key=KEY, record_key=b"k", record_value=b"v", now=1059)
    assert not consented(headers, key=KEY, record_key=b"k", record_value=b"v", now=1061)


def test_rerun_succeeded_without_a_key_refuses_to_start(monkeypatch) -> None:
    monkeypatch.delenv("LABSTREAM_REPLAY_CONSENT_KEY")
    with pytest.raises(ConfigError, match="LABSTREAM_REPLAY_CONSENT_KEY"):
        build_replay_headers([], replay_id="rp-1", original_coordinates="t/0/1",
                             rerun_succeeded=True, record_key=b"k", record_value=b"v")


def test_handler_asks_the_runner_to_rerun_only_when_the_replay_signed_it() -> None:
    (plain,) = handle([])
    assert plain.rerun_succeeded is False
    signed = sign(KEY, replay_id="rp-1", record_key=b"k", record_value=b"v")
    (replayed,) = handle([("labstream-replay-id", b"rp-1"), (RERUN_SUCCEEDED, signed)])
    assert replayed.rerun_succeeded is True
    assert replayed.job_key == plain.job_key  # same event identity: same job


def test_handler_ignores_a_forged_or_moved_consent() -> None:
    """Regression (issue 14): any producer could force a re-run with `...: true`."""
    (forged,) = handle([("labstream-replay-id", b"rp-1"), (RERUN_SUCCEEDED, b"true")])
    assert forged.rerun_succeeded is False
    signed = sign(KEY, replay_id="rp-1", record_key=b"k", record_value=b"v")
    (moved,) = handle([("labstream-replay-id", b"rp-1"), (RERUN_SUCCEEDED, signed)],
                      value=b"another record")
    assert moved.rerun_succeeded is False
