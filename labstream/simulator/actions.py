"""What the simulated front end and sensors do: one frozen record per action.

Each action is written in one transaction. `span_name` is the HTTP route the
lab's web front end would have served, used as the SERVER span's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar


@dataclass(frozen=True)
class Action:
    kind: ClassVar[str] = "action"
    span_name: ClassVar[str] = "POST /"


@dataclass(frozen=True)
class NewSample:
    sample_id: str
    name: str
    material: str
    volume_ul: Decimal


@dataclass(frozen=True)
class SubmitExperiment(Action):
    kind: ClassVar[str] = "experiment.submit"
    span_name: ClassVar[str] = "POST /experiments"
    experiment_id: str
    tenant_id: str
    experiment_kind: str
    title: str
    submitted_by: str
    priority: int
    protocol: dict[str, Any]
    samples: tuple[NewSample, ...] = ()


@dataclass(frozen=True)
class QueueExperiment(Action):
    kind: ClassVar[str] = "experiment.queue"
    span_name: ClassVar[str] = "POST /experiments/{id}/queue"
    experiment_id: str


@dataclass(frozen=True)
class CancelExperiment(Action):
    kind: ClassVar[str] = "experiment.cancel"
    span_name: ClassVar[str] = "POST /experiments/{id}/cancel"
    experiment_id: str


@dataclass(frozen=True)
class Consumption:
    item_id: str
    amount: Decimal


@dataclass(frozen=True)
class StartRun(Action):
    kind: ClassVar[str] = "run.start"
    span_name: ClassVar[str] = "POST /runs"
    run_id: str
    experiment_id: str
    instrument_id: str
    consumed: tuple[Consumption, ...] = ()


@dataclass(frozen=True)
class FinishRun(Action):
    kind: ClassVar[str] = "run.finish"
    span_name: ClassVar[str] = "PUT /runs/{id}/result"
    run_id: str
    experiment_id: str
    instrument_id: str
    succeeded: bool
    result: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True)
class ReceiveLot(Action):
    """A reorder arrives: a new lot of a reagent that ran low."""

    kind: ClassVar[str] = "inventory.receive"
    span_name: ClassVar[str] = "POST /inventory"
    item_id: str
    name: str
    lot: str
    quantity: Decimal
    unit: str
    reorder_level: Decimal
    expires_at: datetime
    location: str


@dataclass(frozen=True)
class Reading:
    sensor_id: str
    instrument_id: str
    sensor_kind: str  # 'temperature' | 'door'
    celsius: Decimal | None = None
    door_open: bool | None = None


@dataclass(frozen=True)
class RecordReadings(Action):
    """One telemetry tick from the sensor gateway: every fridge, sometimes a door."""

    kind: ClassVar[str] = "sensor.readings"
    span_name: ClassVar[str] = "POST /sensors/readings"
    readings: tuple[Reading, ...] = field(default_factory=tuple)
