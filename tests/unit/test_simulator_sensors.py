"""Fridge telemetry: normal temperatures, excursions at the configured rate, doors."""

from __future__ import annotations

import random

from labstream.simulator import catalog
from labstream.simulator.sensors import EXCURSION_THRESHOLD_C, FridgeSensors


def sensors(seed: int, excursion: float, door: float) -> FridgeSensors:
    return FridgeSensors(
        random.Random(seed),
        catalog.FRIDGES,
        excursion_probability=excursion,
        door_open_probability=door,
    )


def test_every_tick_reads_every_fridge_temperature() -> None:
    fridges = sensors(1, 0.02, 0.03)
    for _ in range(50):
        temperatures = [r for r in fridges.tick() if r.sensor_kind == "temperature"]
        assert sorted(r.instrument_id for r in temperatures) == sorted(
            f.id for f in catalog.FRIDGES
        )
        assert all(r.celsius is not None and r.door_open is None for r in temperatures)


def test_without_excursions_fridges_stay_below_the_limit() -> None:
    fridges = sensors(2, 0.0, 0.1)
    readings = [r for _ in range(3000) for r in fridges.tick() if r.sensor_kind == "temperature"]
    assert all(r.celsius is not None and r.celsius < EXCURSION_THRESHOLD_C for r in readings)
    mean = sum(float(r.celsius or 0) for r in readings) / len(readings)
    assert 3.5 < mean < 5.0


def test_excursions_start_at_the_configured_rate_and_read_above_8_c() -> None:
    probability = 0.03
    fridges = sensors(3, probability, 0.0)
    ticks = 6000
    hot = 0
    for _ in range(ticks):
        hot += sum(
            1 for r in fridges.tick() if r.celsius is not None and r.celsius > EXCURSION_THRESHOLD_C
        )
    # an excursion lasts 3-10 ticks and no new one starts during it (~6.5 on average)
    eligible = ticks * len(catalog.FRIDGES) - hot
    rate = fridges.excursions_started / eligible
    assert 0.7 * probability < rate < 1.3 * probability
    assert 3 * fridges.excursions_started <= hot <= 10 * fridges.excursions_started


def test_a_door_that_opens_closes_on_the_next_tick() -> None:
    fridges = sensors(4, 0.0, 0.05)
    open_now: set[str] = set()
    opened = 0
    for _ in range(2000):
        doors = {r.instrument_id: r.door_open for r in fridges.tick() if r.sensor_kind == "door"}
        for fridge in open_now:
            assert doors.get(fridge) is False
        open_now = {fridge for fridge, is_open in doors.items() if is_open}
        opened += len(open_now)
    assert opened > 50
