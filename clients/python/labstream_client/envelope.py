"""Debezium's change-event envelope as typed objects.

labstream's connector writes the events Debezium's PostgreSQL connector writes
(docs/events.md in the labstream repository). A decoded record value becomes:

- `ChangeEvent` for table topics (`<prefix>.<schema>.<table>`) and `<prefix>.message`;
- `TransactionMarker` for `<prefix>.transaction` (BEGIN/END);
- the plain dict for anything else (heartbeats); `None` for a tombstone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Source:
    """Where a change came from (`io.debezium.connector.postgresql.Source`)."""

    version: str
    connector: str
    name: str
    ts_ms: int
    snapshot: str | None
    db: str
    schema: str
    table: str
    tx_id: int | None
    lsn: int | None
    sequence: str | None  # JSON text '["<last commit lsn>","<this lsn>"]'
    ts_us: int | None = None
    ts_ns: int | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Source:
        return cls(
            version=raw.get("version", ""), connector=raw.get("connector", ""),
            name=raw.get("name", ""), ts_ms=raw.get("ts_ms", 0), snapshot=raw.get("snapshot"),
            db=raw.get("db", ""), schema=raw.get("schema", ""), table=raw.get("table", ""),
            tx_id=raw.get("txId"), lsn=raw.get("lsn"), sequence=raw.get("sequence"),
            ts_us=raw.get("ts_us"), ts_ns=raw.get("ts_ns"),
        )

    @property
    def dedup_key(self) -> tuple[int | None, str | None]:
        """Deduplicate redelivered records on (lsn, sequence), as docs/events.md says."""
        return self.lsn, self.sequence


@dataclass(frozen=True, slots=True)
class Transaction:
    """The `transaction` block (set when the connector provides transaction metadata)."""

    id: str  # "<txId>:<lsn>"
    total_order: int
    data_collection_order: int

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Transaction | None:
        if raw is None:
            return None
        return cls(raw["id"], raw["total_order"], raw["data_collection_order"])


@dataclass(frozen=True, slots=True)
class Message:
    """A logical decoding message (op `m`): `pg_logical_emit_message(.., prefix, content)`."""

    prefix: str
    content: bytes


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One row change: op `c` create, `u` update, `d` delete, `r` snapshot read,
    `t` truncate, `m` message (then `message` is set and before/after are None)."""

    op: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    source: Source
    ts_ms: int | None
    transaction: Transaction | None
    message: Message | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ChangeEvent:
        message = raw.get("message")
        return cls(
            op=raw["op"], before=raw.get("before"), after=raw.get("after"),
            source=Source.from_dict(raw.get("source") or {}), ts_ms=raw.get("ts_ms"),
            transaction=Transaction.from_dict(raw.get("transaction")),
            message=Message(message["prefix"], message["content"]) if message else None,
        )

    @property
    def row(self) -> dict[str, Any] | None:
        """The row as it is now: `after`, or `before` for a delete."""
        return self.after if self.after is not None else self.before


@dataclass(frozen=True, slots=True)
class TransactionMarker:
    """A record of `<prefix>.transaction`: BEGIN, or END with per-table event counts."""

    status: str
    id: str
    event_count: int | None
    data_collections: list[dict[str, Any]] | None
    ts_ms: int | None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TransactionMarker:
        return cls(raw["status"], raw["id"], raw.get("event_count"),
                   raw.get("data_collections"), raw.get("ts_ms"))


Value = ChangeEvent | TransactionMarker | dict[str, Any] | None


def typed(raw: dict[str, Any] | None) -> Value:
    """The typed object for a decoded record value (see the module docstring)."""
    if raw is None:
        return None
    if "op" in raw and "source" in raw:
        return ChangeEvent.from_dict(raw)
    if raw.get("status") in ("BEGIN", "END") and "id" in raw:
        return TransactionMarker.from_dict(raw)
    return raw
