"""Reference tables: the lab's slowly changing rows, in memory on every worker.

Enrichment and triggering read tenants, experiments, instruments, samples,
inventory items and trigger rules from here, never from the database. Each
worker follows **all partitions** of the CDC topics `lab.public.<table>` for
those tables (a global table: whatever event partitions a worker owns, it sees
all reference rows), from the beginning at start and live afterwards, so an
edited trigger rule changes behaviour within seconds.

Why not a Faust `GlobalTable`: with faust-streaming 0.15.3 we tried both ways
and neither worked with two workers (see docs/topics.md, "Reference data"): a
GlobalTable whose changelog is the CDC topic hung the group's partition
assignment, and a GlobalTable filled by an agent only showed each worker the
rows written by itself (faust-streaming issue #283 is open). A plain consumer
without a group, assigned every partition, does what a GlobalTable promises.

`ReferenceStore` is the pure, synchronous part (used by tests and replay);
`ReferenceFollower` feeds it from Kafka inside the worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from base.kafka import kafka_connection
from base.logs import kv
from streams.codec import CdcDecoder, header_tuples
from streams.exceptions import TopicSetupError, UndecodableRecord
from streams.records import ChangeRecord, Row, SourceCoordinates
from streams.trigger import RuleInvalid, TriggerRule

log = logging.getLogger(__name__)


class ReferenceStore:
    """Rows by table and primary key, with samples indexed by experiment."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, Row]] = {}
        self._samples_by_experiment: dict[str, dict[str, Row]] = {}
        self._rules: dict[str, TriggerRule | Row] = {}
        # the latest change of each inventory item, for the expiring-lots sweep
        self._latest_inventory: dict[str, ChangeRecord] = {}
        # why a rule row did not parse (decide() reports the rule; the follower logs this)
        self.rule_errors: dict[str, str] = {}
        self.applied = 0
        # `streams.enrich.enrich`'s cache of enrichments by ids; emptied on every change
        # of a reference row, so a cached enrichment is always what enrich() would make
        self.enrichments: dict[tuple[str, ...], Any] = {}

    # -- ReferenceData ------------------------------------------------------------------
    def get(self, table: str, key: str) -> Row | None:
        return self._rows.get(table, {}).get(key)

    def samples_of(self, experiment_id: str) -> list[Row]:
        return list(self._samples_by_experiment.get(experiment_id, {}).values())

    def rules(self) -> list[TriggerRule | Row]:
        """Parsed rules; a row that does not parse is kept as is (decide() reports it)."""
        return list(self._rules.values())

    def latest_inventory_changes(self) -> list[ChangeRecord]:
        return list(self._latest_inventory.values())

    def count(self, table: str) -> int:
        return len(self._rows.get(table, {}))

    # -- updates ------------------------------------------------------------------------
    def put(self, table: str, row: Row) -> None:
        self.apply(table, str(row["id"]), row)

    def apply(self, table: str, key: str, row: Row | None) -> None:
        """Set (row) or delete (None) one reference row."""
        self.enrichments.clear()
        rows = self._rows.setdefault(table, {})
        previous = rows.pop(key, None)
        if row is not None:
            rows[key] = row
        if table == "samples":
            self._index_sample(key, previous, row)
        elif table == "trigger_rules":
            self._set_rule(key, row)
        self.applied += 1

    def apply_change(self, change: ChangeRecord) -> None:
        if change.envelope.op == "t":  # a truncate has no key: checked first
            self.truncate(change.table)
            return
        key = change.primary_key.get("id")
        if key is None:
            return
        self.apply(change.table, str(key), change.envelope.after)
        if change.table == "inventory_items":
            if change.envelope.after is None:
                self._latest_inventory.pop(str(key), None)
            else:
                self._latest_inventory[str(key)] = change

    def truncate(self, table: str) -> None:
        """TRUNCATE of a reference table: its rows and every index built from them go."""
        self.enrichments.clear()
        self._rows.pop(table, None)
        if table == "samples":
            self._samples_by_experiment.clear()
        elif table == "trigger_rules":
            self._rules.clear()
            self.rule_errors.clear()
        elif table == "inventory_items":
            self._latest_inventory.clear()
        self.applied += 1

    def _index_sample(self, key: str, previous: Row | None, row: Row | None) -> None:
        if previous is not None and previous.get("experiment_id"):
            self._samples_by_experiment.get(str(previous["experiment_id"]), {}).pop(key, None)
        if row is not None and row.get("experiment_id"):
            self._samples_by_experiment.setdefault(str(row["experiment_id"]), {})[key] = row

    def _set_rule(self, key: str, row: Row | None) -> None:
        self.rule_errors.pop(key, None)
        if row is None:
            self._rules.pop(key, None)
            return
        try:
            self._rules[key] = TriggerRule.from_row(row)
        except (RuleInvalid, KeyError, TypeError, ValueError) as exc:
            self._rules[key] = row
            self.rule_errors[key] = str(exc) or type(exc).__name__

    def rule(self, key: str) -> TriggerRule | Row | None:
        """The rule `key` as this store has it: parsed, kept unparsed, or absent."""
        return self._rules.get(key)


