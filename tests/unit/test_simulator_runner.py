"""Pacing, spans and counting of the simulator loop, with a fake clock and writer."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from labstream.simulator.actions import Action, RecordReadings, SubmitExperiment
from labstream.simulator.exceptions import ActionFailed
from labstream.simulator.model import LabModel, SimulationConfig
from labstream.simulator.runner import Runner, next_slot
from labstream.simulator.writer import LabWriter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


class RecordingWriter:
    """Takes `cost` seconds per action; remembers when and under which trace."""

    def __init__(self, clock: FakeClock, cost: float = 0.001, fail_kinds: tuple[str, ...] = ()):
        self.clock = clock
        self.cost = cost
        self.fail_kinds = fail_kinds
        self.calls: list[tuple[float, Action, int]] = []
        self.slow_once_at: float | None = None

    def execute(self, action: Action) -> bool:
        span_context = trace.get_current_span().get_span_context()
        self.calls.append((self.clock.now, action, span_context.trace_id))
        self.clock.now += self.cost
        if self.slow_once_at is not None and self.clock.now >= self.slow_once_at:
            self.clock.now += 1.0  # one slow transaction
            self.slow_once_at = None
        if action.kind in self.fail_kinds:
            raise ActionFailed(f"{action.kind} rolled back")
        return True


def make_runner(
    rate: float, duration: float, writer_cost: float = 0.001, fail_kinds: tuple[str, ...] = ()
) -> tuple[Runner, RecordingWriter, InMemorySpanExporter]:
    clock = FakeClock()
    writer = RecordingWriter(clock, writer_cost, fail_kinds)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    model = LabModel(random.Random(1), SimulationConfig(run_token="t"))
    model.initial_lots(datetime(2026, 1, 1, tzinfo=UTC))
    runner = Runner(
        model,
        writer,
        rate,
        duration,
        tracer=provider.get_tracer("labstream.simulator"),
        clock=clock,
        sleep=clock.sleep,
    )
    return runner, writer, exporter


def front_end_times(writer: RecordingWriter) -> list[float]:
    return [at for at, action, _ in writer.calls if not isinstance(action, RecordReadings)]


def test_rate_and_duration_give_the_expected_number_of_actions() -> None:
    runner, writer, _ = make_runner(rate=20, duration=3)
    ticks: list[tuple[int, float]] = []
    runner.on_tick = lambda so_far, elapsed: ticks.append((so_far.telemetry_ticks, elapsed))
    summary = runner.run()
    assert [count for count, _ in ticks] == [1, 2, 3]
    assert [round(elapsed) for _, elapsed in ticks] == [0, 1, 2]
    assert 59 <= summary.front_end_actions <= 61
    assert summary.telemetry_ticks == 3
    assert 19.5 < summary.achieved_rate < 20.5
    assert sum(summary.actions.values()) == summary.front_end_actions + summary.telemetry_ticks
    gaps = [b - a for a, b in itertools.pairwise(front_end_times(writer))]
    assert min(gaps) > 0.03  # evenly paced (interval 0.05), never back to back


def test_a_slow_transaction_does_not_cause_a_catch_up_burst() -> None:
    runner, writer, _ = make_runner(rate=10, duration=5)
    writer.slow_once_at = 1002.0
    summary = runner.run()
    times = front_end_times(writer)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0.05  # interval 0.1: no burst after the 1 s stall
    assert summary.achieved_rate < 9.5  # the lost second shows in the report


def test_each_action_is_a_server_span_and_the_write_runs_inside_it() -> None:
    runner, writer, exporter = make_runner(rate=10, duration=1)
    runner.run()
    spans = exporter.get_finished_spans()
    assert len(spans) == len(writer.calls)
    for span, (_, action, trace_id) in zip(spans, writer.calls, strict=True):
        assert span.name == action.span_name
        assert span.kind == SpanKind.SERVER
        assert span.context is not None and span.context.trace_id == trace_id
        assert span.attributes is not None and span.attributes["lab.action"] == action.kind
    assert {s.name for s in spans} >= {"POST /experiments", "POST /sensors/readings"}
    assert len({s.context.trace_id for s in spans if s.context}) == len(spans)  # one trace each


def test_a_rolled_back_action_is_counted_and_not_applied_to_the_model() -> None:
    runner, _, exporter = make_runner(rate=20, duration=2, fail_kinds=("experiment.submit",))
    summary = runner.run()
    assert summary.failed["experiment.submit"] > 0
    assert "experiment.submit" not in summary.actions
    assert runner.model.experiments == {}  # nothing submitted, so nothing to queue either
    errors = [s for s in exporter.get_finished_spans() if s.status.status_code == StatusCode.ERROR]
    assert len(errors) == summary.failed["experiment.submit"]


def test_stop_request_ends_the_run_cleanly() -> None:
    runner, writer, _ = make_runner(rate=10, duration=0)
    summary = runner.run(should_stop=lambda: len(writer.calls) >= 25)
    assert len(writer.calls) == 25
    assert summary.front_end_actions + summary.telemetry_ticks == 25


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        make_runner(rate=0, duration=1)


class FakeCursor:
    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log

    def execute(self, query: str, params: Any = None) -> None:
        self.log.append((query, params))

    def executemany(self, query: str, params: Any) -> None:
        self.log.append((query, list(params)))

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class FakeConnection:
    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.log.append(("BEGIN", None))
        yield
        self.log.append(("COMMIT", None))

    def cursor(self) -> FakeCursor:
        return FakeCursor(self.log)


def test_writer_emits_the_traceparent_first_inside_the_transaction() -> None:
    provider = TracerProvider()
    connection = FakeConnection()
    writer = LabWriter(connection)  # type: ignore[arg-type]
    model = LabModel(random.Random(3), SimulationConfig(run_token="t"))
    model.initial_lots(datetime(2026, 1, 1, tzinfo=UTC))
    action = model.next_action(datetime(2026, 1, 1, tzinfo=UTC))
    assert isinstance(action, SubmitExperiment)
    with provider.get_tracer("t").start_as_current_span("POST /experiments") as span:
        assert writer.execute(action) is True
    trace_hex = format(span.get_span_context().trace_id, "032x")
    statements = [query for query, _ in connection.log]
    assert statements[0] == "BEGIN" and statements[-1] == "COMMIT"
    assert "pg_logical_emit_message" in statements[1]
    assert connection.log[1][1][0] == "traceparent" and trace_hex in connection.log[1][1][1]
    assert "INSERT INTO public.experiments" in statements[2]
    assert "INSERT INTO public.samples" in statements[3]


@pytest.mark.parametrize(
    ("scheduled", "started", "expected"),
    [
        (10.0, 10.0, 10.1),  # on time
        (10.0, 10.03, 10.1),  # overshoot within an interval: schedule kept
        (10.0, 11.0, 11.1),  # a second late: missed slots dropped, no burst
    ],
)
def test_next_slot(scheduled: float, started: float, expected: float) -> None:
    assert next_slot(scheduled, 0.1, started) == pytest.approx(expected)
