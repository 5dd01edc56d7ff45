"""Group the pgoutput stream into transactions, with their trace context.

A transaction's changes are held until its COMMIT so that a `traceparent`
logical message anywhere in it (first statement or mid-transaction) applies to
every change of that transaction. Past `max_buffered` changes a batch is handed
on early (memory stays bounded); a trace message seen after that covers only the
later changes, which the log says once per such transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from base.logs import kv
from connectors.pgoutput import (
    Begin,
    Commit,
    Delete,
    Insert,
    Message,
    PgOutputMessage,
    Relation,
    Truncate,
    Update,
)

log = logging.getLogger(__name__)

TRACE_PREFIXES = frozenset({"traceparent", "tracestate"})
Change = Insert | Update | Delete | Truncate | Message


@dataclass(slots=True)
class TxBatch:
    """Changes of one source transaction (all of them unless `final` is False)."""

    xid: int
    final_lsn: int  # LSN of the commit record (pgoutput Begin.final_lsn)
    commit_time_us: int
    changes: list[tuple[Change, int]] = field(default_factory=list)  # (change, its WAL LSN)
    trace_fields: dict[str, bytes] = field(default_factory=dict)
    end_lsn: int = 0  # set at COMMIT: where the next transaction starts
    final: bool = False
    first: bool = True  # False for the continuation of an early-sent transaction
    sequence_start: int = 0  # changes of this transaction sent in earlier batches
    # WAL position of the BEGIN message (the transaction's first record): Debezium's
    # transaction id is "<xid>:<this>" for BEGIN and the changes, "<xid>:<end_lsn>" for END
    begin_lsn: int = 0


@dataclass(frozen=True, slots=True)
class StandaloneMessage:
    """A non-transactional logical message (heartbeats, hand-over markers, user messages)."""

    message: Message
    lsn: int  # WAL position to confirm once handled


class TransactionAssembler:
    """Feed every decoded message with its WAL LSN; batches go to `on_batch`."""

    def __init__(
        self,
        on_batch: Callable[[TxBatch], None],
        on_relation: Callable[[Relation], None],
        on_standalone: Callable[[StandaloneMessage], None],
        *,
        max_buffered: int = 50_000,
    ) -> None:
        self.on_batch = on_batch
        self.on_relation = on_relation
        self.on_standalone = on_standalone
        self.max_buffered = max_buffered
        self.current: TxBatch | None = None
        self.last_commit_lsn = 0

    @property
    def in_transaction(self) -> bool:
        return self.current is not None

    def feed(self, message: PgOutputMessage, lsn: int) -> None:
        current = self.current
        if isinstance(message, (Insert, Update, Delete, Truncate)):
            if current is None:  # cannot happen with pgoutput v1; keep the change anyway
                current = self.current = TxBatch(0, lsn, 0)
            current.changes.append((message, lsn))
            if len(current.changes) >= self.max_buffered:
                self._send_early(current)
        elif isinstance(message, Begin):
            self.current = TxBatch(message.xid, message.final_lsn, message.commit_time_us,
                                   begin_lsn=lsn)
        elif isinstance(message, Commit):
            batch = current or TxBatch(0, message.commit_lsn, message.commit_time_us)
            batch.end_lsn = message.end_lsn
            batch.commit_time_us = message.commit_time_us
            batch.final = True
            self.current = None
            self.last_commit_lsn = message.commit_lsn
            self.on_batch(batch)
        elif isinstance(message, Message):
            if not message.transactional:
                self.on_standalone(StandaloneMessage(message, lsn))
            elif current is not None and message.prefix in TRACE_PREFIXES:
                if current.trace_fields.get(message.prefix) is None and not current.first:
                    kv(log, "warning", "trace message arrived after part of a large transaction "
                       "was sent; earlier changes lack its headers", xid=current.xid)
                current.trace_fields[message.prefix] = message.content
            elif current is not None:
                current.changes.append((message, lsn))
        elif isinstance(message, Relation):
            self.on_relation(message)
        # Type and Origin messages need no action: types are resolved from the catalogue.

    def _send_early(self, batch: TxBatch) -> None:
        rest = TxBatch(
            batch.xid, batch.final_lsn, batch.commit_time_us,
            trace_fields=dict(batch.trace_fields), first=False,
            sequence_start=batch.sequence_start + len(batch.changes), begin_lsn=batch.begin_lsn,
        )
        self.on_batch(batch)
        self.current = rest
