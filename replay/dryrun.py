"""Dry run: what would today's chain do with these recorded events?

Each selected record goes through the *same* pure functions the worker's agents
call — `streams.enrich.enrich`, `streams.route.route_explained`,
`streams.trigger.decide` — with reference data and trigger rules as the worker
holds them now. Nothing is produced and
no job is launched.

Reference data and rules: `--reference topics` (default, the worker's own
`ReferenceStore` loaded from the reference CDC topics) or `--reference db`; see
`replay.reference`. For every fired decision the job key is looked up in `public.jobs`, because the
runner launches a job key once: a dry run therefore says whether `--execute`
would really launch it ("would launch"), or not ("already succeeded").

Where `lab.decisions` holds what the chain decided *then* for the same record
(same topic/partition/offset), both are shown:

    lab.public.runs/0/42 run-7: then: skipped, no_rule_for_kind; now: fires rule hplc-peak-summary
"""

from __future__ import annotations

import contextlib
import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from base.db import connect
from replay.record import ReplayRecord
from replay.reference import (
    DbReference,
    change_record,
    job_statuses,
    load_rules,
    reference_from_topics,
)
from replay.selection import PartitionPlan, ScanStats, Selection, plan
from streams.enrich import enrich
from streams.route import route_explained
from streams.trigger import decide, parse_rules

RERUN_STATUSES = ("failed", "timed_out", "launch_failed")


@dataclass(slots=True)  # one or more per record, all held for the report
class DecisionView:
    """One decision, then or now, reduced to what a person compares."""

    outcome: str  # fired | skipped | failed
    reason: str
    rule_id: str | None
    detail: str = ""
    event_kind: str | None = None
    job_key: str | None = None
    job_status: str | None = None  # existing job with this key, if any (now only)

    @property
    def launch(self) -> str | None:
        """For a fired decision: what `--execute` would do with its job."""
        if self.outcome != "fired":
            return None
        if self.job_status is None:
            return "would launch"
        if self.job_status in RERUN_STATUSES:
            return f"would launch again (last attempt {self.job_status})"
        if self.job_status == "succeeded":
            return "already succeeded: not launched again without --rerun-succeeded"
        return f"already {self.job_status}: not launched again"

    def text(self) -> str:
        if self.outcome == "fired":
            launch = f" ({self.launch})" if self.launch else ""
            return f"fires rule {self.rule_id}{launch}"
        rule = f" rule {self.rule_id}" if self.rule_id else ""
        return f"{self.outcome}{rule}, {self.reason}"

    def identity(self) -> tuple[str, str | None]:
        return (self.outcome, self.rule_id if self.outcome == "fired" else self.reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "rule_id": self.rule_id,
            "detail": self.detail,
            "event_kind": self.event_kind,
            "job_key": self.job_key,
            "job_status": self.job_status,
            "launch": self.launch,
        }


@dataclass(slots=True)  # one or more per record, all held for the report
class RecordOutcome:
    record: ReplayRecord
    status: str  # routed | not_routed | undecodable | tombstone | not_a_change
    kinds: list[str] = field(default_factory=list)
    now: list[DecisionView] = field(default_factory=list)
    then: list[DecisionView] | None = None  # None: no decision recorded for this record
    note: str | None = None  # unroutable explanation, decode error

    @property
    def would_launch(self) -> list[DecisionView]:
        return [d for d in self.now if (d.launch or "").startswith("would launch")]

    @property
    def changed(self) -> bool:
        if self.then is None:
            return bool(self.now)
        return {d.identity() for d in self.then} != {d.identity() for d in self.now}

    def line(self) -> str:
        head = f"{self.record.coordinates} {self.record.key_text()}"
        if self.status != "routed":
            return f"{head}: {self.status}" + (f" ({self.note})" if self.note else "")
        now = "; ".join(d.text() for d in self.now)
        kinds = ",".join(self.kinds)
        if self.then is None:
            return f"{head} [{kinds}]: now: {now} (no decision recorded then)"
        then = "; ".join(d.text() for d in self.then) or "nothing"
        if not self.changed:
            return f"{head} [{kinds}]: unchanged: {now}"
        return f"{head} [{kinds}]: then: {then}; now: {now}"

    def to_json(self) -> dict[str, Any]:
        return {
            "coordinates": self.record.coordinates,
            "key": self.record.key_text(),
            "op": self.record.op,
            "trace_id": self.record.trace_id,
            "status": self.status,
            "kinds": self.kinds,
            "note": self.note,
            "now": [d.to_json() for d in self.now],
            "then": None if self.then is None else [d.to_json() for d in self.then],
            "changed": self.changed,
        }


