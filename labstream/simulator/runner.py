"""Pace simulated actions at a steady rate, one SERVER span each, and count them.

Front-end actions are spaced `1/rate` seconds apart. A late action does not
cause a burst of catch-up actions: the schedule never runs more than one
interval behind, so the achieved rate reports honestly when the database is
slower than the target. Sensor telemetry ticks once per second on its own
schedule and is counted apart from the front-end rate.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from base.logs import kv
from labstream.simulator.actions import Action, RecordReadings
from labstream.simulator.exceptions import ActionFailed
from labstream.simulator.model import LabModel

log = logging.getLogger(__name__)
TRACER_NAME = "labstream.simulator"
TELEMETRY_INTERVAL_S = 1.0


class Writer(Protocol):
    def execute(self, action: Action) -> bool: ...


@dataclass
class Summary:
    target_rate: float
    elapsed_s: float = 0.0
    actions: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    front_end_actions: int = 0
    telemetry_ticks: int = 0
    traced_transactions: int = 0

    @property
    def achieved_rate(self) -> float:
        return self.achieved_rate_at(self.elapsed_s)

    def achieved_rate_at(self, elapsed_s: float) -> float:
        return self.front_end_actions / elapsed_s if elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "elapsed_s": round(self.elapsed_s, 3),
            "target_rate": self.target_rate,
            "achieved_rate": round(self.achieved_rate, 3),
            "front_end_actions": self.front_end_actions,
            "telemetry_ticks": self.telemetry_ticks,
            "traced_transactions": self.traced_transactions,
            "actions": dict(sorted(self.actions.items())),
            "failed": dict(sorted(self.failed.items())),
        }


def span_attributes(action: Action) -> dict[str, str]:
    method, _, route = action.span_name.partition(" ")
    attributes = {"http.request.method": method, "http.route": route, "lab.action": action.kind}
    for name in ("experiment_id", "run_id", "instrument_id", "tenant_id", "item_id"):
        value = getattr(action, name, None)
        if isinstance(value, str):
            attributes[f"lab.{name}"] = value
    return attributes


def next_slot(scheduled: float, interval: float, started: float) -> float:
    """When the next action is due, given when this one was due and when it started.

    Less than an interval late (sleep overshoot): keep the schedule, so the rate
    holds. More: drop the missed slots instead of firing them back to back.
    """
    following = scheduled + interval
    return following if following > started else started + interval


@dataclass
class Runner:
    model: LabModel
    writer: Writer
    rate: float
    duration_s: float  # 0: until should_stop() says so
    tracer: trace.Tracer = field(default_factory=lambda: trace.get_tracer(TRACER_NAME))
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # called after every sensor tick (once a second) with the counts so far
    on_tick: Callable[[Summary, float], None] | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError("rate must be positive")

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> Summary:
        summary = Summary(target_rate=self.rate)
        interval = 1.0 / self.rate
        started = self.clock()
        next_action_at = next_tick_at = started
        while not should_stop():
            now = self.clock()
            if self.duration_s and now - started >= self.duration_s:
                break
            due = min(next_action_at, next_tick_at)
            if due > now:
                self.sleep(min(due - now, 0.2))  # wake often enough to notice a stop
                continue
            if next_tick_at <= now:
                self._perform(self.model.telemetry(self.wall_clock()), summary)
                summary.telemetry_ticks += 1
                next_tick_at = next_slot(next_tick_at, TELEMETRY_INTERVAL_S, now)
                if self.on_tick is not None:
                    self.on_tick(summary, self.clock() - started)
            else:
                self._perform(self.model.next_action(self.wall_clock()), summary)
                summary.front_end_actions += 1
                next_action_at = next_slot(next_action_at, interval, now)
        summary.elapsed_s = self.clock() - started
        return summary

    def _perform(self, action: Action, summary: Summary) -> None:
        with self.tracer.start_as_current_span(
            action.span_name, kind=SpanKind.SERVER, attributes=span_attributes(action)
        ) as span:
            try:
                traced = self.writer.execute(action)
            except ActionFailed as exc:
                summary.failed[action.kind] += 1
                span.set_status(Status(StatusCode.ERROR, exc.message))
                kv(log, "warning", "simulated action failed", action=action.kind, error=exc.message)
                return
            summary.traced_transactions += int(traced)
            if not isinstance(action, RecordReadings):
                self.model.apply(action)
            summary.actions[action.kind] += 1
