"""The initial snapshot: every captured table read in ONE repeatable-read
transaction that imported the slot's exported snapshot, so the rows are exactly
the state at the slot's consistent point and streaming continues from there.

Rows come out of `COPY ... TO STDOUT` in PostgreSQL's text format: the same text
pgoutput sends, so one converter serves both. `source.snapshot` follows Debezium
2.x+: `first` (first row), `first_in_data_collection`, `true`,
`last_in_data_collection`, `last` (last row of the whole snapshot).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from psycopg import sql

from base.db import connect
from connectors.pgoutput import Relation
from connectors.source import catalog
from connectors.source.catalog import TableRef
from connectors.source.config import TableFilter

Row = tuple[str | None, ...]


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
