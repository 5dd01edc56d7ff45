"""The worker's /metrics, /healthz and /readyz (LABSTREAM_METRICS_PORT).

Read at scrape time, nothing per record: the handler's processed / dead-lettered
counts, the consumer group's lag per partition (committed offset vs log end, from the
broker: what `kafka-consumer-groups --describe` shows), and the job queue per tenant
from `public.jobs`. Job durations, outcomes and slot waits are observed by the job
runner once per job (tracing.metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import psycopg
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from base.kafka import kafka_connection
from base.settings import service_settings
from streams.config import WorkerSettings
from tracing import health, metrics

DESCRIBE: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "labstream_worker_records_total": (
        "counter", "Records the worker handled, by outcome.", ("outcome",)),
    "labstream_dlq_records_total": ("counter", "Records sent to the dead-letter topic.", ()),
    "labstream_lot_sweeps_total": (
        "counter", "Expiring-lot sweeps this worker finished (only the group's leader sweeps).",
        ()),
    "labstream_worker_consumer_lag": (
        "gauge", "Records not yet committed by the worker's group: log end - committed offset.",
        ("topic", "partition")),
    "labstream_job_queue_depth": (
        "gauge", "Jobs queued and not started, per tenant (public.jobs).", ("tenant",)),
    "labstream_job_queue_oldest_seconds": (
        "gauge", "Age of the oldest queued job, per tenant.", ("tenant",)),
}
QUEUE_SQL = """
SELECT coalesce(tenant_id, ''), count(*), extract(epoch FROM now() - min(created_at))::float8
  FROM public.jobs WHERE status = 'queued' GROUP BY 1
"""
KAFKA_TIMEOUT_S = 5.0


class WorkerMetrics:
    def __init__(self, built: Any, settings: WorkerSettings) -> None:
        self.built = built
        self.settings = settings
        self.database_url = service_settings().database_url
        self._admin: AdminClient | None = None
        self._lock = threading.Lock()

    def admin(self) -> AdminClient:
        with self._lock:
            if self._admin is None:
                self._admin = AdminClient(
                    kafka_connection(self.settings.bootstrap_servers).librdkafka("worker-lag"))
            return self._admin

    def read(self) -> dict[str, Any]:
        handler = self.built.handler
        values: dict[str, Any] = {
            "labstream_worker_records_total": {
                ("processed",): handler.processed - handler.dead_lettered,
                ("dead_lettered",): handler.dead_lettered},
            "labstream_dlq_records_total": handler.dead_lettered,
            "labstream_lot_sweeps_total": handler.sweeps,
        }
        with contextlib.suppress(Exception):  # the broker is down: the rest still answers
            values["labstream_worker_consumer_lag"] = {
                (topic, str(partition)): lag for (topic, partition), lag in self.lag().items()}
        try:
            depth, oldest = self.job_queue()
            values["labstream_job_queue_depth"] = depth
            values["labstream_job_queue_oldest_seconds"] = oldest
        except psycopg.Error:
            pass
        return values

    def lag(self) -> dict[tuple[str, int], int]:
        """Log end offset - committed offset, per partition the group has committed on."""
        admin = self.admin()
        group = self.settings.app_id
        futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                    request_timeout=KAFKA_TIMEOUT_S)
        committed = [tp for tp in futures[group].result(KAFKA_TIMEOUT_S).topic_partitions
                     if tp.offset >= 0]
        if not committed:
            return {}
        ends = admin.list_offsets({TopicPartition(tp.topic, tp.partition): OffsetSpec.latest()
                                   for tp in committed}, request_timeout=KAFKA_TIMEOUT_S)
        lag = {}
        for tp in committed:
            end = ends[TopicPartition(tp.topic, tp.partition)].result(KAFKA_TIMEOUT_S).offset
            lag[(tp.topic, tp.partition)] = max(0, end - tp.offset)
        return lag

    def job_queue(self) -> tuple[dict[tuple[str], float], dict[tuple[str], float]]:
        with psycopg.connect(self.database_url, connect_timeout=2,
                             application_name="labstream-worker-metrics") as conn:
            rows = conn.execute(QUEUE_SQL).fetchall()
        return ({(tenant,): float(count) for tenant, count, _ in rows},
                {(tenant,): float(age or 0.0) for tenant, _, age in rows})

    # -- health -----------------------------------------------------------------------------

    def loop_turns(self) -> str | None:
        """The event loop runs callbacks: a blocked loop processes nothing."""
        loop = self.built.loop
        if loop is None or not loop.is_running():
            return "the event loop is not running"
        done = threading.Event()
        loop.call_soon_threadsafe(done.set)
        return None if done.wait(2.0) else "the event loop did not answer within 2 s"

    def database(self) -> str | None:
        with psycopg.connect(self.database_url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return None

    def kafka(self) -> str | None:
        self.admin().list_topics(timeout=KAFKA_TIMEOUT_S)
        return None

    def assigned(self) -> str | None:
        assignment = self.built.assignment()
        return None if assignment else "no partitions assigned to this worker (yet)"

    def reference_loaded(self) -> str | None:
        ready: asyncio.Event = self.built.resources.follower.ready
        return None if ready.is_set() else "reference data still loading"


def start(built: Any, settings: WorkerSettings) -> None:
    """Serve the worker's metrics and health when LABSTREAM_METRICS_PORT is set."""
    port = metrics.metrics_port()
    if port is None:
        return
    observed = WorkerMetrics(built, settings)
    metrics.register_collector("worker", metrics.CallbackCollector(observed.read, DESCRIBE))
    checks = health.HealthChecks(
        "labstream-worker",
        live={"event_loop": observed.loop_turns},
        ready={"database": observed.database, "kafka": observed.kafka,
               "partitions": observed.assigned, "reference_data": observed.reference_loaded},
    )
    health.serve(port, checks)
