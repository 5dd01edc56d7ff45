"""Catalogue look-ups, done once per table (when a Relation arrives), never per row.

- preflight checks with one-line fixes (wal_level, REPLICATION privilege);
- the captured tables and the publication that lists them;
- a table's primary key, NOT NULL flags and non-builtin column types
  (`TypeInfo` for enums, domains, arrays), handed to `TableSchema.from_relation`;
- start-up warning: REPLICA IDENTITY DEFAULT tables with TOASTable columns
  (they can produce `__debezium_unavailable_value`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from base.logs import kv
from connectors.pgoutput import Relation, RelationColumn, str_to_lsn
from connectors.pgtypes import TypeInfo
from connectors.source.config import CdcSettings, TableFilter
from connectors.source.exceptions import CdcConfigError

log = logging.getLogger(__name__)

# The text format the codecs parse (connectors.pgtext); pinned on every session.
SESSION_OPTIONS = "-c DateStyle=ISO -c IntervalStyle=postgres -c bytea_output=hex -c TimeZone=UTC"


@dataclass(frozen=True)
class TableRef:
    oid: int
    schema: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class TableDetails:
    """What pgoutput's Relation message does not say about a table."""

    primary_key: tuple[str, ...]
    not_null: frozenset[str]
    types: dict[int, TypeInfo] = field(default_factory=dict)
    serial: frozenset[str] = frozenset()  # columns whose default is nextval(...)


@dataclass(frozen=True)
class SlotInfo:
    name: str
    active: bool
    active_pid: int | None
    confirmed_flush_lsn: int | None
    restart_lsn: int | None


def preflight(conn: psycopg.Connection) -> None:
    """Fail early, with the fix, on what makes logical replication impossible."""
    with conn.cursor() as cur:
        cur.execute("SHOW wal_level")
        (wal_level,) = cur.fetchone() or ("?",)
        cur.execute(
            "SELECT rolreplication OR rolsuper, current_user FROM pg_roles "
            "WHERE rolname = current_user"
        )
        may_replicate, user = cur.fetchone() or (False, "?")
    conn.commit()
    if wal_level != "logical":
        raise CdcConfigError(
            f"PostgreSQL wal_level is {wal_level!r}, logical decoding needs 'logical'",
            hint="set wal_level = logical in postgresql.conf and restart PostgreSQL",
        )
    if not may_replicate:
        raise CdcConfigError(
            f"database role {user!r} lacks the REPLICATION privilege",
            hint=f"as a superuser: ALTER ROLE {user} REPLICATION;",
        )


def list_tables(conn: psycopg.Connection, table_filter: TableFilter) -> list[TableRef]:
    with conn.cursor() as cur:
        cur.execute(
            """SELECT c.oid, n.nspname, c.relname FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                 AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
               ORDER BY n.nspname, c.relname"""
        )
        rows = cur.fetchall()
    conn.commit()
    return [TableRef(oid, s, t) for oid, s, t in rows if table_filter.captures(s, t)]


def ensure_publication(
    conn: psycopg.Connection, settings: CdcSettings, tables: list[TableRef]
) -> None:
    """Create the publication, or (filtered mode) set its table list to `tables`."""
    mode = settings.publication_autocreate_mode
    name = sql.Identifier(settings.publication)
    with conn.cursor() as cur:
        cur.execute("SELECT puballtables FROM pg_publication WHERE pubname = %s",
                    (settings.publication,))
        row = cur.fetchone()
        if mode == "disabled":
            conn.commit()
            if row is None:
                raise CdcConfigError(
                    f"publication {settings.publication} does not exist",
                    hint="create it, or set LABSTREAM_CDC_PUBLICATION_AUTOCREATE_MODE=filtered",
                )
            return
        if mode == "all_tables":
            if row is None:
                cur.execute(sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(name))
            conn.commit()
            return
        idents = [sql.Identifier(t.schema, t.name) for t in tables]
        if row is None:
            stmt = sql.SQL("CREATE PUBLICATION {}").format(name)
            if idents:
                stmt = sql.SQL("{} FOR TABLE {}").format(stmt, sql.SQL(", ").join(idents))
            cur.execute(stmt)
        elif idents:
            cur.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(
                name, sql.SQL(", ").join(idents)))
        else:
            cur.execute("SELECT schemaname, tablename FROM pg_publication_tables "
                        "WHERE pubname = %s", (settings.publication,))
            for schema, table in cur.fetchall():
                cur.execute(sql.SQL("ALTER PUBLICATION {} DROP TABLE {}").format(
                    name, sql.Identifier(schema, table)))
    conn.commit()


def publish_captured_tables(conn: psycopg.Connection, settings: CdcSettings) -> list[TableRef]:
    """List the captured tables and publish them; a table dropped between the two
    (other sessions create and drop tables all the time) just means: list again."""
    for attempt in range(3):
        tables = list_tables(conn, settings.table_filter)
        try:
            ensure_publication(conn, settings, tables)
            return tables
        except psycopg.errors.UndefinedTable:
            conn.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def slot_info(conn: psycopg.Connection, slot_name: str) -> SlotInfo | None:
    with conn.cursor() as cur:
        cur.execute(
            """SELECT slot_name, active, active_pid, confirmed_flush_lsn::text,
                      restart_lsn::text FROM pg_replication_slots
               WHERE slot_name = %s AND database = current_database()""",
            (slot_name,),
        )
        row = cur.fetchone()
    conn.commit()
    if row is None:
        return None
    name, active, pid, confirmed, restart = row
    return SlotInfo(name, bool(active), pid,
                    str_to_lsn(confirmed) if confirmed else None,
                    str_to_lsn(restart) if restart else None)


