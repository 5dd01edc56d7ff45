"""The batch worker: a confluent-kafka consume loop around `RecordHandler.handle_batch`.

Why not Faust for the hot path: the Faust agent (streams.app, still available with
LABSTREAM_WORKER_ENGINE=faust) moved a few hundred to ~1,000 events/s per worker;
per-record awaits, per-record acks and aiokafka's pure-Python fetch parsing cost more
than the decisions themselves (docs/BENCHMARKS.md, "Faust vs the batch loop"). This
loop does per batch what Faust did per record:

1. `consume(max_batch)` (librdkafka fetches and parses in C, in its own threads);
2. `handle_batch`: decode -> enrich -> route -> decide for every record in order, every
   output handed to librdkafka's producer (no await per record);
3. wait until Kafka acknowledged every output of the batch (`flush`);
4. queue the batch's fired jobs in one transaction (`JobRunner.submit_many`), retried
   until stored: no job without its decision in Kafka, no decision without its job;
5. store the batch's offsets; librdkafka commits stored offsets every
   `commit_interval_s`, on a rebalance and on close.

A crash anywhere before 5 hands the batch to the next owner of its partitions, which
handles it again: outputs are at least once, jobs exactly once (job keys). Per-key
order holds because a partition's records are handled one after the other, in order.
A delivery that fails after librdkafka's retries stops the worker without storing the
batch's offsets (exit 1: a restart handles it again).

SIGTERM/SIGINT: stop consuming after the current batch, hand queued jobs back (the job
runner's grace), commit, leave the group.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from base.errors import LabstreamError
from base.kafka import kafka_connection
from base.logs import kv
from base.settings import service_settings
from connectors.registry import registry_from_settings
from streams.agents import RawRecord, RecordHandler
from streams.codec import CdcDecoder, RoutedSerializer
from streams.config import WorkerSettings
from streams.records import Headers
from streams.reference import ReferenceFollower, ReferenceStore
from streams.topics import WorkerTopics, worker_topics

log = logging.getLogger(__name__)
SUBMIT_RETRY_S = 0.2
SUBMIT_RETRY_MAX_S = 5.0
FLUSH_TIMEOUT_S = 30.0


class DeliveryFailed(LabstreamError):
    """Kafka did not store an output of the batch: its offsets are not committed."""


class ProducerSink:
    """`Sink` on librdkafka's producer: hands records over, counts what is unacknowledged."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.outstanding = 0
        self.error: Any = None

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   headers: Headers) -> None:
        self.outstanding += 1
        while True:
            try:
                self.producer.produce(topic, value, key, headers=list(headers))
                return None
            except BufferError:  # librdkafka's queue is full: let it send some first
                self.producer.poll(0.05)

    def delivered(self, err: Any, _msg: Any) -> None:
        """The producer's `on_delivery` (set in its config: no callable passed per record)."""
        self.outstanding -= 1
        if err is not None and self.error is None:
            self.error = err

    def wait_acknowledged(self, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        """Block until Kafka acknowledged every record handed over (or raise)."""
        deadline = time.monotonic() + timeout_s
        while self.outstanding > 0:
            if time.monotonic() > deadline:
                raise DeliveryFailed(f"{self.outstanding} outputs not acknowledged by Kafka "
                                     f"within {timeout_s:.0f} s",
                                     hint="is Kafka up? the batch is handled again after a "
                                          "restart")
            self.producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
        if self.error is not None:
            error, self.error = self.error, None
            raise DeliveryFailed(f"Kafka refused an output: {error}",
                                 hint="the batch is handled again after a restart")


def consumer_config(settings: WorkerSettings) -> dict[str, Any]:
    return {
        **kafka_connection(settings.bootstrap_servers).librdkafka(f"{settings.app_id}-consumer"),
        "group.id": settings.app_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,  # commits what we *store*, after a batch is done
        "enable.auto.offset.store": False,
        "auto.commit.interval.ms": int(settings.commit_interval_s * 1000),
        "session.timeout.ms": int(settings.session_timeout_s * 1000),
        "heartbeat.interval.ms": int(max(1.0, settings.session_timeout_s / 4) * 1000),
        "fetch.wait.max.ms": 50,  # an idle partition answers soon: latency of a lone change
        "socket.nagle.disable": True,
        "log_level": 3,
    }


def producer_config(settings: WorkerSettings) -> dict[str, Any]:
    return {
        **kafka_connection(settings.bootstrap_servers).librdkafka(f"{settings.app_id}-producer"),
        "enable.idempotence": True,  # librdkafka's retries never reorder nor duplicate
        "acks": "all",
        "linger.ms": 2,
        "batch.num.messages": 10_000,
        # no compression: every subscriber library can read it (kafka-python needs an extra
        # package for lz4/zstd), and the records are small
        "message.max.bytes": max(1_000_000, settings.max_output_bytes + 100_000),
        "socket.nagle.disable": True,
        "log_level": 3,
    }


@dataclass
class _Resources:
    follower: ReferenceFollower


class BatchWorker:
    """One worker process: the consume loop, the reference follower, the job runner."""

    def __init__(self, settings: WorkerSettings, *, runner: Any | None = None) -> None:
        from confluent_kafka import Consumer, Producer

        self.settings = settings
        self.topics: WorkerTopics = worker_topics(settings)
        registry = registry_from_settings(database_url=service_settings().database_url)
        routed_serializer = RoutedSerializer(registry, self.topics.routed_topics)
        routed_serializer.register_all()
        self.store = ReferenceStore()
        self.follower = ReferenceFollower(bootstrap_servers=settings.bootstrap_servers,
                                          topics=self.topics.reference_topics, store=self.store,
                                          decoder=CdcDecoder(registry))
        self.resources = _Resources(self.follower)
        self.sink = ProducerSink(None)
        self.producer = Producer({**producer_config(settings),
                                  "on_delivery": self.sink.delivered})
        self.sink.producer = self.producer
        self.consumer = Consumer(consumer_config(settings))
        self.runner = runner
        self.handler = RecordHandler(
            settings=settings, topics=self.topics, store=self.store,
            decoder=CdcDecoder(registry), routed_serializer=routed_serializer, sink=self.sink,
            runner=runner, ready=self._wait_ready, flush=self._acknowledged)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-io")
        self._stopping = asyncio.Event()
        self._assigned: set[tuple[str, int]] = set()
        self.batches = 0
        self._frozen = False
        # wall seconds per phase of the loop (logged at stop; where a slow worker waits)
        self.phase_s = {"consume": 0.0, "handle": 0.0, "acknowledge": 0.0, "queue_jobs": 0.0}
        self.exit_code = 0

    # -- what metrics and health read --------------------------------------------------------
    def assignment(self) -> list[Any]:
        return list(self.consumer.assignment())

    # -- lifecycle ---------------------------------------------------------------------------
    def run(self) -> int:
        """Run until SIGTERM/SIGINT or a failed delivery; the process's exit code."""
        return asyncio.run(self._main())

    async def _main(self) -> int:
        self.loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.stop)
        await self.follower.start()
        if self.runner is not None:
            await self.runner.start()  # claims queued jobs, takes over a dead runner's
        self.consumer.subscribe(list(self.topics.event_topics), on_assign=self._on_assign,
                                on_revoke=self._on_revoke)
        # everything allocated at start-up (libraries, schemas, reference rows) lives as
        # long as the process: out of the collector's way, a collection of the loop's
        # short-lived objects no longer walks the whole heap
        gc.freeze()
        kv(log, "info", "worker started", engine="kafka", group=self.settings.app_id,
           topics=len(self.topics.event_topics), max_batch=self.settings.max_batch)
        try:
            await self._consume_loop()
        except DeliveryFailed as exc:
            kv(log, "error", "stopping the worker after a failed delivery; restart it",
               error=exc.message, hint=exc.hint)
            self.exit_code = 1
        finally:
            await self._shutdown()
        return self.exit_code

    def stop(self) -> None:
        if not self._stopping.is_set():
            kv(log, "info", "stopping: the current batch finishes, queued jobs are handed back")
            self._stopping.set()

    async def _shutdown(self) -> None:
        if self.runner is not None:
            # running jobs get LABSTREAM_JOBS_STOP_GRACE_S, then are killed and handed back
            await self.runner.aclose()
        await self.follower.stop()
        loop = asyncio.get_running_loop()
        # close(): commits the stored offsets and leaves the group (partitions move at once)
        await loop.run_in_executor(self._io, self.consumer.close)
        await loop.run_in_executor(self._io, self.producer.flush, 10.0)
        self._io.shutdown(wait=False)
        kv(log, "info", "worker stopped", batches=self.batches,
           records=self.handler.processed,
           **{f"{phase}_s": round(seconds, 2) for phase, seconds in self.phase_s.items()})

    async def _wait_ready(self) -> None:
        if self.follower.ready.is_set() and self._frozen:
            return
        try:
            await asyncio.wait_for(self.follower.ready.wait(),
                                   self.settings.reference_ready_timeout_s)
        except TimeoutError:
            kv(log, "warning", "reference data not fully loaded; going on",
               timeout_s=self.settings.reference_ready_timeout_s)
            self.follower.ready.set()
        if not self._frozen:  # the reference rows loaded at start live as long as we do
            gc.collect()
            gc.freeze()
            # a batch holds thousands of young objects: fewer gen-0 passes over them
            gc.set_threshold(20_000, 20, 20)
            self._frozen = True

    # -- the loop ----------------------------------------------------------------------------
    async def _consume_loop(self) -> None:
        loop = asyncio.get_running_loop()
        max_batch = self.settings.max_batch
        next_sweep = time.monotonic() + self.settings.lot_sweep_interval_s
        while not self._stopping.is_set():
            if time.monotonic() >= next_sweep:  # between batches: one flush owner at a time
                next_sweep = time.monotonic() + self.settings.lot_sweep_interval_s
                await self._sweep_lots()
            started = time.perf_counter()
            messages = await loop.run_in_executor(self._io, self._fetch, max_batch)
            self.phase_s["consume"] += time.perf_counter() - started
            raws = self._raw_records(messages)
            if raws:
                await self._handle(raws)
            elif self.sink.outstanding:
                self.producer.poll(0)

    def _fetch(self, max_batch: int) -> list[Any]:
        """What librdkafka has fetched already, up to `max_batch`; else wait for the first.

        `consume(n, timeout)` waits until it has n records or the timeout passed: with a
        trickle of records that is the whole timeout per batch (a lone change waited
        ~200 ms). A record arriving now is handled now; under load batches fill up."""
        messages: list[Any] = self.consumer.consume(max_batch, 0)
        if messages:
            return messages
        first = self.consumer.poll(0.2)
        if first is None:
            return []
        return [first, *self.consumer.consume(max_batch - 1, 0)] if max_batch > 1 else [first]

    def _raw_records(self, messages: list[Any]) -> list[RawRecord]:
        raws = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise DeliveryFailed(f"consumer error: {error}",
                                         hint="check the broker and the group's permissions")
                kv(log, "warning", "consumer error", error=str(error))
                continue
            raws.append(RawRecord(message.topic(), message.partition(), message.offset(),
                                  message.key(), message.value(), message.headers() or ()))
        return raws

    async def _handle(self, raws: list[RawRecord]) -> None:
        phases = self.phase_s
        started = time.perf_counter()
        await self.handler.handle_batch(raws)
        handled = time.perf_counter()
        await self._acknowledged()
        acked = time.perf_counter()
        requests = self.handler.take_requests()
        if requests and self.runner is not None:
            await self._submit(requests)
        self._store_offsets(raws)
        if self.handler.decision_counts:
            kv(log, "info", "batch handled", records=len(raws), jobs_queued=len(requests),
               **{f"decisions_{outcome}": count
                  for outcome, count in self.handler.decision_counts.items()})
            self.handler.decision_counts.clear()
        done = time.perf_counter()
        phases["handle"] += handled - started
        phases["acknowledge"] += acked - handled
        phases["queue_jobs"] += done - acked
        self.batches += 1

    async def _submit(self, requests: list[Any]) -> None:
        """Queue the batch's jobs in one transaction; retried until stored (their records'
        offsets are not stored meanwhile, so a crash here queues them again)."""
        assert self.runner is not None
        delay = SUBMIT_RETRY_S
        while True:
            try:
                await self.runner.submit_many(requests)
                return
            except Exception as exc:
                kv(log, "error", "jobs not queued; retrying (their records are not "
                   "committed meanwhile)", jobs=len(requests), retry_in_s=delay,
                   error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, SUBMIT_RETRY_MAX_S)

    def _store_offsets(self, raws: list[RawRecord]) -> None:
        from confluent_kafka import TopicPartition

        last: dict[tuple[str, int], int] = {}
        for raw in raws:
            last[(raw.topic, raw.partition)] = raw.offset
        offsets = [TopicPartition(topic, partition, offset + 1)
                   for (topic, partition), offset in last.items()
                   if (topic, partition) in self._assigned]
        if offsets:
            self.consumer.store_offsets(offsets=offsets)

    # rebalance callbacks run inside consume(), between batches: everything consumed
    # before has been handled and its offsets stored, so librdkafka's commit on revoke
    # covers it
    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        self._assigned.update((tp.topic, tp.partition) for tp in partitions)
        kv(log, "info", "partitions assigned", partitions=len(partitions))

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self._assigned.discard((tp.topic, tp.partition))
        kv(log, "info", "partitions revoked", partitions=len(partitions))

    # -- the lot sweep: one worker of the group, the one owning the first event partition --
    def _is_leader(self) -> bool:
        first = sorted(self.topics.event_topics)[0]
        return (first, 0) in self._assigned

    async def _sweep_lots(self) -> None:
        if not self._is_leader():
            return
        try:
            count = await self.handler.sweep_expiring_lots()
        except DeliveryFailed:
            raise
        except Exception as exc:  # the next sweep tries again
            kv(log, "error", "lot sweep failed", error=f"{type(exc).__name__}: {exc}")
            return
        if count:
            kv(log, "info", "expiring lots announced by the sweep", lots=count)

    async def _acknowledged(self) -> None:
        """Wait until Kafka stored every output so far (the handler's `flush`)."""
        if self.sink.outstanding or self.sink.error is not None:
            await asyncio.get_running_loop().run_in_executor(self._io,
                                                             self.sink.wait_acknowledged)
