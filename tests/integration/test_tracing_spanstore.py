"""Spans exported to the lab DB come back out of `labstream trace`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid

import psycopg
import pytest
from click.testing import CliRunner
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from explain.facts import _span_facts
from explain.model import Facts
from explain.render import render_text
from explain.verdict import Explanation
from labstream.cli import app
from tracing import semconv
from tracing.propagation import context_from_environment, inject_headers, job_environment
from tracing.settings import TracingSettings
from tracing.setup import build_tracer_provider
from tracing.spanstore import DbSpanExporter

pytestmark = pytest.mark.integration


def delete_traces(database_url: str, trace_ids: set[str]) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM labstream.spans WHERE trace_id = ANY(%s)", (list(trace_ids),))


@pytest.fixture
def db_tracer(database_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LABSTREAM_TRACING_EXPORTERS", "db")
    providers = {}
    seen = InMemorySpanExporter()  # to delete what this test stored

    def tracer_for(service_name: str):
        if service_name not in providers:
            settings = TracingSettings(database_url=database_url)
            provider = build_tracer_provider(service_name, settings)
            provider.add_span_processor(SimpleSpanProcessor(seen))
            providers[service_name] = provider
        return providers[service_name].get_tracer("test")

    def flush() -> None:
        for provider in providers.values():
            assert provider.force_flush(10_000)

    yield tracer_for, flush
    for provider in providers.values():
        provider.shutdown()
    delete_traces(database_url, {f"{s.context.trace_id:032x}" for s in seen.get_finished_spans()})


def emit_chain(tracer_for, experiment_id: str) -> dict[str, str]:
    """api insert -> cdc send -> worker process (linked) -> job run; returns span ids by name."""
    api, cdc, worker, job = (
        tracer_for(f"labstream-{name}") for name in ("api", "cdc", "worker", "job")
    )
    ids = {}
    with api.start_as_current_span("POST /experiments", kind=SpanKind.SERVER) as root:
        semconv.set_lab_attributes(root, experiment_id=experiment_id)
        ids["root"] = format(root.get_span_context().span_id, "016x")
        with semconv.send_span(cdc, topic="lab.public.experiments", key=experiment_id) as send:
            headers = inject_headers(None)
            semconv.set_delivery_attributes(send, partition=0, offset=7)
            ids["send"] = format(send.get_span_context().span_id, "016x")
    with semconv.process_span(
        worker, topic="lab.public.experiments", headers=headers, partition=0, offset=7
    ) as process:
        ids["process"] = format(process.get_span_context().span_id, "016x")
        env = job_environment()
    with job.start_as_current_span("run job", context=context_from_environment(env)) as run:
        semconv.set_lab_attributes(run, job_id="job-1", job_exit_code=3)
        run.set_status(Status(StatusCode.ERROR, "exit code 3"))
        ids["job"] = format(run.get_span_context().span_id, "016x")
    ids["trace"] = format(root.get_span_context().trace_id, "032x")
    return ids


def test_trace_command_shows_the_chain_in_tree_order(db_tracer, unique_name, database_url):
    tracer_for, flush = db_tracer
    ids = emit_chain(tracer_for, f"exp-{unique_name}")
    flush()
    env = {"LABSTREAM_DATABASE_URL": database_url}

    result = CliRunner().invoke(app, ["trace", ids["trace"]], env=env)
    assert result.exit_code == 0, result.output
    out = result.output
    names = ["POST /experiments", "send lab.public.experiments", "process lab.public", "run job"]
    positions = [out.index(name) for name in names]
    assert positions == sorted(positions)
    for service in ("labstream-api", "labstream-cdc", "labstream-worker", "labstream-job"):
        assert service in out
    assert "↳ linked from send lab.public.experiments (labstream-cdc)" in out
    assert "ERROR" in out and "exit code 3" in out
    assert "offset=7" in out and "job=job-1" in out and "exit=3" in out

    result = CliRunner().invoke(app, ["trace", ids["trace"], "--json"], env=env)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    spans = {span["span_id"]: span for span in document["spans"]}
    assert [span["span_id"] for span in document["spans"]] == [
        ids["root"],
        ids["send"],
        ids["process"],
        ids["job"],
    ]
    assert spans[ids["root"]]["parent_span_id"] is None
    assert spans[ids["send"]]["parent_span_id"] == ids["root"]
    assert spans[ids["process"]]["parent_span_id"] == ids["send"]
    assert spans[ids["process"]]["links"][0]["span_id"] == ids["send"]
    assert spans[ids["job"]]["parent_span_id"] == ids["process"]
    assert spans[ids["job"]]["status_code"] == "ERROR"


def test_a_traceparent_is_accepted_and_experiments_find_their_traces(
    db_tracer, unique_name, database_url
):
    tracer_for, flush = db_tracer
    ids = emit_chain(tracer_for, f"exp-{unique_name}")
    flush()
    env = {"LABSTREAM_DATABASE_URL": database_url}
    traceparent = f"00-{ids['trace']}-{ids['root']}-01"
    result = CliRunner().invoke(app, ["trace", traceparent, "--json"], env=env)
    assert json.loads(result.output)["span_count"] == 4

    result = CliRunner().invoke(
        app, ["trace", "--experiment", f"exp-{unique_name}", "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    (summary,) = json.loads(result.output)
    assert summary["trace_id"] == ids["trace"]
    assert summary["span_count"] == 4
    assert summary["root_name"] == "POST /experiments"


def test_unknown_trace_exits_1_with_the_fix(database_url):
    missing = uuid.uuid4().hex
    completed = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "labstream"), "trace", missing],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LABSTREAM_DATABASE_URL": database_url},
    )
    assert completed.returncode == 1
    assert f"no spans for trace {missing}" in completed.stderr
    assert "LABSTREAM_TRACING_EXPORTERS" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_a_re_exported_batch_is_not_duplicated(database_url):
    exporter = DbSpanExporter(database_url)
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("once") as span:
        pass
    finished = memory.get_finished_spans()
    exporter.export(finished)
    exporter.export(finished)
    exporter.shutdown()
    trace_id = format(span.get_span_context().trace_id, "032x")
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM labstream.spans WHERE trace_id = %s", (trace_id,)
        ).fetchone()
    assert row is not None
    count = row[0]
    delete_traces(database_url, {trace_id})
    assert count == 1
    assert exporter.exported_spans == 2 and exporter.dropped_spans == 0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_database_drops_spans_logs_once_and_never_raises(caplog):
    from opentelemetry.sdk.trace import TracerProvider

    exporter = DbSpanExporter(
        f"postgresql://lab:lab@127.0.0.1:{closed_port()}/lab", retry_after_s=0.0
    )
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for _ in range(3):
        with tracer.start_as_current_span("lost"):
            pass
    provider.shutdown()
    assert exporter.dropped_spans == 3 and exporter.exported_spans == 0
    warnings = [r for r in caplog.records if "span store cannot write" in r.getMessage()]
    assert len(warnings) == 1


def test_spans_of_other_traces_linking_in_are_listed(db_tracer, database_url):
    tracer_for, flush = db_tracer
    tracer = tracer_for("labstream-replay")
    with semconv.send_span(tracer, topic="lab.public.runs") as original:
        headers = inject_headers(None)
    with semconv.process_span(
        tracer, topic="lab.public.runs", headers=headers, continue_trace=False
    ):
        pass
    flush()
    trace_id = format(original.get_span_context().trace_id, "032x")
    env = {"LABSTREAM_DATABASE_URL": database_url}

    document = json.loads(CliRunner().invoke(app, ["trace", trace_id, "--json"], env=env).output)
    assert [span["name"] for span in document["spans"]] == ["send lab.public.runs"]
    (linking,) = document["linking_spans"]
    assert linking["name"] == "process lab.public.runs"
    assert linking["trace_id"] != trace_id

    out = CliRunner().invoke(app, ["trace", trace_id], env=env).output
    assert "spans in other traces that link here" in out
    assert f"{linking['trace_id']}  labstream-replay  process lab.public.runs" in out

    # explain names the linking span's service beside the trace's own
    with psycopg.connect(database_url) as conn:
        (fact,) = _span_facts(conn, [trace_id])
    assert fact.services == ("labstream-replay",) and fact.span_count == 1
    assert fact.linking_services == ("labstream-replay",)
    text = render_text(Explanation(query="x", experiment_id=None, trace_ids=(trace_id,),
                                   answers=()),
                       Facts(query="x", experiment=None, traces=(fact,)))
    assert f"trace {trace_id}: 1 spans from labstream-replay; linked from labstream-replay" in text


def test_a_batch_with_an_already_stored_span_keeps_its_new_spans(database_url):
    """Batches are COPYed; a duplicate makes COPY fail, and the fallback must still store
    the batch's other spans (and a NUL in an attribute must not break the COPY)."""
    from opentelemetry.sdk.trace import TracerProvider

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("root") as root:
        for index in range(5):
            with tracer.start_as_current_span(f"child {index}") as child:
                child.set_attribute("lab.note", "tab\there, newline\n, nul\x00, \\backslash")
    spans = memory.get_finished_spans()
    exporter = DbSpanExporter(database_url)
    exporter.export(spans[:2])
    exporter.export(spans)  # two already stored, four new
    exporter.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT name, attributes->>'lab.note' FROM labstream.spans WHERE trace_id = %s",
            (trace_id,)).fetchall()
    delete_traces(database_url, {trace_id})
    assert sorted(name for name, _ in rows) == ["child 0", "child 1", "child 2", "child 3",
                                                 "child 4", "root"]
    assert {note for _, note in rows if note} == {
        "tab\there, newline\n, nul\ufffd, \\backslash"}
    assert exporter.exported_spans == 8 and exporter.dropped_spans == 0


