"""The initial snapshot: every captured table read in ONE repeatable-read
transaction that imported the slot's exported snapshot, so the rows are exactly
the state at the slot's consistent point and streaming continues from there.

Rows come out of `COPY ... TO STDOUT` in PostgreSQL's text format: the same text
pgoutput sends, so one converter serves both. `source.snapshot` follows Debezium
2.x+: `first` (first row), `first_in_data_collection`, `true`,
`last_in_data_collection`, `last` (last row of the whole snapshot).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from base.db import connect
from base.logs import kv
from connectors.pgoutput import Relation
from connectors.source import catalog
from connectors.source.catalog import TableRef
from connectors.source.config import TableFilter

log = logging.getLogger(__name__)
Row = tuple[str | None, ...]
PROGRESS_ENV = "LABSTREAM_CDC_SNAPSHOT_PROGRESS_ROWS"


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    table: TableRef
    relation: Relation
    values: Row
    marker: str  # source.snapshot


def snapshot_marker(*, first: bool, last: bool, first_in_table: bool, last_in_table: bool) -> str:
    """Debezium's SnapshotRecord for one row; `last` wins over `first` (a 1-row snapshot)."""
    if last:
        return "last"
    if first:
        return "first"
    if last_in_table:
        return "last_in_data_collection"
    if first_in_table:
        return "first_in_data_collection"
    return "true"


def mark_rows(tables: Iterator[tuple[TableRef, Relation, Iterator[Row]]]) -> Iterator[SnapshotRow]:
    """Attach markers, looking one row ahead (across tables) to know which row is last."""
    pending: tuple[TableRef, Relation, Row, bool] | None = None  # (.., first_in_table)
    pending_table_done = False
    emitted_any = False
    for table, relation, rows in tables:
        first_in_table = True
        for values in rows:
            if pending is not None:
                p_table, p_rel, p_values, p_first_in = pending
                yield SnapshotRow(p_table, p_rel, p_values, snapshot_marker(
                    first=not emitted_any, last=False, first_in_table=p_first_in,
                    last_in_table=pending_table_done))
                emitted_any = True
            pending = (table, relation, values, first_in_table)
            pending_table_done = False
            first_in_table = False
        # the table ended: if its last row is still pending, it is last in its table
        if pending is not None and pending[0] == table:
            pending_table_done = True
    if pending is not None:
        p_table, p_rel, p_values, p_first_in = pending
        yield SnapshotRow(p_table, p_rel, p_values, snapshot_marker(
            first=not emitted_any, last=True, first_in_table=p_first_in, last_in_table=True))


class SnapshotReader:
    """A REPEATABLE READ transaction on the slot's exported snapshot."""

    def __init__(self, database_url: str, snapshot_name: str) -> None:
        self.conn = connect(database_url, application_name="labstream-cdc-snapshot")
        with self.conn.cursor() as cur:
            for statement in catalog.SESSION_OPTIONS.replace("-c ", "").split():
                name, _, value = statement.partition("=")
                cur.execute(sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        self.conn.commit()
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        # importing must happen while the slot's session still exports it
        self.conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_name)))
        # Debezium gives snapshot records this transaction's id as source.txId
        row = self.conn.execute("SELECT CASE WHEN pg_is_in_recovery() THEN NULL "
                                "ELSE txid_current() END").fetchone()
        self.tx_id: int | None = row[0] if row else None

    def tables(self, table_filter: TableFilter) -> list[tuple[TableRef, Relation]]:
        """Captured tables as the snapshot sees them (no commit: stays in the transaction)."""
        with self.conn.cursor() as cur:
            cur.execute(
                """SELECT c.oid, n.nspname, c.relname FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                     AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
                   ORDER BY n.nspname, c.relname"""
            )
            refs = [TableRef(o, s, t) for o, s, t in cur.fetchall() if table_filter.captures(s, t)]
        return [(ref, self._relation(ref)) for ref in refs]

    def _relation(self, table: TableRef) -> Relation:
        # catalog.relation_from_catalog commits; read it here inside the snapshot instead
        with self.conn.cursor() as cur:
            cur.execute(catalog.RELATION_SQL, (table.oid,))
            rows = cur.fetchall()
        return catalog.relation_from_rows(table, rows)

    def rows(self, table: TableRef, relation: Relation) -> Iterator[Row]:
        columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in relation.columns)
        query = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(
            columns, sql.Identifier(table.schema, table.name))
        with self.conn.cursor() as cur, cur.copy(query) as copy:
            yield from copy.rows()

    def read_all(self, table_filter: TableFilter) -> Iterator[SnapshotRow]:
        tables = self.tables(table_filter)
        return mark_rows((ref, rel, self.rows(ref, rel)) for ref, rel in tables)

    def close(self) -> None:
        try:
            self.conn.rollback()
        finally:
            self.conn.close()


def track_progress(rows: Iterator[SnapshotRow], record: Callable[[dict[str, Any]], None], *,
                   every: int | None = None,
                   clock: Callable[[], float] = time.monotonic) -> Iterator[SnapshotRow]:
    """Pass the snapshot's rows through; every `every` rows (LABSTREAM_CDC_SNAPSHOT_
    PROGRESS_ROWS, default 10,000) and at each table's end, log the progress and hand it
    to `record` (the offsets row: `labstream cdc status` and /metrics show it), so a
    300,000-row snapshot is not silent between "started" and "done"."""
    every = every or int(os.environ.get(PROGRESS_ENV) or 10_000)
    started = clock()
    tables: dict[str, dict[str, Any]] = {}
    current: str | None = None
    total = 0

    def report(event: str) -> None:
        seconds = max(clock() - started, 1e-9)
        progress = {"rows": total, "tables": tables, "current_table": current,
                    "tables_done": [name for name, t in tables.items() if t["done"]],
                    "rows_per_s": round(total / seconds)}
        kv(log, "info", event, table=current, table_rows=tables[current]["rows"] if current
           else 0, rows=total, rows_per_s=progress["rows_per_s"])
        record(progress)

    for row in rows:
        name = row.table.qualified
        if name != current:
            if current is not None:
                tables[current]["done"] = True
                report("snapshot table done")
            current = name
            tables[name] = {"rows": 0, "done": False}
        tables[name]["rows"] += 1
        total += 1
        yield row
        if total % every == 0:
            report("snapshot progress")
    if current is not None:
        tables[current]["done"] = True
        report("snapshot table done")
