"""Builders of typed change records for the streams unit tests (not a test module)."""

from __future__ import annotations

import itertools
from typing import Any

from streams.records import ChangeEnvelope, ChangeRecord, SourceCoordinates

_offsets = itertools.count(1)
COMMIT_MS = 1_764_000_000_000  # 2025-11-24T16:00:00Z


def change(table: str, op: str, after: dict[str, Any] | None, before: dict[str, Any] | None = None,
           *, lsn: int = 1000, ts_ms: int = COMMIT_MS, topic: str | None = None,
           offset: int | None = None, headers: tuple[tuple[str, bytes], ...] = ()) -> ChangeRecord:
    row = after if after is not None else before or {}
    envelope = ChangeEnvelope(op=op, before=before, after=after,
                              source={"table": table, "lsn": lsn, "ts_ms": ts_ms,
                                      "schema": "public"},
                              ts_ms=ts_ms + 5)
    coordinates = SourceCoordinates(topic or f"lab.public.{table}", 0,
                                    offset if offset is not None else next(_offsets))
    return ChangeRecord(envelope, {"id": row.get("id")}, coordinates, headers)


class FakeReference:
    def __init__(self, rows: dict[str, dict[str, dict[str, Any]]] | None = None) -> None:
        self.rows = rows or {}

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        return self.rows.get(table, {}).get(key)

    def samples_of(self, experiment_id: str) -> list[dict[str, Any]]:
        return [s for s in self.rows.get("samples", {}).values()
                if s.get("experiment_id") == experiment_id]


TENANT = {"id": "acme", "name": "Acme Labs", "tier": "standard"}
EXPERIMENT = {"id": "exp-1", "tenant_id": "acme", "kind": "hplc", "status": "running",
              "title": "purity", "submitted_by": "ana"}
INSTRUMENT = {"id": "hplc-01", "name": "HPLC #1", "kind": "hplc", "location": "lab-a",
              "status": "running"}
FRIDGE = {"id": "fridge-01", "name": "Fridge #1", "kind": "fridge", "location": "cold",
          "status": "idle"}
SAMPLE = {"id": "s-1", "tenant_id": "acme", "experiment_id": "exp-1", "name": "S1",
          "material": "api"}


def full_reference() -> FakeReference:
    return FakeReference({
        "tenants": {"acme": TENANT},
        "experiments": {"exp-1": EXPERIMENT},
        "instruments": {"hplc-01": INSTRUMENT, "fridge-01": FRIDGE},
        "samples": {"s-1": SAMPLE},
    })


def run_row(status: str, **extra: Any) -> dict[str, Any]:
    row = {"id": "run-1", "experiment_id": "exp-1", "instrument_id": "hplc-01", "status": status,
           "started_at": "2025-11-24T15:00:00Z", "finished_at": None, "result": None,
           "error": None}
    row.update(extra)
    return row