class ReferenceFollower:
    """Keeps a `ReferenceStore` up to date from every partition of the reference topics."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topics: dict[str, str],  # topic -> table
        store: ReferenceStore,
        decoder: CdcDecoder,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._topics = topics
        self.store = store
        self._decoder = decoder
        self.ready = asyncio.Event()
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(**kafka_connection(self._bootstrap).aiokafka("reference"),
                                    enable_auto_commit=False, group_id=None,
                                    auto_offset_reset="earliest")
        await consumer.start()
        # without a subscription the consumer's own metadata knows no topic: ask the cluster
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(topic, partition)
                      for topic in self._topics
                      for partition in sorted(cluster.partitions_for_topic(topic) or ())]
        if not partitions:
            await consumer.stop()
            raise TopicSetupError(f"reference topics have no partitions: {sorted(self._topics)}",
                                  hint="run ensure_topics() (labstream worker does) first")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end_offsets = await consumer.end_offsets(partitions)
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(end_offsets), name="reference-follower")
        self._task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            kv(log, "error", "reference follower stopped; reference data is frozen",
               error=repr(task.exception()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow(self, end_offsets: dict[Any, int]) -> None:
        pending = {tp: end for tp, end in end_offsets.items() if end > 0}
        if not pending:
            self.ready.set()
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            for tp, messages in batches.items():
                await self._apply_all(messages)
                if tp in pending and messages and messages[-1].offset + 1 >= pending[tp]:
                    del pending[tp]
            if not pending and not self.ready.is_set():
                kv(log, "info", "reference data loaded", rows=self.store.applied)
                self.ready.set()

    def _log_rule(self, change: ChangeRecord) -> None:
        """One line per trigger-rule change this worker applied: "was my rule loaded?" is
        the first step of "did the trigger fire?" (rules change rarely: a line each)."""
        if change.envelope.op == "t":
            kv(log, "info", "trigger rules truncated: no rule fires until new ones arrive")
            return
        key = str(change.primary_key.get("id"))
        rule = self.store.rule(key)
        if rule is None:
            kv(log, "info", "trigger rule removed", rule=key)
        elif isinstance(rule, TriggerRule):
            kv(log, "info", "trigger rule loaded", rule=key, tenant=rule.tenant_id,
               event_kind=rule.event_kind, enabled=rule.enabled)
        else:
            kv(log, "warning", "trigger rule invalid: it never fires until fixed", rule=key,
               error=self.store.rule_errors.get(key, "unparsable row"))

    async def _apply_all(self, messages: Iterable[Any]) -> None:
        for message in messages:
            coordinates = SourceCoordinates(message.topic, message.partition, message.offset)
            try:
                change = await self._decoder.decode_async(
                    message.key, message.value, coordinates, header_tuples(message.headers))
                if change is not None:
                    self.store.apply_change(change)
                    if change.table == "trigger_rules":
                        self._log_rule(change)
            except UndecodableRecord as exc:
                kv(log, "warning", "reference record skipped", error=exc.message)
            except Exception as exc:  # one odd row must not stop reference updates
                kv(log, "error", "reference record not applied", topic=message.topic,
                   partition=message.partition, offset=message.offset,
                   error=f"{type(exc).__name__}: {exc}")