def drop_slot(conn: psycopg.Connection, slot_name: str) -> bool:
    """Drop an inactive slot; False when it does not exist."""
    if slot_info(conn, slot_name) is None:
        return False
    with conn.cursor() as cur:
        cur.execute("SELECT pg_drop_replication_slot(%s)", (slot_name,))
    conn.commit()
    kv(log, "info", "replication slot dropped", slot=slot_name)
    return True


def emit_wal_message(conn: psycopg.Connection, prefix: str, content: str) -> int:
    """A non-transactional logical message: decoded at once, lets an idle slot advance."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_logical_emit_message(false, %s, %s)::text", (prefix, content))
        (lsn,) = cur.fetchone() or ("0/0",)
    conn.commit()
    return str_to_lsn(lsn)


def current_wal_lsn(conn: psycopg.Connection) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_current_wal_lsn()::text")
        (lsn,) = cur.fetchone() or ("0/0",)
    conn.commit()
    return str_to_lsn(lsn)


def table_details(conn: psycopg.Connection, rel_oid: int) -> TableDetails:
    """Primary key, NOT NULL flags and non-builtin column types of one table."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT a.attname FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
               WHERE i.indrelid = %s AND i.indisprimary
               ORDER BY array_position(i.indkey::int2[], a.attnum)""",
            (rel_oid,),
        )
        primary_key = tuple(r[0] for r in cur.fetchall())
        cur.execute(
            """SELECT a.attname, a.attnotnull, a.atttypid,
                      coalesce(pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%%', false)
               FROM pg_attribute a
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
               WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped""",
            (rel_oid,),
        )
        columns = cur.fetchall()
    conn.commit()
    not_null = frozenset(name for name, flag, _, _ in columns if flag)
    serial = frozenset(name for name, _, _, is_serial in columns if is_serial)
    types = resolve_types(conn, {oid for _, _, oid, _ in columns if oid >= 10_000})
    return TableDetails(primary_key, not_null, types, serial)


def resolve_types(conn: psycopg.Connection, oids: set[int]) -> dict[int, TypeInfo]:
    """TypeInfo for user-defined types, following domains and arrays to their base."""
    found: dict[int, TypeInfo] = {}
    pending = set(oids)
    with conn.cursor() as cur:
        while pending:
            cur.execute(
                """SELECT t.oid, t.typname, t.typtype, t.typelem, t.typbasetype, t.typtypmod,
                          t.typdelim, t.typcategory,
                          ARRAY(SELECT enumlabel FROM pg_enum WHERE enumtypid = t.oid
                                ORDER BY enumsortorder)
                   FROM pg_type t WHERE t.oid = ANY(%s)""",
                (list(pending),),
            )
            pending = set()
            for oid, name, kind, elem, base, typmod, delim, category, labels in cur.fetchall():
                found[oid] = TypeInfo(
                    oid=oid, name=name, kind=kind,
                    element_oid=elem if category == "A" else 0,
                    base_oid=base, enum_labels=tuple(labels or ()),
                    base_type_modifier=typmod, delimiter=delim or ",",
                )
                for ref in (elem if category == "A" else 0, base):
                    if ref >= 10_000 and ref not in found:
                        pending.add(ref)
    conn.commit()
    return found


RELATION_SQL = """SELECT c.relreplident, a.attname, a.atttypid, a.atttypmod,
                      COALESCE(a.attnum = ANY(ri.indkey), false) AS in_identity
               FROM pg_class c
               JOIN pg_attribute a ON a.attrelid = c.oid
               LEFT JOIN pg_index ri ON ri.indrelid = c.oid AND (
                    (c.relreplident = 'd' AND ri.indisprimary)
                 OR (c.relreplident = 'i' AND ri.indisreplident))
               WHERE c.oid = %s AND a.attnum > 0 AND NOT a.attisdropped
                 AND a.attgenerated = ''
               ORDER BY a.attnum"""


def relation_from_rows(table: TableRef, rows: list[tuple]) -> Relation:
    """The Relation pgoutput would send for `table` (used by the snapshot)."""
    identity = rows[0][0] if rows else "d"
    columns = tuple(
        RelationColumn(identity == "f" or bool(in_identity), name, type_oid, typmod)
        for _, name, type_oid, typmod, in_identity in rows
    )
    return Relation(table.oid, table.schema, table.name, identity, columns)


def warn_about_tables(conn: psycopg.Connection, tables: list[TableRef]) -> None:
    """One warning per risky captured table, at start."""
    if not tables:
        return
    with conn.cursor() as cur:
        cur.execute(
            """SELECT c.oid, n.nspname || '.' || c.relname, c.relreplident,
                      EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
                      ARRAY(SELECT a.attname FROM pg_attribute a
                            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                              AND a.attstorage IN ('x', 'e') ORDER BY a.attnum)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.oid = ANY(%s)""",
            ([t.oid for t in tables],),
        )
        rows = cur.fetchall()
    conn.commit()
    toast_risk = []
    for _oid, name, identity, _has_pk, toastable in rows:
        if identity == "d" and toastable:
            toast_risk.append(f"{name}({','.join(toastable)})")
    if toast_risk:
        kv(log, "warning",
           "tables with REPLICA IDENTITY DEFAULT and TOASTable columns: an update that leaves "
           "a large value unchanged emits __debezium_unavailable_value for it",
           tables=" ".join(toast_risk), fix="ALTER TABLE <table> REPLICA IDENTITY FULL")

