"""What an agent does with one consumed record, independent of Faust.

`RecordHandler.handle(raw)` runs the whole chain for one CDC record inside a
CONSUMER span `process <topic>` (parent: the trace context in the record's
headers): decode -> enrich (waiting for late reference rows) -> route -> publish
routed events and every decision -> once Kafka acknowledged them, queue the fired
jobs (so no job ever runs without its decision record). Any failure of this
record dead-letters it (original bytes + error headers) and the agent goes on;
an output too large for Kafka is replaced by a reference in the dead-letter
topic. Faust only feeds records in (`streams.app`); replay and tests call
`handle` directly with their own `Sink`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, TraceFlags

from base.contracts import headers
from base.logs import kv
from streams import codec, deadletter, replay_consent
from streams.codec import CdcDecoder, RoutedSerializer
from streams.config import WorkerSettings
from streams.enrich import GaveUp, enrich, enrich_waiting
from streams.jobqueue import JobQueuer
from streams.jobs.model import job_id_for
from streams.records import ChangeRecord, Decision, Headers, RoutedEvent, SourceCoordinates
from streams.reference import ReferenceStore
from streams.route import RouteSettings, expiring_lots, lots_announced, route_explained
from streams.topics import WorkerTopics
from streams.trigger import TriggerRule, decide, job_request
from tracing import semconv
from tracing.propagation import extract_headers, inject_headers, job_environment

log = logging.getLogger(__name__)
REPLAY_HEADER_PREFIX = headers.REPLAY_PREFIX
RERUN_SUCCEEDED_HEADER = replay_consent.RERUN_SUCCEEDED_HEADER  # signed: see replay_consent
SUBMIT_RETRY_S = 0.2
SUBMIT_RETRY_MAX_S = 5.0


class Sink(Protocol):
    """Where produced records go.

    `send` returns once the record is handed over; it may return an awaitable that
    completes when the broker has stored it (the Faust sink does: the agent acks a
    record only after that, see `streams.acks`), or None when it is stored already.
    """

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   headers: Headers) -> Awaitable[Any] | None: ...


class JobSubmitter(Protocol):
    async def submit(self, request: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    @property
    def coordinates(self) -> SourceCoordinates:
        return SourceCoordinates(self.topic, self.partition, self.offset)


class RecordHandler:
    def __init__(
        self,
        *,
        settings: WorkerSettings,
        topics: WorkerTopics,
        store: ReferenceStore,
        decoder: CdcDecoder,
        routed_serializer: RoutedSerializer,
        sink: Sink,
        runner: JobSubmitter | None,
        ready: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch_jobs: bool = False,
        flush: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.store = store
        self.decoder = decoder
        self.routed_serializer = routed_serializer
        self.sink = sink
        self.runner = runner
        self._ready = ready
        # a sink that returns no deliveries (the batch worker's): waits for its acks
        self._flush = flush
        self._clock = clock
        self.route_settings = RouteSettings(settings.fridge_max_celsius, settings.lot_expiry_days)
        # item id -> lot already announced as expiring (in memory: the job key of a lot
        # is the lot itself, so announcing again after a restart launches nothing twice)
        self.announced_lots: dict[str, str] = {}
        self.gave_up = GaveUp()
        self.tracer = trace.get_tracer("streams.agents")
        self.processed = 0
        self.dead_lettered = 0
        self.sweeps = 0  # expiring-lot sweeps finished (/metrics: is the leader sweeping?)
        self.consent_key = replay_consent.consent_key()
        self.sent = 0  # records handed to the sink (outputs, dead letters)
        self._requests: list[Any] = []  # batch mode: fired jobs not yet taken
        self._job_env: dict[str, str] | None = None
        self._run_topics: dict[str, int] | None = None  # batch mode: outputs of the run
        self._decision_log_level = "info"  # "debug" once handle_batch is used
        self.decision_counts: dict[str, int] = {}  # outcome -> decisions since the last take
        # batch_jobs (the worker): fired jobs are queued by a background task, many records
        # per transaction, and each record's ack waits for them (streams.jobqueue); else each
        # record queues its own jobs before `handle` returns (replay, tests)
        self.queuer = (JobQueuer(self._submit_all)
                       if batch_jobs and runner is not None else None)

    async def handle(self, raw: RawRecord) -> list[Awaitable[Any]]:
        """Process one record; returns the deliveries of what it produced (to ack after)."""
        if self._ready is not None:
            await self._ready()
        deliveries: list[Awaitable[Any]] = []
        with semconv.process_span(
            self.tracer, topic=raw.topic, headers=list(raw.headers), partition=raw.partition,
            offset=raw.offset, key=raw.key, consumer_group=self.settings.app_id,
        ) as span:
            try:
                await self._process(raw, deliveries)
            except Exception as exc:  # one bad record must never stop the agent
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                await self._dead_letter(raw, exc, deliveries)
        self.processed += 1
        return deliveries

    async def handle_batch(self, raws: Sequence[RawRecord]) -> list[Awaitable[Any]]:
        """Process consecutive records (the batch worker, `streams.batchworker`).

        Each run of consecutive records that share a trace context (the rows of one
        source transaction: the connector gives them one `traceparent`) gets one
        CONSUMER span `process <topic>` and one PRODUCER span `send` for all its
        outputs, whose context every output carries; a job fired by one of them joins
        that trace. Per-record spans cost the worker about half its CPU
        (docs/BENCHMARKS.md). Fired jobs are collected (`take_requests`), to be queued
        once the outputs are acknowledged by Kafka. Returns the deliveries of sinks
        that return them (tests); the batch worker's sink tracks its own.
        """
        if self._ready is not None:
            await self._ready()
        self._decision_log_level = "debug"  # 10k lines/s would cost the worker a fifth
        deliveries: list[Awaitable[Any]] = []
        runs = trace_runs(raws)
        budget = self.settings.trace_runs_per_batch
        # full load, small transactions: the runs after the first `budget` share one span
        # (handled after them: the records' order is the batch's order)
        linked, runs = runs[budget:], runs[:budget]
        for run in runs:
            first, last = run[0], run[-1]
            attributes: dict[str, Any] = {}
            table = self.topics.event_topics.get(first.topic)
            if table is not None:
                attributes[semconv.LAB_TABLE] = table
            if len(run) > 1:
                attributes[semconv.MESSAGING_BATCH_COUNT] = len(run)
                attributes[semconv.LAB_OFFSET_LAST] = last.offset
            with semconv.process_span(
                self.tracer, topic=first.topic, headers=list(first.headers),
                partition=first.partition, offset=first.offset,
                key=first.key if len(run) == 1 else None,
                consumer_group=self.settings.app_id, attributes=attributes,
            ) as span:
                self._job_env = job_environment()  # the jobs of this run join its trace
                self._run_topics = {}
                with semconv.run_send_span(self.tracer) as send:
                    out_headers = self._outgoing_headers(first.headers)
                    await self._process_run(run, deliveries, out_headers, span)
                    semconv.finish_send_span(send, self._run_topics)
                self._job_env = self._run_topics = None
        if linked:
            await self._handle_linked(linked, deliveries)
        return deliveries

    async def _handle_linked(self, runs: list[list[RawRecord]],
                             deliveries: list[Awaitable[Any]]) -> None:
        """Runs beyond the batch's span budget: one CONSUMER span `process <topic>` for all
        of them (a trace of its own), linked to each run's context; each run's outputs and
        jobs carry the run's own incoming context, so its trace still goes from the front
        end to the job (`labstream trace` shows the batch span as a linking span). Two SDK
        spans per single-row transaction cost the worker ~60 % CPU at full load."""
        topics = sorted({run[0].topic for run in runs})
        links = [link for run in runs if (link := _link_of(run[0].headers)) is not None]
        count = sum(len(run) for run in runs)
        attributes: dict[str, Any] = {
            **semconv.process_attributes(topic=topics[0] if len(topics) == 1 else "*",
                                         consumer_group=self.settings.app_id),
            semconv.MESSAGING_BATCH_COUNT: count, semconv.LAB_LINKED_RUNS: len(runs)}
        if len(topics) > 1:
            attributes[semconv.LAB_TOPICS] = topics
            del attributes[semconv.MESSAGING_DESTINATION]
        name = f"process {topics[0]}" if len(topics) == 1 else "process"
        with self.tracer.start_as_current_span(name, context=Context(),
                                               kind=trace.SpanKind.CONSUMER, links=links,
                                               attributes=attributes) as span:
            for run in runs:
                first = run[0]
                self._job_env = _job_env_of(first.headers)
                # the run's own incoming context (and replay headers) go out unchanged
                await self._process_run(run, deliveries, _context_key(first.headers), span)
            self._job_env = None

    async def _process_run(self, run: list[RawRecord], deliveries: list[Awaitable[Any]],
                           out_headers: Headers, span: Any) -> None:
        """Each record of a run in order; a failing one is recorded on `span` (with its
        offset) and dead-lettered, and the run goes on."""
        for raw in run:
            try:
                await self._process(raw, deliveries, out_headers)
            except Exception as exc:  # one bad record must never stop the agent
                span.record_exception(exc, attributes={
                    semconv.MESSAGING_OFFSET: raw.offset,
                    semconv.MESSAGING_DESTINATION: raw.topic})
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                await self._dead_letter(raw, exc, deliveries)
            self.processed += 1

    def take_requests(self) -> list[Any]:
        """The job requests fired since the last call (batch mode), in record order."""
        taken, self._requests = self._requests, []
        return taken

    async def _send(self, deliveries: list[Awaitable[Any]], topic: str, key: bytes | None,
                    value: bytes | None, headers: Headers,
                    source: SourceCoordinates | None = None) -> None:
        size = deadletter.record_size(key, value, headers)
        if size > self.settings.max_output_bytes:
            # the broker would refuse it: a reference to it goes to the DLQ instead, and the
            # record's other outputs still go out (never a crash, never a skipped record)
            letter = deadletter.too_large(topic=topic, size=size,
                                          limit=self.settings.max_output_bytes, key=key,
                                          source=source)
            kv(log, "warning", "output too large for Kafka; a reference goes to the DLQ",
               topic=topic, bytes=size, limit=self.settings.max_output_bytes)
            self.dead_lettered += 1
            topic, key, value, headers = self.topics.dlq, letter.key, letter.value, letter.headers
        self.sent += 1
        if self._run_topics is not None:
            self._run_topics[topic] = self._run_topics.get(topic, 0) + 1
        delivery = await self.sink.send(topic, key, value, headers)
        if delivery is not None:
            deliveries.append(delivery)

    async def _process(self, raw: RawRecord, deliveries: list[Awaitable[Any]],
                       batch_headers: Headers | None = None) -> None:
        change = await self.decoder.decode_async(raw.key, raw.value, raw.coordinates, raw.headers)
        if change is None:
            return  # tombstone after a delete: nothing happened to route
        if batch_headers is None:  # batch mode: the run's span names its table once
            semconv.set_lab_attributes(trace.get_current_span(), table=change.table,
                                       operation=change.envelope.op)
        enriched = await enrich_waiting(change, self.store,
                                        timeout_s=self.settings.enrichment_wait_s,
                                        poll_s=self.settings.enrichment_poll_s,
                                        gave_up=self.gave_up)
        outcome = route_explained(enriched, self.route_settings,
                                  announced_lots=self.announced_lots)
        decisions: list[Decision] = []
        requests: list[Any] = []
        if outcome.unroutable is not None:
            decisions.append(_unroutable_decision(change, outcome.unroutable, self._clock()))
        rerun = replay_consent.consented(raw.headers, key=self.consent_key, record_key=raw.key,
                                         record_value=raw.value)
        for event in outcome.events:
            made, wanted = self._decide(event, rerun_succeeded=rerun)
            decisions.extend(made)
            requests.extend(wanted)
        if batch_headers is not None:  # batch mode: the run's PRODUCER span is current
            await self._emit(deliveries, outcome.events, decisions, batch_headers, raw)
            self._requests.extend(requests)
            self.announced_lots.update(lots_announced(outcome.events))
            return
        # every output of this record in one go: one broker round trip, one PRODUCER span
        topics = [self.topics.routed_topics[e.kind] for e in outcome.events]
        with semconv.batch_send_span(self.tracer,
                                     topics=topics + [self.topics.decisions] * len(decisions)):
            await self._emit(deliveries, outcome.events, decisions,
                             self._outgoing_headers(raw.headers), raw)
        if requests and self.queuer is not None:
            deliveries.append(self.queuer.add(list(deliveries), requests))
        else:
            await self._submit_after_ack(deliveries, requests)
        self.announced_lots.update(lots_announced(outcome.events))

    async def _emit(self, deliveries: list[Awaitable[Any]], events: Sequence[RoutedEvent],
                    decisions: Sequence[Decision], out_headers: Headers,
                    raw: RawRecord) -> None:
        for event in events:
            await self._publish_routed(deliveries, event, out_headers, raw.coordinates)
        for item in decisions:
            await self._send(deliveries, self.topics.decisions, codec.decision_key(item),
                             codec.decision_value(item), out_headers, raw.coordinates)

    async def sweep_expiring_lots(self) -> int:
        """Announce lots that entered the expiry window without a change to their row.

        Run periodically by one worker (the group leader). Lots announced here or by
        the change path have the same event id, hence the same job keys.
        """
        if self._ready is not None:
            await self._ready()
        now = self._clock()
        latest = [enrich(change, self.store) for change in self.store.latest_inventory_changes()]
        events = expiring_lots(latest, now_ms=int(now.timestamp() * 1000),
                               settings=self.route_settings, announced_lots=self.announced_lots)
        deliveries: list[Awaitable[Any]] = []
        for event in events:
            with self.tracer.start_as_current_span("sweep expiring lots"):
                headers = self._outgoing_headers(())
                await self._publish_routed(deliveries, event, headers, None)
                decisions, requests = self._decide(event)
                for decision in decisions:
                    await self._send(deliveries, self.topics.decisions,
                                     codec.decision_key(decision),
                                     codec.decision_value(decision), headers, None)
                await self._submit_after_ack(deliveries, requests)
        await asyncio.gather(*deliveries)
        self.announced_lots.update(lots_announced(events))
        self.sweeps += 1
        return len(events)

    async def _publish_routed(self, deliveries: list[Awaitable[Any]], event: RoutedEvent,
                              headers: Headers, source: SourceCoordinates | None) -> None:
        value = self.routed_serializer.value(event)
        await self._send(deliveries, self.topics.routed_topics[event.kind],
                         RoutedSerializer.key(event), value, headers, source)

    def _decide(self, event: RoutedEvent, *,
                rerun_succeeded: bool = False) -> tuple[list[Decision], list[Any]]:
        """The decisions for `event` and the job requests of the fired ones.

        Nothing is submitted here: a job is queued only once its decision is stored in
        Kafka (`_submit_after_ack`), so no job runs without its decision record.
        """
        rules = self.store.rules()
        decisions = decide(event, rules, now=self._clock())
        results, requests = [], []
        log_each = log.isEnabledFor(logging.getLevelName(self._decision_log_level.upper()))
        for decision in decisions:
            if decision.outcome == "fired" and self.runner is not None:
                decision, request = self._request(decision, _fired_rule(rules, decision),
                                                  rerun_succeeded=rerun_succeeded)
                if request is not None:
                    requests.append(request)
            if log_each:  # batch mode: DEBUG, one INFO line per batch (`decision_counts`)
                kv(log, self._decision_log_level, "trigger decision", outcome=decision.outcome,
                   reason=decision.reason, kind=decision.event_kind, rule_id=decision.rule_id,
                   job_key=decision.job_key)
            self.decision_counts[decision.outcome] = \
                self.decision_counts.get(decision.outcome, 0) + 1
            results.append(decision)
        return results, requests

    def _request(self, decision: Decision, rule: TriggerRule, *,
                 rerun_succeeded: bool = False) -> tuple[Decision, Any | None]:
        # the process span (of this record, or of its run in batch mode): the job joins it
        env = self._job_env if self._job_env is not None else job_environment()
        try:
            request = job_request(decision, rule, traceparent=env.get("TRACEPARENT"),
                                  tracestate=env.get("TRACESTATE"))
        except Exception as exc:  # an invalid rule: the decision says so, no job
            return _with(decision, outcome="failed", reason="submit_failed",
                         detail=f"rule {rule.id}: job not submitted: {type(exc).__name__}: "
                                f"{exc}"), None
        extra: dict[str, Any] = {"job_id": job_id_for(request.job_key)}
        if rerun_succeeded:  # a signed replay consent: the decision says so (explain, audit)
            request = _with(request, rerun_succeeded=True)
            extra["rerun_succeeded"] = True
        return _with(decision, extra=extra), request

    async def _submit_after_ack(self, deliveries: list[Awaitable[Any]],
                                requests: list[Any]) -> None:
        """Queue the jobs once every output of this record (its decisions) is acknowledged.

        A failed delivery: nothing is queued; the record is not acked either (the worker
        stops, see streams.app) and is handled again after the restart. A failed submit
        is retried until it is stored: the decision already names the job.
        """
        if not requests or self.runner is None:
            return
        outcomes: list[Any] = list(await asyncio.gather(*deliveries, return_exceptions=True))
        if self._flush is not None:
            try:
                await self._flush()
            except Exception as exc:  # the worker stops: nothing after this is committed
                kv(log, "error", "decision not stored in Kafka; its jobs are not queued",
                   error=deadletter.describe(exc))
                raise
        failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failed is not None:
            kv(log, "error", "decision not stored in Kafka; its jobs are not queued",
               error=deadletter.describe(failed))
            return
        delay = SUBMIT_RETRY_S
        while True:
            try:
                await self._submit_all(requests)
                return
            except Exception as exc:
                kv(log, "error", "jobs not queued; retrying (the record is not acked meanwhile)",
                   jobs=len(requests), retry_in_s=delay, error=deadletter.describe(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, SUBMIT_RETRY_MAX_S)

    async def _submit_all(self, requests: Sequence[Any]) -> None:
        assert self.runner is not None
        submit_many = getattr(self.runner, "submit_many", None)
        if submit_many is not None:
            await submit_many(requests)
        else:
            for request in requests:
                await self.runner.submit(request)

    def _outgoing_headers(self, incoming: Headers) -> Headers:
        kept = [(name, raw) for name, raw in incoming if name.startswith(REPLAY_HEADER_PREFIX)]
        return tuple(inject_headers(kept))

    async def _dead_letter(self, raw: RawRecord, error: Exception,
                           deliveries: list[Awaitable[Any]]) -> None:
        kv(log, "warning", "record dead-lettered", topic=raw.topic, partition=raw.partition,
           offset=raw.offset, error=deadletter.describe(error))
        letter = deadletter.dead_letter(error, key=raw.key, value=raw.value, headers=raw.headers,
                                        coordinates=raw.coordinates)
        # what this record produced before it failed is still delivered (at least once);
        # a letter too large for the broker becomes a reference to the record (in _send)
        await self._send(deliveries, self.topics.dlq, letter.key, letter.value, letter.headers,
                         raw.coordinates)
        self.dead_lettered += 1


def _fired_rule(rules: Sequence[TriggerRule | Any], decision: Decision) -> TriggerRule:
    """The rule a fired decision names (a rule given as a row that decide() could parse
    is parsed here)."""
    for rule in rules:
        if isinstance(rule, TriggerRule):
            if rule.id == decision.rule_id:
                return rule
        elif str(rule.get("id")) == decision.rule_id:
            return TriggerRule.from_row(rule)
    raise LookupError(f"fired rule {decision.rule_id} is not among the rules decided on")


def trace_runs(raws: Sequence[RawRecord]) -> list[list[RawRecord]]:
    """Consecutive records with the same trace context (and replay headers), in order."""
    runs: list[list[RawRecord]] = []
    last_key: object = _NO_KEY
    for raw in raws:
        key = _context_key(raw.headers)
        if key != last_key or raw.topic != runs[-1][-1].topic:
            runs.append([raw])
            last_key = key
        else:
            runs[-1].append(raw)
    return runs


def _traceparent_of(record_headers: Headers) -> tuple[str | None, str | None]:
    parent = state = None
    for name, value in record_headers:
        if name == headers.TRACEPARENT and value:
            parent = value.decode("ascii", "replace")
        elif name == headers.TRACESTATE and value:
            state = value.decode("ascii", "replace")
    return parent, state


def _link_of(record_headers: Headers) -> Link | None:
    """A link to the context of a record's headers (W3C parsed here: ~1 µs, not the
    propagator's ~10), else through the propagator (a beeline header)."""
    parent, _ = _traceparent_of(record_headers)
    if parent is not None and len(parent) == 55 and parent[2] == parent[35] == parent[52] == "-":
        try:
            context = SpanContext(int(parent[3:35], 16), int(parent[36:52], 16), is_remote=True,
                                  trace_flags=TraceFlags(int(parent[53:55], 16)))
        except ValueError:
            return None
        return Link(context) if context.is_valid else None
    return semconv.creation_link(extract_headers(list(record_headers)))


def _job_env_of(record_headers: Headers) -> dict[str, str]:
    """A job's TRACEPARENT/TRACESTATE: the record's own context (linked runs)."""
    parent, state = _traceparent_of(record_headers)
    if parent is None:
        return job_environment(extract_headers(list(record_headers)))
    return {headers.ENV_TRACEPARENT: parent, **({headers.ENV_TRACESTATE: state} if state else {})}


_NO_KEY = object()
_CONTEXT_HEADERS = frozenset((headers.TRACEPARENT, headers.TRACESTATE, headers.BEELINE))


def _context_key(record_headers: Headers) -> Headers:
    return tuple((name, value) for name, value in record_headers
                 if name in _CONTEXT_HEADERS or name.startswith(REPLAY_HEADER_PREFIX))


def _with(item: Any, **changes: Any) -> Any:
    return replace(item, **changes)


def _unroutable_decision(change: ChangeRecord, detail: str, now: datetime) -> Decision:
    return Decision(outcome="skipped", reason="enrichment_incomplete", detail=detail,
                    event_kind=None, event_id=change.change_id,
                    decided_at_ms=int(now.timestamp() * 1000), origin=change.coordinates)
