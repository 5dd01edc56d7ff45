"""Fridge sensors: ~4 °C with noise, rare excursions above 8 °C, door openings."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from labstream.simulator.actions import Reading
from labstream.simulator.catalog import Instrument

SETPOINT_C = 4.0
EXCURSION_THRESHOLD_C = 8.0


@dataclass
class FridgeState:
    celsius: float = SETPOINT_C
    excursion_ticks_left: int = 0
    excursion_target_c: float = SETPOINT_C
    door_open: bool = False


class FridgeSensors:
    def __init__(
        self,
        rng: random.Random,
        fridges: Sequence[Instrument],
        *,
        excursion_probability: float,
        door_open_probability: float,
    ) -> None:
        self.rng = rng
        self.fridges = list(fridges)
        self.excursion_probability = excursion_probability
        self.door_open_probability = door_open_probability
        self.state = {fridge.id: FridgeState() for fridge in self.fridges}
        self.excursions_started = 0

    def tick(self) -> list[Reading]:
        readings: list[Reading] = []
        for fridge in self.fridges:
            readings.extend(self._tick_one(fridge.id, self.state[fridge.id]))
        return readings

    def _tick_one(self, fridge_id: str, state: FridgeState) -> list[Reading]:
        sensor = f"{fridge_id}-sensor"
        readings: list[Reading] = []
        if state.door_open:  # a door opened last tick closes now
            state.door_open = False
            readings.append(Reading(f"{sensor}-door", fridge_id, "door", door_open=False))
        elif self.rng.random() < self.door_open_probability:
            state.door_open = True
            readings.append(Reading(f"{sensor}-door", fridge_id, "door", door_open=True))
        if state.excursion_ticks_left == 0 and self.rng.random() < self.excursion_probability:
            # compressor fault or a door left ajar: several ticks above the limit
            self.excursions_started += 1
            state.excursion_ticks_left = self.rng.randint(3, 10)
            state.excursion_target_c = self.rng.uniform(8.5, 12.0)
        if state.excursion_ticks_left > 0:
            state.excursion_ticks_left -= 1
            state.celsius = state.excursion_target_c + self.rng.uniform(-0.3, 0.3)
        else:
            # mean-reverting noise around the setpoint; an open door warms it a little
            warming = self.rng.uniform(0.5, 1.5) if state.door_open else 0.0
            drift = 0.5 * (SETPOINT_C - state.celsius) + self.rng.gauss(0, 0.15)
            state.celsius = min(state.celsius + drift + warming, 7.5)
        celsius = Decimal(str(round(state.celsius, 2)))
        readings.append(Reading(f"{sensor}-temp", fridge_id, "temperature", celsius=celsius))
        return readings
