"""A browser-started trace reaches the job's own spans, at a real OTLP receiver, in one trace.

The connector and the worker run as subprocesses exporting to `otlp_receiver` (and the
span store); the lab API runs in process. Unlike test_e2e_trace.py, the rule gives the
job NO OTel settings: the OTLP endpoint, the resource attributes and the beeline header
must come from the worker (streams/jobs/environment.py), as they do in production.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from api_helpers import bearer, make_token
from cdc_helpers import all_partitions
from confluent_kafka import Consumer
from explain_helpers import CHAIN_ATTRIBUTE, Chain, api_tracer_provider, chain, execute, wait_for
from otlp_receiver import OtlpReceiver, ReceivedSpan
from starlette.testclient import TestClient

from labstream.api.app import create_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def lab_chain(stack: Any, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Chain]:
    saved = os.environ.get("LABSTREAM_TRACING_BEELINE_HEADERS")
    os.environ["LABSTREAM_TRACING_BEELINE_HEADERS"] = "true"  # the subprocesses inherit it
    try:
        with chain(stack.database_url, stack.kafka_bootstrap, tmp_path_factory.mktemp("chain"),
                   otlp_endpoint=receiver.endpoint) as running:
            yield running
    finally:
        if saved is None:
            os.environ.pop("LABSTREAM_TRACING_BEELINE_HEADERS", None)
        else:
            os.environ["LABSTREAM_TRACING_BEELINE_HEADERS"] = saved


def bare_rule(lab_chain: Chain, tenant: str) -> str:
    """A rule whose env is empty: whatever OTel settings the job has, the worker gave it."""
    rule_id = f"r-{uuid.uuid4().hex[:12]}"
    command = [sys.executable, "-m", "streams.jobs.examples.hplc_peak_summary", "--run",
               "{payload.run_id}"]
    condition = {"origin.topic": f"{lab_chain.name}.public.runs"}
    execute(lab_chain.database_url,
            "INSERT INTO public.trigger_rules (id, tenant_id, event_kind, condition, command, "
            "env, timeout_s) VALUES (%s, %s, 'hplc.completed', %s, %s, '{}', 120)",
            (rule_id, tenant, json.dumps(condition), json.dumps(command)))
    lab_chain.rules.append(rule_id)
    lab_chain.wait_until_delivered("trigger_rules", rule_id)
    return rule_id


def first_header(bootstrap: str, topic: str, key_part: str, name: str) -> bytes | None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        consumer.assign(all_partitions(consumer, topic))  # CDC topics: several by default
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for message in consumer.consume(500, 1.0):
                if key_part.encode() in (message.key() or b""):
                    return dict(message.headers() or []).get(name)
        return None
    finally:
        consumer.close()


def test_a_browser_trace_reaches_the_job_s_own_spans_at_the_collector(
        stack: Any, lab_chain: Chain, receiver: OtlpReceiver) -> None:
    provider = api_tracer_provider(receiver.traces_url, stack.database_url, lab_chain.name)
    tenant, instrument = lab_chain.tenant(), lab_chain.instrument()
    rule = bare_rule(lab_chain, tenant)
    lab_chain.wait_until_delivered("trigger_rules", rule)
    trace_id, browser_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    with TestClient(create_app(database_url=stack.database_url,
                               tracer_provider=provider)) as client:
        response = client.post("/experiments", json={"kind": "hplc", "submitted_by": "ada"},
                               headers={**bearer(make_token(lab_chain.database_url, tenant)),
                                        "traceparent": f"00-{trace_id}-{browser_span}-01"})
        assert response.status_code == 201, response.text
        experiment_id = response.json()["id"]
        run_id = lab_chain.complete_run(experiment_id, instrument,
                                        response.headers["traceparent"], provider)
        job = lab_chain.job_of(experiment_id, rule)
    provider.shutdown()
    assert job["status"] == "succeeded", job

    def whole_trace() -> list[ReceivedSpan] | None:
        """The trace's spans once the job's span chains up to the browser's span."""
        mine = {s.span_id: s for s in receiver.spans() if s.trace_id == trace_id}
        summary = next((s for s in mine.values() if s.service_name == "labstream-job"
                        and s.name == "hplc peak summary"), None)
        while summary is not None and summary.parent_span_id in mine:
            summary = mine[summary.parent_span_id]
        reached = summary is not None and summary.parent_span_id == browser_span
        return list(mine.values()) if reached else None

    spans = wait_for(whole_trace, 60, f"trace {trace_id} from the browser span to the job's")
    by_id = {s.span_id: s for s in spans}

    def ancestry(span: ReceivedSpan) -> list[str]:
        names = []
        while span.parent_span_id in by_id:
            span = by_id[span.parent_span_id]
            names.append(f"{span.service_name}:{span.name}")
        return names

    own = [s for s in spans if s.service_name == "labstream-job"]
    for span in own:  # the worker gave the job its resource attributes
        assert span.resource["lab.job.id"] == job["id"]
        assert span.resource["lab.rule.id"] == rule and span.resource["lab.tenant.id"] == tenant
        assert span.resource[CHAIN_ATTRIBUTE] == lab_chain.name  # the worker's own attribute
    summary = next(s for s in own if s.name == "hplc peak summary")
    chain_names = ancestry(summary)
    # one tree: job -> worker job span -> worker CONSUMER -> CDC PRODUCER -> API
    assert any(n.startswith("labstream-worker:job ") for n in chain_names), chain_names
    assert f"labstream-worker:process {lab_chain.name}.public.runs" in chain_names
    assert f"labstream-cdc:send {lab_chain.name}.public.runs" in chain_names
    assert any(n.startswith("labstream-api:") for n in chain_names), chain_names
    roots = [s for s in spans if s.parent_span_id == browser_span]
    assert roots and {s.service_name for s in roots} == {"labstream-api"}
    # the worker's PRODUCER span for its outputs, child of its CONSUMER span
    process = next(s for s in spans if s.name == f"process {lab_chain.name}.public.runs")
    assert process.attributes["messaging.kafka.offset"] >= 0
    # CDC topics have several partitions: the span names the one the change was read from
    assert process.attributes["messaging.destination.partition.id"] in {"0", "1", "2", "3"}
    assert "messaging.kafka.message.offset" not in process.attributes  # the deprecated name
    # the worker's PRODUCER span for the run's outputs, child of its CONSUMER span
    sends = [s for s in spans if s.service_name == "labstream-worker"
             and s.kind == "SPAN_KIND_PRODUCER"]
    assert all(by_id[s.parent_span_id or ""].kind == "SPAN_KIND_CONSUMER" for s in sends)
    [run_send] = [s for s in sends if s.parent_span_id == process.span_id]
    assert run_send.attributes["messaging.batch.message_count"] == 2  # routed + decision
    # the CDC send span: one per transaction, its record count and offsets
    cdc_send = next(s for s in spans if s.name == f"send {lab_chain.name}.public.runs")
    assert cdc_send.attributes["messaging.batch.message_count"] == 1
    # beeline peers downstream continue the same trace from the Kafka record
    header = first_header(lab_chain.bootstrap, f"{lab_chain.name}.public.runs", run_id,
                          "X-Honeycomb-Trace")
    assert header is not None and f"trace_id={trace_id}" in header.decode()
