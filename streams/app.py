"""The thin Faust app: topics in, one agent per event topic, plain functions inside.

`create_worker_app(settings)` builds a `faust.App` (broker `kafka://` from the
service settings, app id = consumer group from `WorkerSettings`) whose agents
only turn Faust events into `RawRecord`s and call `RecordHandler.handle`.
Agents consume raw bytes; decoding happens inside the handler so that an
undecodable record reaches the dead-letter topic instead of crashing the agent.

Agent concurrency is 1 on purpose: faust-streaming can commit an offset past a
record still in flight when an agent has concurrency > 1 (issue #606, open), so
records are handled one after the other and the worker scales by partitions and
by more workers in the same group. Acks are manual (`stream.noack()`): a record
is acked once everything it produced is stored, strictly in arrival order
(`streams.acks.InOrderAcks`), so the agent need not wait for the broker between
records and the committed offset never passes a record whose outputs could be lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import faust
from mode import Service

from base.kafka import kafka_connection
from base.logs import kv
from base.settings import service_settings
from connectors.registry import registry_from_settings
from streams.acks import InOrderAcks
from streams.agents import RawRecord, RecordHandler
from streams.codec import CdcDecoder, RoutedSerializer, header_tuples
from streams.config import WorkerSettings
from streams.records import Headers
from streams.reference import ReferenceFollower, ReferenceStore
from streams.topics import WorkerTopics, worker_topics

log = logging.getLogger(__name__)
AGENT_CONCURRENCY = 1  # see the module docstring: > 1 can lose records on a crash


class FaustSink:
    """Publishes through the app's producer; returns the delivery future.

    The agent acks a record once all its deliveries completed, in order
    (`streams.acks.InOrderAcks`), so its offset is committed only after its outputs
    are stored. (Faust's alternative, attaching outputs to the source offset and
    publishing them at commit time, measured 2.6x slower than awaiting each record.)
    """

    def __init__(self, app: faust.App) -> None:
        self._app = app
        self._channels: dict[str, Any] = {}

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   headers: Headers) -> Awaitable[Any]:
        channel = self._channels.get(topic)
        if channel is None:
            channel = self._app.topic(topic, key_serializer="raw", value_serializer="raw")
            self._channels[topic] = channel
        # force: publish now, not at commit time (Faust "attachments")
        delivery: Awaitable[Any] = await channel.send(
            key=key, value=value, headers=list(headers), force=True)
        return delivery


class WorkerResources(Service):
    """Starts the reference follower (and job runner) with the worker, stops them after."""

    def __init__(self, follower: ReferenceFollower, runner: Any | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.follower = follower
        self.runner = runner

    async def on_start(self) -> None:
        await self.follower.start()
        if self.runner is not None:
            await self.runner.start()  # claims queued jobs, takes over a dead runner's

    async def on_stop(self) -> None:
        await self.follower.stop()
        if self.runner is not None:
            # running jobs get LABSTREAM_JOBS_STOP_GRACE_S, then are killed and handed back
            await self.runner.aclose()


@dataclass
class WorkerApp:
    app: faust.App
    handler: RecordHandler
    resources: WorkerResources
    topics: WorkerTopics

    # what metrics and health read (streams.metrics), as on the batch worker
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop = self.app.loop
        return loop

    def assignment(self) -> set[Any]:
        consumer = getattr(self.app, "consumer", None)
        return set(consumer.assignment()) if consumer is not None else set()


def create_worker_app(settings: WorkerSettings, *, runner: Any | None = None) -> WorkerApp:
    """The app, its handler and the services to start with it (topics must exist)."""
    topics = worker_topics(settings)
    registry = registry_from_settings(database_url=service_settings().database_url)
    routed_serializer = RoutedSerializer(registry, topics.routed_topics)
    routed_serializer.register_all()
    # Faust creates only the last level of its data dir
    settings.resolved_data_dir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        **kafka_connection(settings.bootstrap_servers).faust(),
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_commit_interval=settings.commit_interval_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 4),
        datadir=str(settings.resolved_data_dir),
    )
    store = ReferenceStore()
    follower = ReferenceFollower(bootstrap_servers=settings.bootstrap_servers,
                                 topics=topics.reference_topics, store=store,
                                 decoder=CdcDecoder(registry))

    async def wait_ready() -> None:
        if follower.ready.is_set():
            return
        try:
            await asyncio.wait_for(follower.ready.wait(), settings.reference_ready_timeout_s)
        except TimeoutError:
            kv(log, "warning", "reference data not fully loaded; going on",
               timeout_s=settings.reference_ready_timeout_s)
            follower.ready.set()

    handler = RecordHandler(settings=settings, topics=topics, store=store,
                            decoder=CdcDecoder(registry), routed_serializer=routed_serializer,
                            sink=FaustSink(app), runner=runner, ready=wait_ready,
                            batch_jobs=True)
    for topic_name, table in topics.event_topics.items():
        _add_agent(app, handler, topic_name, table, settings.max_in_flight)

    async def sweep_lots() -> None:
        count = await handler.sweep_expiring_lots()
        if count:
            kv(log, "info", "expiring lots announced by the sweep", lots=count)

    app.timer(settings.lot_sweep_interval_s, on_leader=True, name="sweep-expiring-lots")(
        sweep_lots)
    resources = WorkerResources(follower, runner)
    return WorkerApp(app, handler, resources, topics)


def _stop_worker(error: BaseException) -> None:
    kv(log, "error", "stopping the worker after a failed delivery; restart it",
       error=f"{type(error).__name__}: {error}")
    os.kill(os.getpid(), signal.SIGTERM)  # graceful: only acknowledged offsets are committed


def _add_agent(app: faust.App, handler: RecordHandler, topic_name: str, table: str,
               max_in_flight: int) -> None:
    channel = app.topic(topic_name, key_serializer="raw", value_serializer="raw")

    # one per agent, outliving an actor restart: after a failed delivery nothing more is
    # acked (a later ack would let Faust commit past the failed record), and the worker
    # stops so that a restart handles the records from the failed one on again
    acks = InOrderAcks(max_in_flight=max_in_flight, on_failure=_stop_worker)

    async def route_changes(stream: Any) -> None:
        # manual acks: a record is acked when its outputs are stored, in arrival order
        async for event in stream.noack().events():
            message = event.message
            deliveries = await handler.handle(RawRecord(
                topic=message.topic, partition=message.partition, offset=message.offset,
                key=message.key, value=message.value, headers=header_tuples(message.headers)))
            await acks.add(event, deliveries)  # raises (stopping the agent) if one failed

    app.agent(channel, name=f"route-{table}", concurrency=AGENT_CONCURRENCY)(route_changes)
