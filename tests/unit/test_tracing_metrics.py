"""Health checks and the /metrics, /healthz, /readyz server (tracing.health, tracing.metrics)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from base.errors import ConfigError
from tracing import health, metrics


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_readiness_names_the_failing_checks() -> None:
    def boom() -> str | None:
        raise ConnectionError("connection refused\nmore detail")

    checks = health.HealthChecks("svc", live={"loop": lambda: None},
                                 ready={"db": boom, "slot": lambda: "slot x is not active",
                                        "kafka": lambda: None})
    assert checks.run("live") == (200, {"service": "svc", "status": "ok",
                                        "checks": {"loop": {"ok": True}}})
    status, body = checks.run("ready")
    assert status == 503 and body["status"] == "failing"
    assert body["checks"]["db"] == {"ok": False,
                                    "reason": "ConnectionError: connection refused"}
    assert body["checks"]["slot"] == {"ok": False, "reason": "slot x is not active"}
    assert body["checks"]["kafka"] == {"ok": True}


def test_a_hanging_check_fails_within_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "CHECK_TIMEOUT_S", 0.2)
    checks = health.HealthChecks("svc", ready={"db": lambda: time.sleep(2)})  # type: ignore
    started = time.monotonic()
    status, body = checks.run("ready")
    assert time.monotonic() - started < 1.5
    assert status == 503 and "no answer within" in body["checks"]["db"]["reason"]


def test_the_server_answers_metrics_health_and_readiness() -> None:
    values = {"labstream_test_records_total": 42, "labstream_test_lag": {("t", "0"): 7.0}}
    metrics.register_collector("test", metrics.CallbackCollector(lambda: values, {
        "labstream_test_records_total": ("counter", "records", ()),
        "labstream_test_lag": ("gauge", "lag", ("topic", "partition")),
    }))
    ready: list[str | None] = ["not yet"]
    server = health.serve(0, health.HealthChecks("svc", live={"loop": lambda: None},
                                                 ready={"work": lambda: ready[0]}),
                          host="127.0.0.1")
    assert server is not None
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, body = get(f"{base}/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        assert families["labstream_test_records"].samples[0].value == 42
        [lag] = families["labstream_test_lag"].samples
        assert lag.labels == {"topic": "t", "partition": "0"} and lag.value == 7.0
        assert "labstream_spans_dropped" in families and "process_cpu_seconds" in families
        assert get(f"{base}/healthz")[0] == 200
        status, body = get(f"{base}/readyz")
        assert status == 503 and json.loads(body)["checks"]["work"]["reason"] == "not yet"
        ready[0] = None
        assert get(f"{base}/readyz")[0] == 200
        assert get(f"{base}/nope")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_a_failing_metrics_source_does_not_fail_the_scrape() -> None:
    def down() -> dict:
        raise OSError("database down")

    metrics.register_collector("test-down", metrics.CallbackCollector(down, {
        "labstream_test_down": ("gauge", "x", ())}))
    assert REGISTRY.get_sample_value("labstream_test_down") is None
    assert REGISTRY.get_sample_value("process_cpu_seconds_total") is not None


def test_registering_again_replaces_the_collector() -> None:
    for value in (1, 2):
        metrics.register_collector("test-again", metrics.CallbackCollector(
            lambda v=value: {"labstream_test_again": v},
            {"labstream_test_again": ("gauge", "x", ())}))
    assert REGISTRY.get_sample_value("labstream_test_again") == 2


def test_a_port_in_use_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    first = health.serve(0, health.HealthChecks("a"), host="127.0.0.1")
    assert first is not None
    try:
        assert health.serve(first.server_address[1], health.HealthChecks("b"),
                            host="127.0.0.1") is None
        assert any("metrics endpoint not started" in r.getMessage() for r in caplog.records)
    finally:
        first.shutdown()
        first.server_close()


@pytest.mark.parametrize(("raw", "port"), [("", None), ("off", None), ("0", 0), ("9464", 9464)])
def test_metrics_port(monkeypatch: pytest.MonkeyPatch, raw: str, port: int | None) -> None:
    monkeypatch.setenv("LABSTREAM_METRICS_PORT", raw)
    assert metrics.metrics_port() == port


def test_a_bad_metrics_port_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABSTREAM_METRICS_PORT", "http")
    with pytest.raises(ConfigError, match="LABSTREAM_METRICS_PORT"):
        metrics.metrics_port()


def test_commit_to_kafka_is_observed_once_per_transaction() -> None:
    name = "labstream_cdc_commit_to_kafka_seconds"

    def sample(suffix: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name + suffix, labels) or 0.0

    # the registry is process-wide (other tests observe too): compare deltas
    before = {"count": sample("_count"), "0.1": sample("_bucket", le="0.1"),
              "0.25": sample("_bucket", le="0.25"), "1.0": sample("_bucket", le="1.0")}
    metrics.observe_commit_to_kafka(int((time.time() - 0.3) * 1e6))
    metrics.observe_commit_to_kafka(None)  # heartbeats and snapshots have no commit time
    assert sample("_count") == before["count"] + 1
    # 0.3 s lands above the 0.1 and 0.25 buckets and within 1 s
    assert sample("_bucket", le="0.1") == before["0.1"]
    assert sample("_bucket", le="0.25") == before["0.25"]
    assert sample("_bucket", le="1.0") == before["1.0"] + 1
