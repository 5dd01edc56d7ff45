"""Scrape the real connector's and worker's /metrics, /healthz and /readyz.

`labstream cdc run` and `labstream worker` run as subprocesses with
LABSTREAM_METRICS_PORT=0 (a free port each, read back from their logs); a tenant, an
instrument, a rule and a completed HPLC run go through them, then the scrapes must show
the records, the commit->Kafka histogram, the slot lag, the consumer lag per partition,
the job queue per tenant and the job's outcome.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from explain_helpers import Chain, chain, execute, wait_for
from service_signals import get, metrics_base, scrape, value

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab_chain(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    saved = os.environ.get("LABSTREAM_METRICS_PORT")
    os.environ["LABSTREAM_METRICS_PORT"] = "0"  # the subprocesses inherit it
    try:
        with chain(stack.database_url, stack.kafka_bootstrap, tmp_path_factory.mktemp("m"),
                   otlp_endpoint=None) as running:
            yield running
    finally:
        if saved is None:
            os.environ.pop("LABSTREAM_METRICS_PORT", None)
        else:
            os.environ["LABSTREAM_METRICS_PORT"] = saved


def endpoint(lab_chain: Chain, what: str) -> str:
    def base() -> str | None:
        path = lab_chain.log_dir / f"{what}.log"
        return metrics_base(path.read_text(errors="replace")) if path.exists() else None

    return str(wait_for(base, 30, f"the {what} metrics endpoint in its log"))


def test_connector_and_worker_metrics_and_health(lab_chain: Chain) -> None:
    cdc, worker = endpoint(lab_chain, "cdc"), endpoint(lab_chain, "worker")
    tenant, instrument = lab_chain.tenant(), lab_chain.instrument()
    rule = lab_chain.rule(tenant, [sys.executable, "-c", "print('ok')"])
    experiment = f"exp-{uuid.uuid4().hex[:10]}"
    execute(lab_chain.database_url, "INSERT INTO public.experiments (id, tenant_id, kind, "
            "submitted_by) VALUES (%s, %s, 'hplc', 'ada')", (experiment, tenant))
    lab_chain.complete_run(experiment, instrument, None, None)
    job = lab_chain.job_of(experiment, rule)
    assert job["status"] == "succeeded", job

    # the connector: records, bytes, commit -> Kafka, slot lag, phase; ready and alive
    # slot lag in seconds needs the offsets row's commit time, written once a second
    # (LABSTREAM_CDC_OFFSETS_INTERVAL_MS): a fast job can finish before the first write
    def with_lag_seconds() -> dict | None:
        found = scrape(cdc)
        return found if value(found, "labstream_cdc_slot_lag_seconds") is not None else None

    samples = wait_for(with_lag_seconds, 30, "the connector to record an acknowledged commit")
    assert value(samples, "labstream_cdc_records_total") >= 4
    assert value(samples, "labstream_cdc_bytes_total") > 100
    assert value(samples, "labstream_cdc_commit_to_kafka_seconds_count") >= 4
    assert value(samples, "labstream_cdc_slot_lag_bytes") is not None
    assert value(samples, "labstream_cdc_slot_lag_seconds") is not None
    assert value(samples, "labstream_cdc_slot_active") == 1.0
    assert value(samples, "labstream_cdc_phase", phase="streaming") == 1.0
    assert value(samples, "labstream_spans_dropped_total", exporter="db",
                 reason="queue_full") in (None, 0.0)
    status, body = get(f"{cdc}/readyz")
    assert status == 200, body
    assert set(json.loads(body)["checks"]) == {"phase", "slot"}
    assert get(f"{cdc}/healthz")[0] == 200

    # the worker: records, consumer lag per partition, the job's outcome and duration
    samples = scrape(worker)
    assert value(samples, "labstream_worker_records_total", outcome="processed") >= 1
    assert value(samples, "labstream_dlq_records_total") == 0.0

    def lags() -> dict[str, float] | None:  # once the group committed (Faust: every few s)
        found = {dict(labels)["topic"]: v for (name, labels), v in scrape(worker).items()
                 if name == "labstream_worker_consumer_lag"}
        return found if f"{lab_chain.name}.public.runs" in found else None

    lag = wait_for(lags, 60, "the worker's consumer lag on the runs topic")
    assert all(v >= 0 for v in lag.values())
    assert value(samples, "labstream_job_outcomes_total", tenant=tenant,
                 outcome="succeeded") == 1.0
    assert value(samples, "labstream_job_duration_seconds_count", backend="local",
                 outcome="succeeded") >= 1
    assert value(samples, "labstream_job_queue_wait_seconds_count", tenant=tenant) == 1.0
    status, body = get(f"{worker}/readyz")
    assert status == 200, body
    assert set(json.loads(body)["checks"]) == {"database", "kafka", "partitions",
                                                "reference_data"}
    assert get(f"{worker}/healthz")[0] == 200

    # a job waiting in the queue shows up per tenant
    queued = f"job-{uuid.uuid4().hex[:10]}"
    execute(lab_chain.database_url, "INSERT INTO public.jobs (id, job_key, rule_id, tenant_id, "
            "backend, status, created_at) VALUES (%s, %s, 'r', %s, 'local', 'queued', "
            "now() - interval '90 seconds')", (queued, queued, f"{tenant}-q"))
    try:
        samples = scrape(worker)
        assert value(samples, "labstream_job_queue_depth", tenant=f"{tenant}-q") == 1.0
        assert value(samples, "labstream_job_queue_oldest_seconds", tenant=f"{tenant}-q") >= 89
    finally:
        execute(lab_chain.database_url, "DELETE FROM public.jobs WHERE id = %s", (queued,))
