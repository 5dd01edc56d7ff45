"""The connector's /metrics, /healthz and /readyz (LABSTREAM_METRICS_PORT).

Nothing here runs per record: the emitter already counts records and bytes in plain
ints, and this collector reads them, the delivery tracker's position and the slot's lag
(the `labstream cdc status` query, on a short connection of its own) at scrape time.
The commit -> Kafka latency histogram is observed once per transaction by the tracker.
"""

from __future__ import annotations

from typing import Any

import psycopg

from connectors.source.config import CdcSettings
from connectors.source.status import connector_status
from tracing import health, metrics

PHASES = ("starting", "connecting", "snapshot", "handover", "streaming")
DESCRIBE: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "labstream_cdc_records_total": ("counter", "Change records handed to Kafka.", ()),
    "labstream_cdc_bytes_total": ("counter", "Key + value bytes of those records.", ()),
    "labstream_cdc_slot_lag_bytes": (
        "gauge", "WAL the slot has not confirmed: current WAL LSN - confirmed_flush_lsn.", ()),
    "labstream_cdc_slot_lag_seconds": (
        "gauge", "Now - commit time of the last transaction Kafka acknowledged "
        "(Debezium's MilliSecondsBehindSource, in seconds).", ()),
    "labstream_cdc_slot_active": ("gauge", "1 when the replication slot is active.", ()),
    "labstream_cdc_phase": ("gauge", "1 for the connector's current phase.", ("phase",)),
    "labstream_cdc_snapshot_rows": (
        "gauge", "Rows the running (or last) snapshot emitted, per table.", ("table",)),
}


class ConnectorMetrics:
    """Reads a running `CdcConnector` for the collector and the health checks."""

    def __init__(self, connector: Any, settings: CdcSettings, database_url: str) -> None:
        self.connector = connector
        self.settings = settings
        self.database_url = database_url

    def read(self) -> dict[str, Any]:
        # the emitter of the current session (the coordinator builds one per session)
        emitter = getattr(getattr(self.connector, "_ctx", None), "emitter", None)
        values: dict[str, Any] = {
            "labstream_cdc_records_total": getattr(emitter, "records", 0),
            "labstream_cdc_bytes_total": getattr(emitter, "bytes", 0),
            "labstream_cdc_phase": {(p,): float(p == self.connector.phase) for p in PHASES},
        }
        try:
            status = self._status()
        except psycopg.Error:
            return values  # the database is down: the counters still answer
        if status.lag_bytes is not None:
            values["labstream_cdc_slot_lag_bytes"] = status.lag_bytes
        if status.lag_seconds is not None:
            values["labstream_cdc_slot_lag_seconds"] = status.lag_seconds
        values["labstream_cdc_slot_active"] = float(status.slot_active)
        tables = status.snapshot_progress.get("tables", {}) if status.snapshot_progress else {}
        values["labstream_cdc_snapshot_rows"] = {
            (name,): float(info.get("rows", 0)) for name, info in tables.items()}
        return values

    def _status(self) -> Any:
        with psycopg.connect(self.database_url, connect_timeout=2,
                             application_name="labstream-cdc-metrics") as conn:
            return connector_status(conn, self.settings)

    # -- health -----------------------------------------------------------------------------

    def alive(self) -> str | None:
        if self.connector.stopping:
            return "the connector is stopping"
        return None

    def streaming(self) -> str | None:
        phase = self.connector.phase
        return None if phase in ("snapshot", "handover", "streaming") else f"phase is {phase}"

    def slot_active(self) -> str | None:
        status = self._status()
        if not status.slot_exists:
            return f"replication slot {status.slot} does not exist"
        return None if status.slot_active else f"replication slot {status.slot} is not active"


def start(connector: Any, settings: CdcSettings, database_url: str) -> None:
    """Serve the connector's metrics and health when LABSTREAM_METRICS_PORT is set."""
    port = metrics.metrics_port()
    if port is None:
        return
    observed = ConnectorMetrics(connector, settings, database_url)
    metrics.register_collector("cdc", metrics.CallbackCollector(observed.read, DESCRIBE))
    checks = health.HealthChecks(
        "labstream-cdc",
        live={"connector": observed.alive},
        ready={"phase": observed.streaming, "slot": observed.slot_active},
    )
    health.serve(port, checks)