@dataclass
class DryRunReport:
    outcomes: list[RecordOutcome]
    stats: ScanStats

    def lines(self) -> list[str]:
        return [outcome.line() for outcome in self.outcomes]

    def counts(self) -> Counter[str]:
        counts: Counter[str] = Counter(outcome.status for outcome in self.outcomes)
        for outcome in self.outcomes:
            for decision in outcome.now:
                counts[f"decision_{decision.outcome}"] += 1
            counts["would_launch"] += len(outcome.would_launch)
            counts["changed"] += int(outcome.changed)
        return counts

    def summary(self) -> str:
        counts = self.counts()
        return (
            f"dry run: matched {self.stats.matched}, undecodable {self.stats.undecodable}, "
            f"routed {counts['routed']}, decisions fired {counts['decision_fired']} "
            f"(would launch {counts['would_launch']}), skipped {counts['decision_skipped']}, "
            f"failed {counts['decision_failed']}; changed since then {counts['changed']}; "
            "produced 0 (add --execute to re-drive)"
        )


REFERENCE_SOURCES = ("topics", "db")


def dry_run(
    session: Any,
    selection: Selection,
    *,
    reference_source: str = "topics",
    now: datetime | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> DryRunReport:
    """Scan the selection and evaluate every record with today's chain.

    `on_progress(done, total)` is called every `PROGRESS_EVERY` records read (and at the
    end): `done` counts what will really be evaluated, `total` is the planned range, or
    `--limit` when that is smaller (None while not known yet).
    """
    from replay.runner import start_scan

    scan = start_scan(session, selection)
    with connect(session.database_url, application_name="labstream-replay") as conn:
        if reference_source == "db":
            reference: Any = DbReference(conn)
            rules: list[Any] = load_rules(conn)
        else:
            reference, rules = reference_from_topics(session)
        settings = route_settings()  # once: reading the settings cost 4 ms per record
        # once per run, not per record: rows parsed into rules (a row that does not parse
        # stays a row and is still reported), and one decision time for the run
        rules = parse_rules(rules)
        moment = now or datetime.now(UTC)
        # each record evaluated as it is read: the chain's CPU overlaps librdkafka's
        # fetches instead of following the whole scan (the same outcomes, in order)
        outcomes: list[RecordOutcome] = []
        with _gc_paused():
            for record in scan.records():
                outcomes.append(evaluate(record, reference, rules, now=moment,
                                         settings=settings))
                if on_progress is not None and len(outcomes) % PROGRESS_EVERY == 0:
                    on_progress(*_progress(scan.stats, selection, len(outcomes)))
            if on_progress is not None:
                on_progress(len(outcomes), len(outcomes))  # the scan ended: all there is
            fired = [d for o in outcomes for d in o.now if d.job_key]
            statuses = job_statuses(conn, sorted({d.job_key for d in fired if d.job_key}))
            for decision in fired:
                decision.job_status = statuses.get(decision.job_key or "")
            attach_original_decisions(session, outcomes)
    return DryRunReport(outcomes, scan.stats)


PROGRESS_EVERY = 500


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a dry run piles up its records and outcomes.

    Everything read is kept until the report, so each collection walked a growing heap
    for nothing: 15 % of a 20,000-record dry run (docs/BENCHMARKS.md, "Replay").
    Reference counting still frees what is dropped. At the end, what piled up is moved
    to the oldest generation without being walked (`gc.freeze()` then `gc.unfreeze()`,
    two list splices): re-enabled as it was, the first young collection walked every
    record and outcome once more (≈ 3 µs a record); in the oldest generation they wait
    for a full collection, which still finds any cycle among them (nothing stays frozen;
    in a process that keeps a frozen heap of its own, they join it).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            had_frozen = gc.get_freeze_count()
            gc.freeze()
            if not had_frozen:
                gc.unfreeze()
            gc.enable()


def _progress(stats: ScanStats, selection: Selection, matched: int) -> tuple[int, int | None]:
    """(done, total) for a bar: with --limit or a filter, what is read is the matched
    records, at most the limit; the planned range counts otherwise."""
    if selection.limit is None and selection.compiled_filter is None and not selection.keys:
        return stats.scanned, stats.planned or None
    total = min(selection.limit, stats.planned) if selection.limit is not None else None
    return matched, total


def evaluate(
    record: ReplayRecord,
    reference: Any,
    rules: list[Any],
    *,
    now: datetime | None = None,
    settings: Any = None,
) -> RecordOutcome:
    """One record through enrich -> route -> decide (the worker's pure functions);
    `settings`: the worker's `RouteSettings` (`route_settings()`), read once per run."""
    if record.decode_error:
        return RecordOutcome(record, "undecodable", note=record.decode_error)
    if record.value_bytes is None:
        return RecordOutcome(record, "tombstone")
    value = record.value
    is_change = (type(value) is dict or isinstance(value, Mapping)) and "source" in value
    change = change_record(record) if is_change else None
    if change is None:
        return RecordOutcome(record, "not_a_change", note="not a Debezium change event")
    routed = route_explained(enrich(change, reference), settings or route_settings())
    if not routed.events:
        # positional, every field given: keywords and default factories cost a third
        # more, and most records of a dry run end here
        return RecordOutcome(record, "not_routed", [], [], None, routed.unroutable)
    moment = now or datetime.now(UTC)
    outcome = RecordOutcome(record, "routed", kinds=[event.kind for event in routed.events])
    for event in routed.events:
        for decision in decide(event, rules, now=moment):
            outcome.now.append(_view(decision))
    return outcome


def route_settings() -> Any:
    """The worker's routing thresholds, as `labstream worker` reads them."""
    from streams.config import WorkerSettings
    from streams.route import RouteSettings

    worker = WorkerSettings()
    return RouteSettings(
        fridge_max_celsius=worker.fridge_max_celsius, lot_expiry_days=worker.lot_expiry_days
    )


def _view(decision: Any) -> DecisionView:
    return DecisionView(
        outcome=decision.outcome,
        reason=decision.reason,
        rule_id=decision.rule_id,
        detail=decision.detail,
        event_kind=decision.event_kind,
        job_key=decision.job_key,
    )


# -- what was decided then ------------------------------------------------------------------


def attach_original_decisions(session: Any, outcomes: list[RecordOutcome]) -> None:
    """Fill `then` from the decisions topic for the records that routed now or before."""
    candidates = [o for o in outcomes if o.status in ("routed", "not_routed")]
    if not candidates:
        return
    since = min(o.record.timestamp for o in candidates)
    wanted = _ByCoordinates(candidates)
    for coordinates, view in read_decisions(session, since, wanted):
        outcome = wanted[coordinates]
        outcome.then = (outcome.then or []) + [view]


class _ByCoordinates(Set[str]):
    """The candidates by `record.coordinates`, indexed when first asked: with no decision
    in the window (no decisions topic, a worker that never ran) nothing is looked up,
    and the text of every record's coordinates is not made (≈ 5 % of a dry run)."""

    def __init__(self, outcomes: list[RecordOutcome]) -> None:
        self._outcomes = outcomes
        self._index: dict[str, RecordOutcome] | None = None

    def _indexed(self) -> dict[str, RecordOutcome]:
        if self._index is None:
            self._index = {o.record.coordinates: o for o in self._outcomes}
        return self._index

    def __getitem__(self, coordinates: str) -> RecordOutcome:
        return self._indexed()[coordinates]

    def __contains__(self, coordinates: object) -> bool:
        return coordinates in self._indexed()

    def __iter__(self) -> Iterator[str]:
        return iter(self._indexed())

    def __len__(self) -> int:
        return len(self._indexed())


def read_decisions(
    session: Any, since_ms: int, coordinates: Set[str]
) -> Iterable[tuple[str, DecisionView]]:
    """(origin coordinates, decision) from the decisions topic, written at or after `since_ms`."""
    from streams.config import WorkerSettings

    topic = WorkerSettings().decisions_topic
    offsets = session.offsets  # topics and offsets from librdkafka (replay.offsets)
    if topic not in offsets.topics():
        return []
    selection = Selection(topics=(topic,), from_ms=since_ms)
    try:
        plans: list[PartitionPlan] = plan(selection, offsets)
    except Exception:  # an empty window: nothing was decided since
        return []
    found = []
    for record in _scan_all(session, plans):
        value = record.value
        if not isinstance(value, Mapping):
            continue
        origin = origin_of(value)
        if origin is not None and origin in coordinates:
            found.append((origin, decision_from_value(value)))
    return found


def _scan_all(session: Any, plans: list[PartitionPlan]) -> Iterable[ReplayRecord]:
    return session.scan(plans, Selection())


def origin_of(value: Mapping[str, Any]) -> str | None:
    """`topic/partition/offset` of the CDC record a decision was about."""
    origin = value.get("origin")
    if isinstance(origin, Mapping):
        parts = (origin.get("topic"), origin.get("partition"), origin.get("offset"))
    else:
        parts = (
            value.get("origin_topic"),
            value.get("origin_partition"),
            value.get("origin_offset"),
        )
    if any(part is None for part in parts):
        return None
    return f"{parts[0]}/{parts[1]}/{parts[2]}"


def decision_from_value(value: Mapping[str, Any]) -> DecisionView:
    return DecisionView(
        outcome=str(value.get("outcome")),
        reason=str(value.get("reason")),
        rule_id=value.get("rule_id"),
        detail=str(value.get("detail") or ""),
        event_kind=value.get("event_kind"),
        job_key=value.get("job_key"),
    )


__all__ = ["DryRunReport", "RecordOutcome", "dry_run", "evaluate"]
