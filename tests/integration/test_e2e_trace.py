"""One trace id from the lab API to the job's container, with the real connector and worker.

An experiment is submitted through the lab API (in process) with a W3C `traceparent`
or an `X-Honeycomb-Trace` header; a completed HPLC run written under the same trace
makes a rule fire. The connector and the worker run as subprocesses exporting spans
over OTLP/HTTP (to `otlp_receiver`) and to the lab-DB span store. The same trace id
must be on the Kafka record's header, the agent's spans, the job's TRACEPARENT, its
log lines and its spans, all one tree; and `labstream explain` must say ✔ four times.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from api_helpers import bearer, make_token
from cdc_helpers import all_partitions
from click.testing import CliRunner
from confluent_kafka import Consumer
from explain_helpers import (
    CHAIN_ATTRIBUTE,
    Chain,
    api_tracer_provider,
    chain,
    execute,
    wait_for,
)
from otlp_receiver import OtlpReceiver
from starlette.testclient import TestClient

from labstream.api.app import create_app
from labstream.cli import app as cli_app

pytestmark = pytest.mark.integration

SERVICES = {"labstream-api", "labstream-cdc", "labstream-worker", "labstream-job"}


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def lab_chain(stack: Any, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Chain]:
    with chain(stack.database_url, stack.kafka_bootstrap, tmp_path_factory.mktemp("chain"),
               otlp_endpoint=receiver.endpoint) as running:
        yield running


@pytest.fixture(scope="module")
def api(stack: Any, receiver: OtlpReceiver, lab_chain: Chain
        ) -> Iterator[tuple[TestClient, Any]]:
    provider = api_tracer_provider(receiver.traces_url, stack.database_url, lab_chain.name)
    with TestClient(create_app(database_url=stack.database_url,
                               tracer_provider=provider)) as client:
        yield client, provider
    provider.shutdown()


def explain_json(lab_chain: Chain, query: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli_app, ["explain", query, "--json", *lab_chain.cli_args()],
                                env={"LABSTREAM_DATABASE_URL": lab_chain.database_url,
                                     "LABSTREAM_KAFKA_BOOTSTRAP_SERVERS": lab_chain.bootstrap})
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def kafka_headers(bootstrap: str, topic: str, key_part: str) -> list[dict[str, bytes]]:
    """Headers of every record of `topic` whose key contains `key_part`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "check.crcs": False})
    try:
        partitions = all_partitions(consumer, topic)  # CDC topics: several by default
        pending = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1]
                   for tp in partitions}
        pending = {partition: high for partition, high in pending.items() if high > 0}
        consumer.assign(partitions)
        found: list[dict[str, bytes]] = []
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, 1.0):
                if message.error() is not None:
                    continue
                if message.offset() + 1 >= pending.get(message.partition(), 0):
                    pending.pop(message.partition(), None)
                key = message.key() or b""
                if key_part.encode() in key:
                    headers = dict(message.headers() or [])  # CDC headers: str -> bytes
                    found.append({name: value.encode() if isinstance(value, str)
                                  else value or b"" for name, value in headers.items()})
        return found
    finally:
        consumer.close()


