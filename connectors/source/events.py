"""Turn decoded changes and snapshot rows into Debezium `ChangeEvent`s.

`EventBuilder` keeps one `TableSchema` per relation (rebuilt on every Relation
message, i.e. after ALTER TABLE) and builds events with the `source` block
consumers deduplicate on: `source.lsn` is the WAL position of the change and
`source.sequence` is `["<previous commit lsn>","<lsn>"]`. Snapshot rows carry the
snapshot's consistent point as their LSN (deduplicate them by key + lsn).
Catalogue details come from a callable, so this module needs no database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from opentelemetry.context import Context

from base.logs import kv
from connectors.envelope import (
    ChangeEvent,
    SourceBlocks,
    SourceInfo,
    TransactionInfo,
    build_change_event,
    message_event,
    now_us,
    tombstone_for,
    transaction_begin_event,
    transaction_end_event,
)
from connectors.pgoutput import (
    UNCHANGED_TOAST,
    Delete,
    Insert,
    Message,
    Relation,
    Truncate,
    Update,
)
from connectors.schema import TableSchema
from connectors.source.catalog import TableDetails
from connectors.source.config import CdcSettings
from connectors.source.transactions import TxBatch
from tracing.propagation import context_from_db_messages

log = logging.getLogger(__name__)

# Logical-message prefixes that steer the connector and never become 'm' events.
INTERNAL_PREFIXES = frozenset(
    {"traceparent", "tracestate", "labstream-heartbeat", "labstream-handover"}
)


# Debezium's header names on the records of a primary-key change
PK_UPDATE_OLDKEY = "__debezium.oldkey"
PK_UPDATE_NEWKEY = "__debezium.newkey"


def _header_key(key: dict[str, Any] | None) -> bytes:
    """The key as Connect's SimpleHeaderConverter writes a Struct: compact JSON."""
    return json.dumps(key, separators=(",", ":")).encode()


# a row's `source`: the block itself (streaming, SourceBlocks) or a SourceInfo
_Source = SourceInfo | dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutEvent:
    event: ChangeEvent
    context: Context | None  # trace context the record's headers carry (None: no trace)


