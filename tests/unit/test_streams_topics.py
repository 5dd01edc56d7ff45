from __future__ import annotations

import pytest

from streams.config import WorkerSettings
from streams.topics import worker_topics


def test_topic_names_follow_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABSTREAM_WORKER_APP_ID", "w-test")
    monkeypatch.setenv("LABSTREAM_WORKER_CDC_PREFIX", "t1")
    monkeypatch.setenv("LABSTREAM_WORKER_ROUTED_PREFIX", "t1.routed")
    monkeypatch.setenv("LABSTREAM_WORKER_DECISIONS_TOPIC", "t1.decisions")
    topics = worker_topics(WorkerSettings())
    assert topics.dlq == "w-test.dlq"
    assert topics.decisions == "t1.decisions"
    assert topics.routed_topics["hplc.completed"] == "t1.routed.hplc.completed"
    assert set(topics.event_topics) == {f"t1.public.{t}" for t in
                                        ("runs", "experiments", "inventory_items",
                                         "sensor_readings")}
    assert "t1.public.trigger_rules" in topics.reference_topics
    assert len(topics.all_names) == len(set(topics.all_names)) == 16


def test_defaults_match_the_documented_contract() -> None:
    settings = WorkerSettings()
    topics = worker_topics(settings)
    assert settings.app_id == "labstream-worker" and topics.dlq == "labstream-worker.dlq"
    assert topics.decisions == "lab.decisions"
    assert topics.routed_topics["fridge.excursion"] == "lab.routed.fridge.excursion"
