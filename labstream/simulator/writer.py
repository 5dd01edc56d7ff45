"""Write each simulated action as one ordinary transaction, trace context included.

Every transaction starts with `emit_db_trace_context(cursor)`, a transactional
logical decoding message carrying the current span's traceparent, so the CDC
connector can attach it to each row change of that transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from base.errors import ServiceUnavailable
from labstream.simulator import catalog
from labstream.simulator.actions import (
    Action,
    CancelExperiment,
    FinishRun,
    QueueExperiment,
    ReceiveLot,
    RecordReadings,
    StartRun,
    SubmitExperiment,
)
from labstream.simulator.exceptions import ActionFailed
from tracing.propagation import emit_db_trace_context

Cursor = psycopg.Cursor[Any]


def _submit(cur: Cursor, action: SubmitExperiment) -> None:
    cur.execute(
        "INSERT INTO public.experiments"
        " (id, tenant_id, kind, status, title, submitted_by, priority, protocol)"
        " VALUES (%s, %s, %s, 'submitted', %s, %s, %s, %s)",
        (
            action.experiment_id,
            action.tenant_id,
            action.experiment_kind,
            action.title,
            action.submitted_by,
            action.priority,
            Jsonb(action.protocol),
        ),
    )
    cur.executemany(
        "INSERT INTO public.samples (id, tenant_id, experiment_id, name, material, volume_ul)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        [
            (s.sample_id, action.tenant_id, action.experiment_id, s.name, s.material, s.volume_ul)
            for s in action.samples
        ],
    )


def _queue(cur: Cursor, action: QueueExperiment) -> None:
    cur.execute(
        "UPDATE public.experiments SET status = 'queued' WHERE id = %s AND status = 'submitted'",
        (action.experiment_id,),
    )


def _cancel(cur: Cursor, action: CancelExperiment) -> None:
    cur.execute(
        "UPDATE public.experiments SET status = 'cancelled', completed_at = now()"
        " WHERE id = %s AND status IN ('submitted', 'queued')",
        (action.experiment_id,),
    )


def _start_run(cur: Cursor, action: StartRun) -> None:
    cur.execute(
        "INSERT INTO public.runs (id, experiment_id, instrument_id, status, started_at)"
        " VALUES (%s, %s, %s, 'running', now())",
        (action.run_id, action.experiment_id, action.instrument_id),
    )
    cur.execute(
        "UPDATE public.experiments SET status = 'running' WHERE id = %s", (action.experiment_id,)
    )
    cur.execute(
        "UPDATE public.instruments SET status = 'running', current_run_id = %s WHERE id = %s",
        (action.run_id, action.instrument_id),
    )
    for use in action.consumed:
        cur.execute(
            "UPDATE public.inventory_items SET quantity = GREATEST(quantity - %s, 0) WHERE id = %s",
            (use.amount, use.item_id),
        )


def _finish_run(cur: Cursor, action: FinishRun) -> None:
    outcome = "completed" if action.succeeded else "failed"
    cur.execute(
        "UPDATE public.runs SET status = %s, finished_at = now(), result = %s, error = %s"
        " WHERE id = %s",
        (
            outcome,
            Jsonb(action.result) if action.result is not None else None,
            action.error,
            action.run_id,
        ),
    )
    cur.execute(
        "UPDATE public.experiments SET status = %s, completed_at = now() WHERE id = %s",
        (outcome, action.experiment_id),
    )
    # only if no other simulator has taken the instrument meanwhile
    cur.execute(
        "UPDATE public.instruments SET status = 'idle', current_run_id = NULL"
        " WHERE id = %s AND current_run_id = %s",
        (action.instrument_id, action.run_id),
    )


def _receive_lot(cur: Cursor, action: ReceiveLot) -> None:
    cur.execute(
        "INSERT INTO public.inventory_items"
        " (id, name, lot, quantity, unit, reorder_level, expires_at, location)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (
            action.item_id,
            action.name,
            action.lot,
            action.quantity,
            action.unit,
            action.reorder_level,
            action.expires_at,
            action.location,
        ),
    )


def _record_readings(cur: Cursor, action: RecordReadings) -> None:
    cur.executemany(
        "INSERT INTO public.sensor_readings (sensor_id, instrument_id, kind, celsius, door_open)"
        " VALUES (%s, %s, %s, %s, %s)",
        [
            (r.sensor_id, r.instrument_id, r.sensor_kind, r.celsius, r.door_open)
            for r in action.readings
        ],
    )


# Explicit registry: one SQL writer per action type.
WRITERS: dict[type[Action], Callable[[Cursor, Any], None]] = {
    SubmitExperiment: _submit,
    QueueExperiment: _queue,
    CancelExperiment: _cancel,
    StartRun: _start_run,
    FinishRun: _finish_run,
    ReceiveLot: _receive_lot,
    RecordReadings: _record_readings,
}


class LabWriter:
    """Runs actions against the lab database on one autocommit connection."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def execute(self, action: Action) -> bool:
        """Write `action` in one transaction; True if a trace context was attached."""
        write = WRITERS[type(action)]
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                traced = emit_db_trace_context(cur)
                write(cur, action)
        except psycopg.OperationalError as exc:
            raise ServiceUnavailable(
                f"lost the lab database while writing {action.kind}: {exc}",
                hint="check that PostgreSQL is up (`labstream stack status`) and run again",
            ) from exc
        except psycopg.Error as exc:
            raise ActionFailed(f"{action.kind} was rolled back: {exc}") from exc
        return bool(traced)

    def seed(self, tenants: Iterable[catalog.Tenant], lots: Iterable[ReceiveLot]) -> None:
        """Tenants, instruments, starting inventory and default rules; existing rows win."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            emit_db_trace_context(cur)
            cur.executemany(
                "INSERT INTO public.tenants (id, name, tier) VALUES (%s, %s, %s)"
                " ON CONFLICT (id) DO NOTHING",
                [(t.id, t.name, t.tier) for t in tenants],
            )
            cur.executemany(
                "INSERT INTO public.instruments (id, name, kind, location) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (id) DO NOTHING",
                [(i.id, i.name, i.kind, i.location) for i in catalog.INSTRUMENTS],
            )
            for lot in lots:
                _receive_lot(cur, lot)
            cur.executemany(
                "INSERT INTO public.trigger_rules (id, enabled, event_kind, condition, backend,"
                " command, timeout_s, max_concurrency, description)"
                " VALUES (%s, true, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                [
                    (
                        r.id,
                        r.event_kind,
                        Jsonb(r.condition),
                        r.backend,
                        Jsonb(r.command),
                        r.timeout_s,
                        r.max_concurrency,
                        r.description,
                    )
                    for r in catalog.DEFAULT_RULES
                ],
            )
