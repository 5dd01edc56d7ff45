"""What happens next in the simulated lab, decided from a seeded random generator.

`LabModel.next_action(now)` picks one front-end action that the current state
allows (submit, queue, start a run on a free instrument, finish a due run,
cancel, receive a reorder) and `apply(action)` moves the state on once the
action was written. `telemetry(now)` is one sensor tick. Nothing here touches a
database or a clock, so the same seed and `now` give the same actions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from labstream.simulator import catalog
from labstream.simulator.actions import (
    Action,
    CancelExperiment,
    Consumption,
    FinishRun,
    NewSample,
    QueueExperiment,
    ReceiveLot,
    RecordReadings,
    StartRun,
    SubmitExperiment,
)
from labstream.simulator.sensors import FridgeSensors


@dataclass(frozen=True)
class SimulationConfig:
    """Knobs of the simulated lab; defaults give a busy but plausible day."""

    run_token: str = "sim"  # makes generated ids unique per simulator run
    tenants: int = 4
    failure_rate: float = 0.05  # share of runs that fail
    cancel_weight: float = 0.2  # relative to ~3-6 for the common actions
    excursion_probability: float = 0.02  # per fridge per tick: temperature goes > 8 °C
    door_open_probability: float = 0.03  # per fridge per tick
    short_expiry_probability: float = 0.2  # a received lot expires within 7 days
    max_open_experiments: int = 40
    run_length: tuple[int, int] = (4, 20)  # a run lasts this many front-end actions


@dataclass
class Experiment:
    id: str
    kind: str
    tenant_id: str
    status: str


@dataclass
class Run:
    id: str
    experiment_id: str
    instrument_id: str
    kind: str
    due_step: int


@dataclass
class Lot:
    id: str
    reagent: str
    quantity: Decimal
    expires_at: datetime


def tenants_for(count: int) -> list[catalog.Tenant]:
    """The first `count` catalog tenants, then generated ones."""
    chosen = list(catalog.TENANTS[:count])
    for number in range(len(chosen) + 1, count + 1):
        chosen.append(catalog.Tenant(f"tenant-{number:03d}", f"Tenant {number}", "standard"))
    return chosen


@dataclass
class LabModel:
    rng: random.Random
    config: SimulationConfig = field(default_factory=SimulationConfig)

    def __post_init__(self) -> None:
        if self.config.tenants < 1:
            raise ValueError("tenants must be at least 1")
        self.tenants = tenants_for(self.config.tenants)
        self.step = 0
        self.counter = 0
        self.experiments: dict[str, Experiment] = {}
        self.runs: dict[str, Run] = {}
        self.busy: dict[str, str] = {}  # instrument id -> run id
        self.lots: dict[str, Lot] = {}
        self.reagents = {r.name: r for r in catalog.REAGENTS}
        # its own generator: how many ticks fall between two actions depends on the
        # wall clock, and must not change which actions a seed produces
        self.sensors = FridgeSensors(
            random.Random(self.rng.getrandbits(64)),
            catalog.FRIDGES,
            excursion_probability=self.config.excursion_probability,
            door_open_probability=self.config.door_open_probability,
        )

    # -- ids -----------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.config.run_token}-{self.counter:06d}"

    # -- seed ----------------------------------------------------------------------------

    def initial_lots(self, now: datetime) -> list[ReceiveLot]:
        """One starting lot per reagent, fixed ids so seeding twice changes nothing."""
        lots = [
            self._lot(reagent, now, item_id=f"inv-{reagent.name}-seed", lot="SEED")
            for reagent in catalog.REAGENTS
        ]
        for lot in lots:
            self.apply(lot)
        return lots

    def _lot(
        self, reagent: catalog.Reagent, now: datetime, *, item_id: str, lot: str
    ) -> ReceiveLot:
        if self.rng.random() < self.config.short_expiry_probability:
            expires_in = timedelta(hours=self.rng.uniform(6, 7 * 24 - 1))
        else:
            expires_in = timedelta(days=self.rng.randint(30, 540))
        return ReceiveLot(
            item_id=item_id,
            name=reagent.name,
            lot=lot,
            quantity=reagent.lot_size,
            unit=reagent.unit,
            reorder_level=reagent.reorder_level,
            expires_at=now + expires_in,
            location=reagent.location,
        )

    # -- decisions -----------------------------------------------------------------------

    def next_action(self, now: datetime) -> Action:
        """Choose the next front-end action the current state allows."""
        self.step += 1
        choices: list[tuple[float, str]] = []
        low = self._low_reagents(now)
        if low:
            choices.append((6.0, "receive"))
        if self._due_runs():
            choices.append((4.0, "finish"))
        if self._startable():
            choices.append((4.0, "start"))
        if self._with_status("submitted"):
            choices.append((3.0, "queue"))
        if self._with_status("submitted", "queued"):
            choices.append((self.config.cancel_weight, "cancel"))
        open_count = len(self._with_status("submitted", "queued", "running"))
        choices.append((3.0 if open_count < self.config.max_open_experiments else 0.3, "submit"))
        weights, names = zip(*choices, strict=True)
        chosen = self.rng.choices(names, weights=weights)[0]
        if chosen == "receive":
            return self._receive(self.rng.choice(low), now)
        if chosen == "finish":
            return self._finish(self.rng.choice(self._due_runs()))
        if chosen == "start":
            return self._start(*self.rng.choice(self._startable()), now)
        if chosen == "queue":
            return QueueExperiment(self.rng.choice(self._with_status("submitted")).id)
        if chosen == "cancel":
            return CancelExperiment(self.rng.choice(self._with_status("submitted", "queued")).id)
        return self._submit()

    def telemetry(self, now: datetime) -> RecordReadings:
        """One sensor tick: a temperature for every fridge, door events now and then."""
        return RecordReadings(readings=tuple(self.sensors.tick()))

    def _with_status(self, *statuses: str) -> list[Experiment]:
        return [e for e in self.experiments.values() if e.status in statuses]

    def _due_runs(self) -> list[Run]:
        return [r for r in self.runs.values() if r.due_step <= self.step]

    def _startable(self) -> list[tuple[Experiment, str]]:
        pairs = []
        for experiment in self._with_status("queued"):
            free = self._free_instrument(catalog.INSTRUMENT_FOR[experiment.kind])
            if free is not None:
                pairs.append((experiment, free))
        return pairs

    def _free_instrument(self, kind: str) -> str | None:
        for instrument in catalog.INSTRUMENTS:
            if instrument.kind == kind and instrument.id not in self.busy:
                return instrument.id
        return None

    def _usable_lots(self, reagent: str, now: datetime) -> list[Lot]:
        lots = [
            lot
            for lot in self.lots.values()
            if lot.reagent == reagent and lot.quantity > 0 and lot.expires_at > now
        ]
        return sorted(lots, key=lambda lot: (lot.expires_at, lot.id))  # first expiry first out

    def _low_reagents(self, now: datetime) -> list[catalog.Reagent]:
        return [
            reagent
            for reagent in catalog.REAGENTS
            if sum(lot.quantity for lot in self._usable_lots(reagent.name, now))
            < reagent.reorder_level
        ]

    # -- builders ------------------------------------------------------------------------

    def _submit(self) -> SubmitExperiment:
        kind = self.rng.choice(catalog.EXPERIMENT_KINDS)
        tenant = self.rng.choice(self.tenants)
        multi_sample = kind in ("hplc", "lc-ms", "plate-read")
        sample_count = self.rng.randint(1, 4) if multi_sample else 1
        experiment_id = self._next_id("exp")
        samples = tuple(
            NewSample(
                sample_id=self._next_id("smp"),
                name=f"{experiment_id}-s{number}",
                material=self.rng.choice(catalog.MATERIALS),
                volume_ul=Decimal(str(round(self.rng.uniform(20, 1500), 2))),
            )
            for number in range(1, sample_count + 1)
        )
        return SubmitExperiment(
            experiment_id=experiment_id,
            tenant_id=tenant.id,
            experiment_kind=kind,
            title=f"{kind} {self.rng.choice(['purity check', 'screen', 'stability', 'batch QC'])}",
            submitted_by=self.rng.choice(catalog.SCIENTISTS),
            priority=self.rng.choices([3, 5, 7, 9], weights=[2, 5, 2, 1])[0],
            protocol=catalog.protocol_for(kind, self.rng, sample_count),
            samples=samples,
        )

    def _start(self, experiment: Experiment, instrument_id: str, now: datetime) -> StartRun:
        consumed = []
        for reagent in catalog.REAGENTS:
            amount = reagent.per_run.get(experiment.kind)
            if amount is None:
                continue
            lot = next(
                (lot for lot in self._usable_lots(reagent.name, now) if lot.quantity >= amount),
                None,
            )
            if lot is not None:
                consumed.append(Consumption(lot.id, amount))
        return StartRun(
            run_id=self._next_id("run"),
            experiment_id=experiment.id,
            instrument_id=instrument_id,
            consumed=tuple(consumed),
        )

    def _finish(self, run: Run) -> FinishRun:
        if self.rng.random() < self.config.failure_rate:
            reason = self.rng.choice(catalog.FAILURE_REASONS[run.kind])
            return FinishRun(run.id, run.experiment_id, run.instrument_id, False, None, reason)
        result = catalog.result_for(run.kind, self.rng)
        return FinishRun(run.id, run.experiment_id, run.instrument_id, True, result)

    def _receive(self, reagent: catalog.Reagent, now: datetime) -> ReceiveLot:
        item_id = self._next_id(f"inv-{reagent.name}")
        lot = f"L{now:%y%m%d}-{self.counter:06d}"
        return self._lot(reagent, now, item_id=item_id, lot=lot)

    # -- state changes after a successful write ------------------------------------------

    def apply(self, action: Action) -> None:
        if isinstance(action, SubmitExperiment):
            self.experiments[action.experiment_id] = Experiment(
                action.experiment_id, action.experiment_kind, action.tenant_id, "submitted"
            )
        elif isinstance(action, QueueExperiment):
            self.experiments[action.experiment_id].status = "queued"
        elif isinstance(action, CancelExperiment):
            self.experiments.pop(action.experiment_id, None)  # closed: forget it
        elif isinstance(action, StartRun):
            experiment = self.experiments[action.experiment_id]
            experiment.status = "running"
            low, high = self.config.run_length
            self.runs[action.run_id] = Run(
                action.run_id,
                experiment.id,
                action.instrument_id,
                experiment.kind,
                self.step + self.rng.randint(low, high),
            )
            self.busy[action.instrument_id] = action.run_id
            for use in action.consumed:
                lot = self.lots[use.item_id]
                lot.quantity = max(lot.quantity - use.amount, Decimal(0))
        elif isinstance(action, FinishRun):
            self.runs.pop(action.run_id, None)
            self.busy.pop(action.instrument_id, None)
            self.experiments.pop(action.experiment_id, None)
        elif isinstance(action, ReceiveLot):
            self.lots[action.item_id] = Lot(
                action.item_id, action.name, action.quantity, action.expires_at
            )
