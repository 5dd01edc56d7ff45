"""Reference data and trigger rules for the dry run: as the worker sees them now.

The question a dry run answers is "what would the chain do if I re-drove these
events *now*". The worker enriches a re-driven event with its in-memory
reference tables as they are now, so the dry run uses the same, two ways:

- `topics` (default): read every reference CDC topic (`<cdc prefix>.public.<table>`,
  the worker's `LABSTREAM_WORKER_CDC_PREFIX`) from the beginning into the worker's
  own `streams.reference.ReferenceStore` — exactly what a worker holds after
  start-up, rules included. Costs one read of the reference topics.
- `db`: read the current rows from the lab DB (`DbReference`, `load_rules`). The
  topics are fed from these rows by CDC, so it is the same data minus the CDC
  lag, without reading any topic; use it when the reference topics have aged
  out of retention or the connector is not running. Rows are converted to the
  shape the CDC decoder gives the agents (timestamps ISO-8601 UTC text, jsonb
  JSON text, numeric Decimal) so enrich/route/trigger see the same values.

Either way the rules are today's, so a rule added after an incident shows up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

# at import, not per record: an import statement in the function cost ≈ 1 µs a call
from streams.codec import _key_from_row
from streams.records import ChangeEnvelope, ChangeRecord, make_change_record, make_coordinates

REFERENCE_TABLES = ("tenants", "experiments", "instruments", "inventory_items", "samples")


def cdc_shaped(row: Mapping[str, Any]) -> dict[str, Any]:
    """A DB row as the Avro decoder would hand it to the agents."""
    shaped: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, datetime):
            moment = value.astimezone(UTC) if value.tzinfo else value
            shaped[name] = moment.isoformat().replace("+00:00", "Z")
        elif isinstance(value, date):
            shaped[name] = value.isoformat()
        elif isinstance(value, dict | list):
            shaped[name] = json.dumps(value, separators=(",", ":"), sort_keys=True)
        else:
            shaped[name] = value
    return shaped


class DbReference:
    """`streams.enrich.ReferenceData` over the lab DB, cached per (table, key) for one run."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self._rows: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._samples: dict[str, list[dict[str, Any]]] = {}
        # `streams.enrich.enrich` caches enrichments here: rows are read once per run
        # and never change during it, so neither do the enrichments made from them
        self.enrichments: dict[tuple[str, ...], Any] = {}

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        if table not in REFERENCE_TABLES:
            return None
        cache_key = (table, key)
        if cache_key not in self._rows:
            query = sql.SQL("SELECT * FROM public.{} WHERE id::text = %s").format(
                sql.Identifier(table)
            )
            with self.conn.cursor(row_factory=dict_row) as cursor:
                found = cursor.execute(query, (key,)).fetchone()
            self._rows[cache_key] = cdc_shaped(found) if found else None
        return self._rows[cache_key]

    def samples_of(self, experiment_id: str) -> list[dict[str, Any]]:
        if experiment_id not in self._samples:
            with self.conn.cursor(row_factory=dict_row) as cursor:
                rows = cursor.execute(
                    "SELECT * FROM public.samples WHERE experiment_id = %s ORDER BY id",
                    (experiment_id,),
                ).fetchall()
            self._samples[experiment_id] = [cdc_shaped(row) for row in rows]
        return self._samples[experiment_id]


def load_rules(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Today's trigger rules, as CDC rows (`streams.trigger.decide` takes rows)."""
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute("SELECT * FROM public.trigger_rules ORDER BY id").fetchall()
    return [cdc_shaped(row) for row in rows]


def reference_from_topics(session: Any) -> tuple[Any, list[Any]]:
    """The worker's `ReferenceStore`, loaded from the reference CDC topics; and its rules."""
    from replay.exceptions import SelectionError
    from replay.selection import Selection, plan
    from streams.config import WorkerSettings
    from streams.reference import ReferenceStore
    from streams.topics import worker_topics

    topics = worker_topics(WorkerSettings()).reference_topics  # topic -> table
    offsets = session.offsets  # topics and offsets from librdkafka (replay.offsets)
    existing = offsets.topics()
    missing = [topic for topic in topics if topic not in existing]
    if missing:
        raise SelectionError(
            f"--reference topics: {', '.join(sorted(missing))} do not exist",
            hint="start the connector (`labstream cdc run`), set LABSTREAM_WORKER_CDC_PREFIX, "
            "or use --reference db",
        )
    store = ReferenceStore()
    everything = Selection(topics=tuple(topics))
    for record in session.scan(plan(everything, offsets), everything):
        change = change_record(record)
        if change is not None:
            store.apply_change(change)
    return store, store.rules()


def change_record(record: Any) -> ChangeRecord | None:
    """A `ReplayRecord` as the worker's `ChangeRecord`; None if it is not a decodable change."""
    value = record.value
    if record.decode_error or not (type(value) is dict or isinstance(value, Mapping)) \
            or "op" not in value:
        return None
    envelope = ChangeEnvelope.from_value(value)
    key = record.key
    # `ChangeRecord(...)` and `SourceCoordinates(...)` without their dataclass __init__s
    # (`streams.records.fast_constructor`): the same objects at half the cost
    return make_change_record(
        envelope,
        # the worker's own rule for a keyless record, so change_id (and job keys) agree
        key if type(key) is dict or isinstance(key, Mapping) else _key_from_row(envelope),
        make_coordinates(record.topic, record.partition, record.offset),
        tuple(record.headers),
    )


def job_statuses(conn: psycopg.Connection, job_keys: list[str]) -> dict[str, str]:
    """`job_key -> status` of the jobs that exist already (what the runner would compare)."""
    if not job_keys:  # nothing fired: no need to import the jobs package (≈ 0.3 s)
        return {}
    from streams.jobs import reads  # lazy: the jobs package pulls in the runner

    return reads.statuses_by_key(conn, job_keys)
