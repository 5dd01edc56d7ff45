"""Heartbeats: keep an idle slot moving (the WAL-bloat problem) and show liveness.

When nothing has arrived for `heartbeat_interval_ms`, the connector writes a
record to `__labstream-heartbeat.<prefix>` (Debezium's ServerNameKey/Heartbeat
schemas) and a non-transactional WAL message `labstream-heartbeat`. That message
comes back through the slot even when no captured table changes, so the slot's
confirmed_flush_lsn can advance past WAL written by other databases and tables.
"""

from __future__ import annotations

import time

from connectors.envelope import ChangeEvent, FixedSchemas

HEARTBEAT_PREFIX = "labstream-heartbeat"

KEY_AVRO = {
    "type": "record",
    "name": "ServerNameKey",
    "namespace": "io.debezium.connector.common",
    "fields": [{"name": "serverName", "type": "string"}],
    "connect.name": "io.debezium.connector.common.ServerNameKey",
}
VALUE_AVRO = {
    "type": "record",
    "name": "Heartbeat",
    "namespace": "io.debezium.connector.common",
    "fields": [{"name": "ts_ms", "type": "long"}],
    "connect.name": "io.debezium.connector.common.Heartbeat",
}
KEY_CONNECT = {
    "type": "struct",
    "fields": [{"type": "string", "optional": False, "field": "serverName"}],
    "optional": False,
    "name": "io.debezium.connector.common.ServerNameKey",
}
VALUE_CONNECT = {
    "type": "struct",
    "fields": [{"type": "int64", "optional": False, "field": "ts_ms"}],
    "optional": False,
    "name": "io.debezium.connector.common.Heartbeat",
}


def heartbeat_event(topic: str, server_name: str, ts_ms: int | None = None) -> ChangeEvent:
    schemas = FixedSchemas(topic, KEY_AVRO, VALUE_AVRO, KEY_CONNECT, VALUE_CONNECT)
    value = {"ts_ms": ts_ms if ts_ms is not None else int(time.time() * 1000)}
    return ChangeEvent(topic, {"serverName": server_name}, value, schemas=schemas)


class HeartbeatTimer:
    """Due when the stream has been quiet for the interval (0 disables)."""

    def __init__(self, interval_ms: int) -> None:
        self.interval_s = interval_ms / 1000.0
        self.last_activity = time.monotonic()

    def activity(self, now: float) -> None:
        self.last_activity = now

    def due(self, now: float) -> bool:
        return self.interval_s > 0 and now - self.last_activity >= self.interval_s

    def seconds_left(self, now: float) -> float:
        if self.interval_s <= 0:
            return 1.0
        return max(0.0, self.last_activity + self.interval_s - now)