def stored_spans(database_url: str, trace_id: str, chain_name: str) -> list[dict[str, Any]]:
    """The chain's spans of the trace (other tests' workers may add theirs to it)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
        return cursor.execute("SELECT span_id, parent_span_id, name, service_name, links "
                              "FROM labstream.spans WHERE trace_id = %s AND resource ->> %s = %s",
                              (trace_id, CHAIN_ATTRIBUTE, chain_name)).fetchall()


def ancestors(span_id: str, parent_of: dict[str, str | None]) -> list[str]:
    chain_ids = []
    current = parent_of.get(span_id)
    while current is not None and current in parent_of and current not in chain_ids:
        chain_ids.append(current)
        current = parent_of[current]
    return chain_ids


def submit_and_complete(lab_chain: Chain, api: tuple[TestClient, Any], headers: dict[str, str]
                        ) -> tuple[str, str, str, dict[str, Any]]:
    """(trace id, experiment id, rule id, job row) of one traced HPLC chain."""
    client, provider = api
    tenant, instrument = lab_chain.tenant(), lab_chain.instrument()
    rule = lab_chain.rule(
        tenant, [sys.executable, "-m", "streams.jobs.examples.hplc_peak_summary", "--run",
                 "{payload.run_id}"],
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": lab_chain.otlp_endpoint or ""})
    response = client.post("/experiments", json={"kind": "hplc", "submitted_by": "ada"},
                           headers={**bearer(make_token(lab_chain.database_url, tenant)),
                                    **headers})
    assert response.status_code == 201, response.text
    body = response.json()
    lab_chain.complete_run(body["id"], instrument, response.headers["traceparent"], provider)
    job = lab_chain.job_of(body["id"], rule)
    return body["trace_id"], body["id"], rule, job


def check_one_trace(lab_chain: Chain, receiver: OtlpReceiver, trace_id: str, experiment_id: str,
                    rule: str, job: dict[str, Any], incoming_parent: str) -> None:
    url = lab_chain.database_url
    prefix = lab_chain.name
    # the job: succeeded, with the trace in its TRACEPARENT and on every log line
    assert job["status"] == "succeeded", job
    assert job["trace_id"] == trace_id and job["traceparent"].startswith(f"00-{trace_id}-")
    log_traces = execute(url, "SELECT DISTINCT trace_id FROM public.job_log_lines WHERE "
                         "job_id = %s", (job["id"],))
    assert log_traces == [(trace_id,)], log_traces
    # the Kafka records of the experiment and the run carry it in their header
    runs = execute(url, "SELECT id FROM public.runs WHERE experiment_id = %s", (experiment_id,))
    for topic, key in ((f"{prefix}.public.experiments", experiment_id),
                       (f"{prefix}.public.runs", runs[0][0])):
        headers = kafka_headers(lab_chain.bootstrap, topic, key)
        assert headers, f"no record of {key} on {topic}"
        assert all(h["traceparent"].decode().split("-")[1] == trace_id for h in headers)
    # every hop's spans, in the span store, one tree under the caller's span
    names = {f"send {prefix}.public.runs", f"process {prefix}.public.runs", f"job {rule}"}

    def complete() -> list[dict[str, Any]] | None:
        spans = stored_spans(url, trace_id, prefix)
        have = {s["service_name"] for s in spans} >= SERVICES and \
            names <= {s["name"] for s in spans}
        return spans if have else None

    try:
        spans = wait_for(complete, 30, f"spans of {sorted(SERVICES)} in trace {trace_id}")
    except AssertionError as exc:
        everything = execute(url, "SELECT service_name, name, resource ->> %s FROM "
                             "labstream.spans WHERE trace_id = %s", (CHAIN_ATTRIBUTE, trace_id))
        raise AssertionError(f"{exc}: stored {everything}") from exc
    parent_of = {s["span_id"]: s["parent_span_id"] for s in spans}
    roots = {s["parent_span_id"] for s in spans if s["parent_span_id"] not in parent_of}
    assert roots == {incoming_parent}, [
        (s["name"], s["service_name"], s["span_id"], s["parent_span_id"]) for s in spans]
    by_name = {s["name"]: s for s in spans}
    send, process = by_name[f"send {prefix}.public.runs"], by_name[f"process {prefix}.public.runs"]
    job_span = by_name[f"job {rule}"]
    assert send["parent_span_id"] == by_name["complete run"]["span_id"]
    assert process["parent_span_id"] == send["span_id"]
    assert {link["span_id"] for link in process["links"]} == {send["span_id"]}
    assert process["span_id"] in ancestors(job_span["span_id"], parent_of)
    job_own = [s for s in spans if s["service_name"] == "labstream-job"]
    assert job_own and all(job_span["span_id"] in ancestors(s["span_id"], parent_of)
                           for s in job_own)
    # the OTLP receiver got the same spans with the same parents and links
    def exported() -> list[Any] | None:
        got = [s for s in receiver.spans() if s.trace_id == trace_id
               and s.resource.get(CHAIN_ATTRIBUTE) == prefix]
        return got if {s.span_id for s in got} >= set(parent_of) else None

    received = wait_for(exported, 30, "the same spans at the OTLP receiver")
    assert {s.span_id: s.parent_span_id for s in received} == parent_of
    assert {s.service_name for s in received} >= SERVICES
    received_process = next(s for s in received if s.span_id == process["span_id"])
    assert received_process.links == [(trace_id, send["span_id"])]
    assert received_process.kind == "SPAN_KIND_CONSUMER"
    # and explain, by experiment and by trace id: four times yes
    for query in (experiment_id, trace_id, f"00-{trace_id}-{'ab' * 8}-01"):
        document = explain_json(lab_chain, query)
        assert [a["status"] for a in document["answers"]] == ["yes"] * 4, document
        assert document["experiment_id"] == experiment_id and trace_id in document["trace_ids"]


def test_w3c_traceparent_follows_the_work_into_the_job(lab_chain, api, receiver):
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    got_trace, experiment_id, rule, job = submit_and_complete(
        lab_chain, api, {"traceparent": f"00-{trace_id}-{parent}-01"})
    assert got_trace == trace_id
    check_one_trace(lab_chain, receiver, trace_id, experiment_id, rule, job, parent)


def test_honeycomb_header_follows_the_work_into_the_job(lab_chain, api, receiver):
    beeline_trace, parent = str(uuid.uuid4()), uuid.uuid4().hex[:16]
    got_trace, experiment_id, rule, job = submit_and_complete(
        lab_chain, api, {"X-Honeycomb-Trace": f"1;trace_id={beeline_trace},parent_id={parent}"})
    assert got_trace == beeline_trace.replace("-", "")
    check_one_trace(lab_chain, receiver, got_trace, experiment_id, rule, job, parent)