class EventBuilder:
    def __init__(
        self,
        settings: CdcSettings,
        db_name: str,
        details_for: Callable[[int], TableDetails],
    ) -> None:
        self.settings = settings
        self.db_name = db_name
        self.details_for = details_for
        self.tables: dict[int, TableSchema] = {}
        self.table_filter = settings.table_filter
        self.prefix = settings.topic_prefix
        self.tx_metadata = settings.provide_transaction_metadata
        self.tombstones = settings.tombstones_on_delete
        self.trace_column = settings.trace_column
        self.skipped = settings.skipped_ops
        self.previous_commit_lsn: int | None = None
        self._no_key_warned: set[int] = set()
        self._tx_order: dict[str, int] = {}
        self._tx_total = 0
        # the current batch's source templates, per table (id -> (table, blocks))
        self._blocks_batch: TxBatch | None = None
        self._blocks: dict[int, tuple[TableSchema, SourceBlocks]] = {}

    # -- schemas ------------------------------------------------------------------------

    def on_relation(self, relation: Relation) -> TableSchema | None:
        """(Re)build the table's schema; None when the table is not captured."""
        if not self.table_filter.captures(relation.namespace, relation.name):
            self.tables.pop(relation.oid, None)
            return None
        details = self.details_for(relation.oid)
        types = details.types
        table = TableSchema.from_relation(
            relation,
            topic_prefix=self.prefix,
            resolver=types.get,
            not_null_columns=details.not_null,
            server_name=self.prefix,
            primary_key=details.primary_key or None,
            serial_columns=details.serial,
        )
        if not table.key_columns and relation.oid not in self._no_key_warned:
            self._no_key_warned.add(relation.oid)
            name = f"{relation.namespace}.{relation.name}"
            kv(log, "warning", "captured table has no primary key: its records get a null key "
               "(and with REPLICA IDENTITY DEFAULT PostgreSQL refuses its UPDATEs and DELETEs)",
               table=name, fix=f"ALTER TABLE {name} ADD PRIMARY KEY (...)")
        self.tables[relation.oid] = table
        return table

    def topics(self) -> list[str]:
        return [t.topic for t in self.tables.values()]

    # -- streaming ----------------------------------------------------------------------

    def _source(self, table: TableSchema | None, batch: TxBatch, lsn: int) -> SourceInfo:
        return SourceInfo(
            name=self.prefix,
            db=self.db_name,
            schema=table.schema_name if table else "",
            table=table.table_name if table else "",
            ts_us=batch.commit_time_us,
            lsn=lsn,
            tx_id=batch.xid,
            last_commit_lsn=self.previous_commit_lsn,
        )

    def _row_source(self, table: TableSchema, batch: TxBatch, lsn: int) -> dict[str, Any]:
        """`self._source(table, batch, lsn).to_dict()`, from a per-batch template."""
        if batch is not self._blocks_batch:
            self._blocks_batch = batch
            self._blocks = {}
        entry = self._blocks.get(id(table))
        if entry is None or entry[0] is not table:
            entry = self._blocks[id(table)] = (table, SourceBlocks(self._source(table, batch, 0)))
        return entry[1].at(lsn)

    def _tx_info(self, batch: TxBatch, table: TableSchema | None) -> TransactionInfo | None:
        if not self.tx_metadata:
            return None
        self._tx_total += 1
        collection = f"{table.schema_name}.{table.table_name}" if table else ""
        self._tx_order[collection] = self._tx_order.get(collection, 0) + 1
        return TransactionInfo(
            TransactionInfo.transaction_id(batch.xid, batch.begin_lsn or batch.final_lsn),
            self._tx_total,
            self._tx_order[collection],
        )

    def batch_events(self, batch: TxBatch) -> Iterator[OutEvent]:
        """Every record of one transaction batch, in order (BEGIN/END when configured)."""
        context = context_from_db_messages(batch.trace_fields) if batch.trace_fields else None
        tx_id = TransactionInfo.transaction_id(batch.xid, batch.begin_lsn or batch.final_lsn)
        ts_ms = batch.commit_time_us // 1000
        if self.tx_metadata and batch.first:
            self._tx_order = {}
            self._tx_total = 0
            yield OutEvent(transaction_begin_event(self.prefix, tx_id, ts_ms), context)
        for change, lsn in batch.changes:
            yield from self._change_events(change, lsn, batch, context)
        if batch.final:
            if self.tx_metadata:
                # Debezium names the END by the commit's end position, not the BEGIN's
                end_id = TransactionInfo.transaction_id(batch.xid, batch.end_lsn or batch.final_lsn)
                yield OutEvent(
                    transaction_end_event(self.prefix, end_id, ts_ms, dict(self._tx_order)),
                    context,
                )
            # Debezium: the end of the previous commit record (its lastCommitLsn)
            self.previous_commit_lsn = batch.end_lsn

    def _change_events(
        self, change: Any, lsn: int, batch: TxBatch, context: Context | None
    ) -> Iterator[OutEvent]:
        if isinstance(change, Truncate):
            if "t" in self.skipped:
                return
            for oid in change.relation_oids:
                table = self.tables.get(oid)
                if table is not None:
                    event = build_change_event(table, "t", None, None,
                                               self._source(table, batch, lsn),
                                               self._tx_info(batch, table))
                    yield OutEvent(event, context)
            return
        if isinstance(change, Message):
            if change.prefix not in INTERNAL_PREFIXES:
                event = message_event(self.prefix, change.prefix, change.content,
                                      self._source(None, batch, lsn), self._tx_info(batch, None))
                yield OutEvent(event, context)
            return
        table = self.tables.get(change.relation_oid)
        if table is None:
            return  # not captured (or its Relation was filtered out)
        source = self._row_source(table, batch, lsn)
        if isinstance(change, Insert):
            if "c" not in self.skipped:
                after = table.row_to_values(change.new)
                yield self._row(table, "c", None, after, source, batch, context)
        elif isinstance(change, Update):
            if "u" not in self.skipped:
                yield from self._update(table, change, source, batch, context)
        elif isinstance(change, Delete):
            if "d" in self.skipped:
                return
            old = change.old if change.old is not None else change.key
            deleted = table.row_to_values(old) if old is not None else None
            yield from self._delete(table, deleted, source, batch, context)

    def _update(self, table: TableSchema, change: Update, source: _Source, batch: TxBatch,
                context: Context | None) -> Iterator[OutEvent]:
        new, old = change.new, change.old
        if old is not None and UNCHANGED_TOAST in new:
            # REPLICA IDENTITY FULL: the old tuple carries the unchanged TOASTed value
            new = tuple(o if n is UNCHANGED_TOAST else n for n, o in zip(new, old, strict=True))
        after = table.row_to_values(new)
        before = table.row_to_values(old) if old is not None else None
        if table.key_columns:
            # the primary key changed: 'K' (DEFAULT / USING INDEX) says so; under FULL
            # ('O' only) it is seen by comparing the keys
            old_key = change.key
            if old_key is not None:
                before_key = table.row_to_values(old_key)
            elif before is not None and table.key_of(before) != table.key_of(after):
                before_key = before
            else:
                before_key = None
            if before_key is not None:
                yield from self._key_change(table, before_key, after, source, batch, context)
                return
        yield self._row(table, "u", before, after, source, batch, context)

    def _key_change(self, table: TableSchema, before: dict[str, Any], after: dict[str, Any],
                    source: _Source, batch: TxBatch,
                    context: Context | None) -> Iterator[OutEvent]:
        """Debezium: delete (old key) + tombstone (old key), both with header
        `__debezium.newkey`, then create (new key) with header `__debezium.oldkey`."""
        old_key, new_key = table.key_of(before), table.key_of(after)
        with_new = ((PK_UPDATE_NEWKEY, _header_key(new_key)),)
        for out in self._delete(table, before, source, batch, context):
            yield OutEvent(replace(out.event, headers=with_new), out.context)
        created = self._row(table, "c", None, after, source, batch, context)
        yield OutEvent(replace(created.event, headers=((PK_UPDATE_OLDKEY, _header_key(old_key)),)),
                       created.context)

    def _row(self, table: TableSchema, op: Any, before: dict[str, Any] | None,
             after: dict[str, Any] | None, source: _Source, batch: TxBatch,
             context: Context | None) -> OutEvent:
        event = build_change_event(table, op, before, after, source, self._tx_info(batch, table))
        if context is None and self.trace_column and after is not None:
            context = self._column_context(after)
        return OutEvent(event, context)

    def _delete(self, table: TableSchema, before: dict[str, Any] | None, source: _Source,
                batch: TxBatch, context: Context | None) -> Iterator[OutEvent]:
        out = self._row(table, "d", before, None, source, batch, context)
        yield out
        if self.tombstones and out.event.key is not None:
            yield OutEvent(tombstone_for(out.event), out.context)

    def _column_context(self, after: dict[str, Any]) -> Context | None:
        value = after.get(self.trace_column)
        if not isinstance(value, str) or not value:
            return None
        return context_from_db_messages({"traceparent": value})

    def standalone_message(self, message: Message, lsn: int) -> OutEvent | None:
        if message.prefix in INTERNAL_PREFIXES:
            return None
        source = SourceInfo(name=self.prefix, db=self.db_name, schema="", table="",
                            ts_us=now_us(), lsn=lsn, last_commit_lsn=self.previous_commit_lsn)
        return OutEvent(message_event(self.prefix, message.prefix, message.content, source), None)

    # -- snapshot -----------------------------------------------------------------------

    def snapshot_event(
        self, table: TableSchema, values: tuple[str | None, ...], marker: str,
        consistent_point: int, read_time_us: int, tx_id: int | None = None,
    ) -> ChangeEvent:
        after = table.row_to_values(values)
        source = SourceInfo(
            name=self.prefix, db=self.db_name, schema=table.schema_name,
            table=table.table_name, ts_us=read_time_us, lsn=consistent_point, tx_id=tx_id,
            snapshot=marker,  # type: ignore[arg-type]  # Debezium 2.x SnapshotRecord values
        )
        return build_change_event(table, "r", None, after, source, None)
