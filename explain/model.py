"""The facts `labstream explain` reasons over: plain frozen records, no I/O.

`facts.gather_facts` fills them from the lab DB and Kafka; `verdict.explain`
turns them into answers. Tests build them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class RowState:
    """A lab row the chain depends on, as the database has it now."""

    table: str  # "experiments" | "runs"
    id: str
    status: str
    kind: str | None = None  # experiments.kind; for runs, the experiment's kind
    tenant_id: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class CdcRecord:
    """One change record of a `<prefix>.public.<table>` topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # broker (or producer) timestamp
    table: str
    key: str  # the primary key's id
    op: str
    status: str | None  # after.status (before.status for a delete)
    source_ts_ms: int | None  # commit time in PostgreSQL
    trace_id: str | None  # from the traceparent header
    headers: tuple[str, ...] = ()
    # `topic/partition/offset` of the record this one is a replayed copy of (its
    # labstream-replay-of header); None for a record the connector wrote
    replay_of: str | None = None

    @property
    def delay_ms(self) -> int | None:
        """Broker timestamp minus commit time: how long the change took to reach Kafka.

        None for a replayed copy: it was produced long after the commit by `labstream
        replay`, so the difference says nothing about the connector's lag.
        """
        if self.source_ts_ms is None or self.replay_of is not None:
            return None
        return self.timestamp_ms - self.source_ts_ms

    @property
    def coordinates(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class DecisionRecord:
    """One trigger decision read back from the decisions topic (JSON value)."""

    topic: str
    partition: int
    offset: int
    outcome: str  # fired | skipped | failed
    reason: str
    detail: str
    event_kind: str | None
    event_id: str
    rule_id: str | None = None
    job_key: str | None = None
    experiment_id: str | None = None
    tenant_id: str | None = None
    origin: str | None = None  # "topic/partition/offset" of the CDC record it decided on
    job_id: str | None = None
    trace_id: str | None = None
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class LogLine:
    seq: int
    stream: str
    line: str
    trace_id: str | None = None


@dataclass(frozen=True)
class JobFact:
    """A `public.jobs` row with its newest log lines."""

    id: str
    job_key: str
    rule_id: str
    backend: str
    status: str  # queued | started | succeeded | failed | timed_out | launch_failed
    attempt: int
    exit_code: int | None = None
    error: str | None = None
    trace_id: str | None = None
    backend_ref: str | None = None
    command: tuple[str, ...] = ()
    source: str | None = None  # "topic/partition/offset"
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    log_line_count: int = 0
    last_lines: tuple[LogLine, ...] = ()
    log_trace_ids: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class CaptureSetup:
    """The CDC connector's side: publication, slot, how far it has confirmed."""

    connector: str
    topic_prefix: str
    publication: str
    publication_exists: bool
    published_tables: frozenset[str]  # "public.runs", ...
    publishes_all_tables: bool
    slot: str
    slot_exists: bool
    slot_active: bool
    lag_bytes: int | None = None
    last_acked_commit_at: datetime | None = None
    # tables the connector's include/exclude lists leave out (as explain's settings see them)
    filtered_out: frozenset[str] = frozenset()

    def publishes(self, table: str) -> bool:
        return self.publishes_all_tables or f"public.{table}" in self.published_tables


@dataclass(frozen=True)
class DeadLetter:
    origin: str  # "topic/partition/offset" of the record that failed
    error: str


@dataclass(frozen=True)
class WorkerProgress:
    """The stream worker's consumer group: how far it has read each CDC partition."""

    group: str
    decisions_topic: str
    committed: dict[str, int] | None  # "topic/partition" -> next offset; None: no such group
    dead_letters: tuple[DeadLetter, ...] = ()

    def processed(self, record: CdcRecord) -> bool | None:
        """True when the group committed past the record; None when the group is unknown."""
        if self.committed is None:
            return None
        return self.committed.get(f"{record.topic}/{record.partition}", 0) > record.offset


@dataclass(frozen=True)
class SpanFact:
    """A summary of one trace in the span store."""

    trace_id: str
    span_count: int
    services: tuple[str, ...]
    error_spans: tuple[str, ...] = ()  # "service: name: message"
    # services of spans in other traces linking here (the connector's window span for a
    # transaction over its span budget, a worker batch span, a replay)
    linking_services: tuple[str, ...] = ()


@dataclass(frozen=True)
class Facts:
    query: str
    experiment: RowState | None
    runs: tuple[RowState, ...] = ()
    trace_ids: tuple[str, ...] = ()
    cdc_records: tuple[CdcRecord, ...] = ()
    decisions: tuple[DecisionRecord, ...] = ()
    jobs: tuple[JobFact, ...] = ()
    traces: tuple[SpanFact, ...] = ()
    capture: CaptureSetup | None = None
    worker: WorkerProgress | None = None
    notes: tuple[str, ...] = ()  # what could not be checked (Kafka down, topic missing, ...)
    kafka_checked: bool = True  # False: Kafka did not answer, records and decisions unknown
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> tuple[RowState, ...]:
        return ((self.experiment,) if self.experiment else ()) + self.runs
