"""Gather what `labstream explain` reasons over, from the lab DB and Kafka.

`gather_facts(query, sources)` resolves the query (experiment id, trace id or
traceparent) to an experiment and its trace ids, then reads: the experiment and
its runs; the CDC records of those rows (by key, in `<prefix>.public.<table>`);
the trigger decisions about them (`lab.decisions`); their jobs, job log lines
and spans; the connector's publication and slot; the worker group's committed
offsets and dead letters. Anything that cannot be read becomes a note, not an
error: a partial answer is still an answer. An unknown query raises
`ExplainNotFound`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from base.contracts import headers
from base.contracts.traceids import trace_id_of
from base.db import connect
from base.errors import LabstreamError
from base.settings import service_settings
from connectors.source.config import CdcSettings
from explain.kafkascan import KafkaScanner, ScanResult, committed_offsets, header
from explain.model import (
    CaptureSetup,
    CdcRecord,
    DeadLetter,
    DecisionRecord,
    Facts,
    JobFact,
    LogLine,
    RowState,
    SpanFact,
    WorkerProgress,
)
from explain.records import (
    avro_deserializer,
    cdc_record,
    decision_record,
    decode,
    trace_id_of_record,
)
from streams.config import WorkerSettings
from streams.jobs import reads as job_reads
from tracing import spanstore
from tracing.exceptions import TracingError

SCAN_MARGIN_MS = 60_000  # start reading topics this long before the experiment was created
_LOG_TAIL = 5
CHAIN_TABLES = ("experiments", "runs")  # the lab rows a trigger chain starts from


class ExplainNotFound(TracingError):
    """Neither an experiment nor a trace with this id is known."""


@dataclass(frozen=True)
class Sources:
    """Where to look: the lab DB, Kafka, and the connector's and worker's settings."""

    database_url: str
    bootstrap_servers: str
    cdc: CdcSettings = field(default_factory=CdcSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    max_records: int = 200_000
    budget_s: float = 20.0

    @classmethod
    def from_settings(cls, **overrides: Any) -> Sources:
        settings = service_settings()
        values: dict[str, Any] = {"database_url": settings.database_url,
                  "bootstrap_servers": settings.kafka_bootstrap_servers}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def gather_facts(query: str, sources: Sources) -> Facts:
    with connect(sources.database_url, autocommit=True,
                 application_name="labstream-explain") as conn:
        experiment_id, trace_id = _resolve_in_db(conn, query)
        scanner = _open_scanner(sources)
        notes: list[str] = []
        try:
            if experiment_id is None and trace_id is not None and scanner is not None:
                experiment_id = _experiment_from_kafka(scanner, sources, trace_id)
            if experiment_id is None and trace_id is None:
                raise ExplainNotFound(
                    f"{query!r} is neither an experiment id nor a trace id",
                    hint="pass an experiment id (exp-...), a 32-hex trace id or a traceparent")
            if experiment_id is None:
                return _trace_only_facts(conn, query, trace_id or "", scanner, sources)
            return _experiment_facts(conn, query, experiment_id, trace_id, scanner, sources,
                                     notes)
        finally:
            if scanner is not None:
                scanner.close()


def _open_scanner(sources: Sources) -> KafkaScanner | None:
    try:
        return KafkaScanner(sources.bootstrap_servers, max_records=sources.max_records,
                            budget_s=sources.budget_s)
    except LabstreamError:
        return None


# -- the lab DB ---------------------------------------------------------------------------


def _resolve_in_db(conn: psycopg.Connection, query: str) -> tuple[str | None, str | None]:
    """(experiment id, trace id) the query names, as far as the DB knows."""
    if _fetch_experiment(conn, query.strip()) is not None:
        return query.strip(), None
    trace_id = trace_id_of(query)
    if trace_id is None:
        return None, None
    experiment_id = job_reads.experiment_of_trace(conn, trace_id)
    if experiment_id is None:
        experiment_id = spanstore.experiment_of_trace(conn, trace_id)
    return experiment_id, trace_id


def _fetch_experiment(conn: psycopg.Connection, experiment_id: str) -> RowState | None:
    row = conn.execute("SELECT id, status, kind, tenant_id, updated_at FROM public.experiments "
                       "WHERE id = %s", (experiment_id,)).fetchone()
    return RowState("experiments", row[0], row[1], row[2], row[3], row[4]) if row else None


def _created_ms(conn: psycopg.Connection, experiment_id: str) -> int | None:
    row = conn.execute("SELECT (extract(epoch FROM created_at) * 1000)::bigint FROM "
                       "public.experiments WHERE id = %s", (experiment_id,)).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def _fetch_runs(conn: psycopg.Connection, experiment: RowState) -> tuple[RowState, ...]:
    rows = conn.execute("SELECT id, status, updated_at FROM public.runs WHERE experiment_id = %s "
                        "ORDER BY created_at, id", (experiment.id,)).fetchall()
    return tuple(RowState("runs", r[0], r[1], experiment.kind, experiment.tenant_id, r[2])
                 for r in rows)


def _fetch_jobs(conn: psycopg.Connection, experiment_id: str | None, trace_ids: Iterable[str],
                job_keys: Iterable[str]) -> tuple[JobFact, ...]:
    rows = job_reads.jobs_matching(conn, experiment_id, trace_ids, job_keys)
    return tuple(_job_fact(conn, row) for row in rows)


def _job_fact(conn: psycopg.Connection, row: dict[str, Any]) -> JobFact:
    tail = job_reads.log_tail(conn, row["id"], _LOG_TAIL)
    trace_ids = job_reads.log_trace_ids(conn, row["id"])
    source = (f"{row['source_topic']}/{row['source_partition']}/{row['source_offset']}"
              if row.get("source_topic") else None)
    command = row.get("command")
    return JobFact(
        id=row["id"], job_key=row["job_key"], rule_id=row["rule_id"], backend=row["backend"],
        status=row["status"], attempt=row["attempt"], exit_code=row["exit_code"],
        error=row["error"], trace_id=row["trace_id"], backend_ref=row["backend_ref"],
        command=tuple(command) if isinstance(command, list) else (), source=source,
        created_at=row["created_at"], started_at=row["started_at"],
        finished_at=row["finished_at"], log_line_count=int(row["log_line_count"]),
        last_lines=tuple(LogLine(*line) for line in tail),
        log_trace_ids=tuple(trace_ids),
    )


def _experiment_trace_ids(conn: psycopg.Connection, experiment_id: str) -> list[str]:
    return spanstore.experiment_trace_ids(conn, experiment_id)


def _span_facts(conn: psycopg.Connection, trace_ids: Iterable[str]) -> tuple[SpanFact, ...]:
    facts = []
    for trace_id in trace_ids:
        spans = spanstore.span_outlines(conn, trace_id)
        if spans is None:
            return ()
        if not spans:
            continue
        errors = tuple(f"{s.service_name}: {s.name}: {s.status_message or 'error'}"
                       for s in spans if s.status_code == "ERROR")
        linking = spanstore.linking_outlines(conn, trace_id) or []
        facts.append(SpanFact(trace_id, len(spans),
                              tuple(sorted({s.service_name for s in spans})), errors,
                              tuple(sorted({s.service_name for s in linking}))))
    return tuple(facts)


def capture_setup(conn: psycopg.Connection, settings: CdcSettings) -> CaptureSetup:
    from connectors.source.status import connector_status

    status = connector_status(conn, settings)
    row = conn.execute("SELECT puballtables FROM pg_publication WHERE pubname = %s",
                       (settings.publication,)).fetchone()
    tables = conn.execute("SELECT schemaname || '.' || tablename FROM pg_publication_tables "
                          "WHERE pubname = %s", (settings.publication,)).fetchall()
    acked = status.last_acked_commit_at
    return CaptureSetup(
        connector=status.connector, topic_prefix=settings.topic_prefix,
        publication=settings.publication, publication_exists=row is not None,
        published_tables=frozenset(t[0] for t in tables),
        publishes_all_tables=bool(row and row[0]), slot=status.slot,
        slot_exists=status.slot_exists, slot_active=status.slot_active,
        lag_bytes=status.lag_bytes,
        last_acked_commit_at=datetime.fromisoformat(acked) if acked else None,
        filtered_out=frozenset(f"public.{table}" for table in CHAIN_TABLES
                               if not settings.table_filter.captures("public", table)),
    )


# -- Kafka --------------------------------------------------------------------------------


def _cdc_records(scanner: KafkaScanner, sources: Sources, rows: Iterable[RowState],
                 since_ms: int | None) -> tuple[list[CdcRecord], list[str]]:
    deserializer = avro_deserializer(sources.database_url)
    wanted: dict[str, set[str]] = {}
    for row in rows:
        wanted.setdefault(row.table, set()).add(row.id)
    found, notes = [], []
    for table, ids in sorted(wanted.items()):
        topic = sources.cdc.topic_for("public", table)
        result = scanner.scan(topic, _key_contains([i.encode() for i in ids]),
                              since_ms=since_ms)
        notes += _scan_notes(topic, result, scanner)
        for raw in result.records:
            record = cdc_record(raw, table, deserializer)
            if record is not None and record.key in ids:
                found.append(record)
    return found, notes


def _key_contains(needles: list[bytes]) -> Any:
    # a cheap byte test before decoding: the Avro key holds the id as UTF-8
    def matches(raw: Any) -> bool:
        return raw.key is not None and any(needle in raw.key for needle in needles)

    return matches


def _scan_notes(topic: str, result: ScanResult, scanner: KafkaScanner) -> list[str]:
    if not scanner.has_topic(topic):
        return [f"topic {topic} does not exist"]
    if not result.complete:
        return [f"scan of {topic} stopped after {result.scanned} records (time budget)"]
    return []


def _experiment_from_kafka(scanner: KafkaScanner, sources: Sources, trace_id: str) -> str | None:
    deserializer = avro_deserializer(sources.database_url)
    for table in ("experiments", "runs"):
        topic = sources.cdc.topic_for("public", table)
        result = scanner.scan(topic, lambda r: trace_id_of_record(r) == trace_id)
        for raw in result.records:
            value = decode(deserializer, raw.value) or {}
            row = value.get("after") or value.get("before") or {}
            experiment_id = row.get("id") if table == "experiments" else row.get("experiment_id")
            if experiment_id:
                return str(experiment_id)
    return None


def _decisions(scanner: KafkaScanner, sources: Sources, experiment_id: str,
               coordinates: set[str], since_ms: int | None) -> tuple[list[DecisionRecord],
                                                                     list[str]]:
    topic = sources.worker.decisions_topic
    needle = experiment_id.encode()
    origin_topics = {c.rsplit("/", 2)[0].encode() for c in coordinates}

    def may_match(raw: Any) -> bool:
        value = raw.value
        return value is not None and (needle in value or any(t in value for t in origin_topics))

    result = scanner.scan(topic, may_match, since_ms=since_ms)
    decisions = []
    for raw in result.records:
        decision = decision_record(raw)
        if decision is not None and (decision.experiment_id == experiment_id
                                     or decision.origin in coordinates):
            decisions.append(decision)
    return decisions, _scan_notes(topic, result, scanner)


def _worker_progress(scanner: KafkaScanner, sources: Sources, records: list[CdcRecord],
                     since_ms: int | None) -> WorkerProgress:
    settings = sources.worker
    topics = {record.topic for record in records}
    committed = committed_offsets(sources.bootstrap_servers, settings.app_id, topics)
    coordinates = {record.coordinates for record in records}

    def is_ours(raw: Any) -> bool:
        topic, partition = header(raw, headers.DLQ_TOPIC), header(raw, headers.DLQ_PARTITION)
        offset = header(raw, headers.DLQ_OFFSET)
        if topic is None or partition is None or offset is None:
            return False
        return f"{topic.decode()}/{partition.decode()}/{offset.decode()}" in coordinates

    letters = []
    for raw in scanner.scan(settings.dlq_topic, is_ours, since_ms=since_ms).records:
        origin = "/".join(header(raw, n).decode()  # type: ignore[union-attr]
                          for n in (headers.DLQ_TOPIC, headers.DLQ_PARTITION,
                                    headers.DLQ_OFFSET))
        error = (header(raw, headers.DLQ_ERROR) or b"").decode("utf-8", "replace")
        letters.append(DeadLetter(origin, error))
    return WorkerProgress(settings.app_id, settings.decisions_topic, committed, tuple(letters))


# -- putting it together ------------------------------------------------------------------


def _experiment_facts(conn: psycopg.Connection, query: str, experiment_id: str,
                      trace_id: str | None, scanner: KafkaScanner | None, sources: Sources,
                      notes: list[str]) -> Facts:
    experiment = _fetch_experiment(conn, experiment_id)
    if experiment is None:
        raise ExplainNotFound(f"experiment {experiment_id} (of trace {trace_id}) is not in "
                              "public.experiments", hint="was it deleted?")
    runs = _fetch_runs(conn, experiment)
    since_ms = _created_ms(conn, experiment_id)
    since_ms = since_ms - SCAN_MARGIN_MS if since_ms is not None else None
    records: list[CdcRecord] = []
    decisions: list[DecisionRecord] = []
    worker = None
    if scanner is None:
        notes.append(f"Kafka at {sources.bootstrap_servers} did not answer: change records and "
                     "decisions were not checked")
    else:
        records, scan_notes = _cdc_records(scanner, sources, (experiment, *runs), since_ms)
        notes += scan_notes
        coordinates = {record.coordinates for record in records}
        decisions, scan_notes = _decisions(scanner, sources, experiment_id, coordinates,
                                           since_ms)
        notes += scan_notes
        try:
            worker = _worker_progress(scanner, sources, records, since_ms)
        except Exception as exc:  # the verdict says "unknown" rather than failing
            notes.append(f"worker progress not read: {type(exc).__name__}: {exc}")
    trace_ids = list(dict.fromkeys(
        ([trace_id] if trace_id else []) + _experiment_trace_ids(conn, experiment_id)
        + [r.trace_id for r in records if r.trace_id]
        + [d.trace_id for d in decisions if d.trace_id]))
    jobs = _fetch_jobs(conn, experiment_id, trace_ids, [d.job_key for d in decisions
                                                        if d.job_key])
    trace_ids = list(dict.fromkeys(trace_ids + [j.trace_id for j in jobs if j.trace_id]))
    capture = None
    try:
        capture = capture_setup(conn, sources.cdc)
    except (LabstreamError, psycopg.Error) as exc:
        notes.append(f"connector state not read: {exc}")
    return Facts(
        query=query, experiment=experiment, runs=runs, trace_ids=tuple(trace_ids),
        cdc_records=tuple(records), decisions=tuple(decisions), jobs=jobs,
        traces=_span_facts(conn, trace_ids), capture=capture, worker=worker,
        notes=tuple(notes), kafka_checked=scanner is not None,
    )


def _trace_only_facts(conn: psycopg.Connection, query: str, trace_id: str,
                      scanner: KafkaScanner | None, sources: Sources) -> Facts:
    traces = _span_facts(conn, [trace_id])
    jobs = _fetch_jobs(conn, None, [trace_id], [])
    if not traces and not jobs:
        raise ExplainNotFound(
            f"nothing is known about {query!r}: no experiment with this id, and no span, job "
            f"or change record of trace {trace_id}",
            hint="check the id; spans reach labstream.spans a few seconds late")
    return Facts(query=query, experiment=None, trace_ids=(trace_id,), jobs=jobs, traces=traces,
                 notes=("the trace names no experiment: only its jobs and spans are shown",))