def test_a_dropped_database_connection_loses_no_batch(database_url):
    """PostgreSQL restarted (here: the exporter's backend terminated) between two batches:
    the next batch reconnects once and is stored, nothing counted as dropped."""
    from opentelemetry.sdk.trace import TracerProvider

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("root") as root:
        for index in range(4):
            with tracer.start_as_current_span(f"child {index}"):
                pass
    spans = memory.get_finished_spans()
    exporter = DbSpanExporter(database_url)
    assert exporter.export(spans[:2]).name == "SUCCESS"
    pid = exporter._connection.info.backend_pid  # the backend to kill
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert exporter.export(spans[2:]).name == "SUCCESS"
    exporter.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")
    with psycopg.connect(database_url) as conn:
        (count,) = conn.execute("SELECT count(*) FROM labstream.spans WHERE trace_id = %s",
                                (trace_id,)).fetchone()
    delete_traces(database_url, {trace_id})
    assert count == 5 and exporter.dropped_spans == 0


def test_a_nan_attribute_or_a_huge_integer_keeps_the_batch(database_url):
    """A NaN attribute (a sensor reading copied onto a span) was written as JSON `NaN`, which
    jsonb refuses, so the whole batch was dropped; it is stored as null now. Integers beyond
    64 bits (orjson refuses them) still go through the json module."""
    from opentelemetry.sdk.trace import TracerProvider

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("root") as root:
        with tracer.start_as_current_span("reading") as child:
            child.set_attribute("lab.reading", float("nan"))
        with tracer.start_as_current_span("counter") as child:
            child.set_attribute("lab.big", 2**70)
    exporter = DbSpanExporter(database_url)
    assert exporter.export(memory.get_finished_spans()).name == "SUCCESS"
    exporter.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")
    with psycopg.connect(database_url) as conn:
        rows = dict(conn.execute(
            "SELECT name, attributes FROM labstream.spans WHERE trace_id = %s",
            (trace_id,)).fetchall())
    delete_traces(database_url, {trace_id})
    assert rows == {"root": {}, "reading": {"lab.reading": None}, "counter": {"lab.big": 2**70}}
    assert exporter.dropped_spans == 0


def test_a_connector_batch_span_reaches_the_span_store_and_the_other_exporters(
        db_tracer, database_url):
    """The connector's transaction span goes to the span store as a row built directly
    (no ReadableSpan) and, the same span, as a ReadableSpan to the other processors (here
    the fixture's in-memory one, standing for OTLP); `labstream trace` shows it."""
    from confluent_kafka import Message

    from tracing.batch import start_tx_span
    from tracing.propagation import context_from_db_messages

    tracer_for, flush = db_tracer
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    origin = context_from_db_messages({"traceparent": f"00-{trace_id}-{parent_id}-01"})
    tx = start_tx_span(tracer_for("labstream-cdc"), origin, lambda err, msg: None)
    for _ in range(3):
        tx.add("lab.public.runs", "public.runs", "c")
    tx.seal()
    for offset in (40, 41, 42):
        tx.delivered(None, Message(topic="lab.public.runs", partition=1, offset=offset))
    flush()
    env = {"LABSTREAM_DATABASE_URL": database_url}
    document = json.loads(CliRunner().invoke(app, ["trace", trace_id, "--json"], env=env).output)
    (span,) = document["spans"]
    assert (span["name"], span["kind"], span["service_name"]) == \
        ("send lab.public.runs", "PRODUCER", "labstream-cdc")
    assert span["parent_span_id"] == parent_id
    assert span["span_id"] == tx.headers[0][1].decode().split("-")[2]
    assert span["attributes"]["messaging.batch.message_count"] == 3
    assert span["attributes"]["messaging.kafka.offset"] == 40
    assert span["events"][0]["attributes"]["lab.kafka.offset.last"] == 42
    out = CliRunner().invoke(app, ["trace", trace_id], env=env).output
    assert "send lab.public.runs" in out and "labstream-cdc" in out


def test_a_batch_mixing_rows_and_spans_is_written_whole(database_url):
    """DbSpanExporter takes SpanRows (built by the connector) beside ReadableSpans."""
    from opentelemetry.sdk.trace import TracerProvider

    from tracing.spanstore import SpanRow, span_to_row

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("root") as root, tracer.start_as_current_span("as a row"):
        pass
    child, parent = memory.get_finished_spans()
    exporter = DbSpanExporter(database_url)
    assert exporter.export([SpanRow(span_to_row(child)), parent]).name == "SUCCESS"
    exporter.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")
    with psycopg.connect(database_url) as conn:
        names = conn.execute("SELECT name FROM labstream.spans WHERE trace_id = %s",
                             (trace_id,)).fetchall()
    delete_traces(database_url, {trace_id})
    assert sorted(name for (name,) in names) == ["as a row", "root"]
