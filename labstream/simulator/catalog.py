"""The simulated lab's fixed world: tenants, instruments, reagents, default rules,
and what a protocol and a result look like for each experiment kind.

Generators take the caller's `random.Random` so a seed reproduces everything.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

EXPERIMENT_KINDS = ("hplc", "synthesis", "cell-culture", "lc-ms", "plate-read")

# Which instrument kind runs which experiment kind.
INSTRUMENT_FOR = {
    "hplc": "hplc",
    "lc-ms": "lc-ms",
    "plate-read": "plate-reader",
    "cell-culture": "incubator",
    "synthesis": "synthesizer",
}


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    tier: str


@dataclass(frozen=True)
class Instrument:
    id: str
    name: str
    kind: str
    location: str


@dataclass(frozen=True)
class Reagent:
    """A stocked material; `per_run` is how much one run of each kind uses."""

    name: str
    unit: str
    lot_size: Decimal
    reorder_level: Decimal
    location: str
    per_run: dict[str, Decimal]


@dataclass(frozen=True)
class TriggerRule:
    id: str
    event_kind: str
    command: list[str]
    description: str
    condition: dict[str, Any]
    backend: str = "local"
    timeout_s: int = 600
    max_concurrency: int = 4


TENANTS = (
    Tenant("acme-bio", "Acme Biosciences", "enterprise"),
    Tenant("helix-tx", "Helix Therapeutics", "standard"),
    Tenant("norden-labs", "Norden Labs", "standard"),
    Tenant("pipette-uni", "Pipette University", "free"),
    Tenant("quanta-pharma", "Quanta Pharma", "enterprise"),
    Tenant("river-genomics", "River Genomics", "standard"),
    Tenant("solvent-co", "Solvent & Co", "free"),
    Tenant("tidal-rx", "Tidal Rx", "standard"),
)

INSTRUMENTS = (
    Instrument("hplc-01", "Agilent 1260 Infinity II #1", "hplc", "bay-a"),
    Instrument("hplc-02", "Agilent 1260 Infinity II #2", "hplc", "bay-a"),
    Instrument("hplc-03", "Waters Alliance e2695", "hplc", "bay-b"),
    Instrument("lcms-01", "Thermo Q Exactive", "lc-ms", "bay-b"),
    Instrument("reader-01", "BMG CLARIOstar", "plate-reader", "bay-c"),
    Instrument("reader-02", "Tecan Spark", "plate-reader", "bay-c"),
    Instrument("incubator-01", "Thermo Heracell 240i #1", "incubator", "cell-room"),
    Instrument("incubator-02", "Thermo Heracell 240i #2", "incubator", "cell-room"),
    Instrument("synth-01", "Chemspeed SWING", "synthesizer", "chem-lab"),
    Instrument("fridge-01", "Reagent fridge 4C #1", "fridge", "cold-room"),
    Instrument("fridge-02", "Reagent fridge 4C #2", "fridge", "cell-room"),
)

FRIDGES = tuple(i for i in INSTRUMENTS if i.kind == "fridge")

D = Decimal
REAGENTS = (
    Reagent(
        "acetonitrile-hplc",
        "ml",
        D(4000),
        D(800),
        "solvent-cabinet",
        {"hplc": D("45.5"), "lc-ms": D("12.0")},
    ),
    Reagent(
        "water-hplc",
        "ml",
        D(4000),
        D(800),
        "solvent-cabinet",
        {"hplc": D("60.0"), "lc-ms": D("15.0")},
    ),
    Reagent(
        "formic-acid", "ml", D(500), D(50), "acid-cabinet", {"hplc": D("0.5"), "lc-ms": D("0.2")}
    ),
    Reagent("dmem-medium", "ml", D(5000), D(1000), "fridge-02", {"cell-culture": D("120.0")}),
    Reagent("fbs", "ml", D(500), D(100), "fridge-02", {"cell-culture": D("12.0")}),
    Reagent("trypsin-edta", "ml", D(500), D(100), "fridge-02", {"cell-culture": D("5.0")}),
    Reagent(
        "plate-96-well",
        "units",
        D(200),
        D(40),
        "store-room",
        {"plate-read": D(2), "cell-culture": D(1)},
    ),
    Reagent("hatu", "g", D(100), D(20), "fridge-01", {"synthesis": D("1.250")}),
    Reagent("dipea", "ml", D(250), D(50), "fridge-01", {"synthesis": D("2.0")}),
    Reagent("dmf-anhydrous", "ml", D(2000), D(400), "solvent-cabinet", {"synthesis": D("25.0")}),
)

DEFAULT_RULES = (
    TriggerRule(
        id="hplc-peak-summary",
        event_kind="hplc.completed",
        command=[
            "python",
            "-m",
            "streams.jobs.examples.hplc_peak_summary",
            "--run",
            "{payload.run_id}",
        ],
        description="Summarise the peaks of every completed HPLC run.",
        condition={},
    ),
    TriggerRule(
        id="run-failure-note",
        event_kind="run.failed",
        command=[
            "python",
            "-c",
            "import sys; print('run failed:', *sys.argv[1:])",
            "{payload.run_id}",
        ],
        description="Note every failed instrument run for the on-call scientist.",
        condition={},
        timeout_s=60,
        max_concurrency=2,
    ),
)

SCIENTISTS = ("a.okafor", "b.lindqvist", "c.tanaka", "d.moreau", "e.silva", "f.novak", "g.haddad")
MATERIALS = (
    "plasma",
    "serum",
    "cell lysate",
    "reaction mixture",
    "buffer blank",
    "API batch",
    "supernatant",
    "standard",
)


def protocol_for(kind: str, rng: random.Random, sample_count: int) -> dict[str, Any]:
    """A protocol document typical of `kind`."""
    if kind == "hplc":
        return {
            "method": rng.choice(["reverse-phase-gradient", "isocratic-assay"]),
            "column": rng.choice(["C18 4.6x150mm 5um", "C8 4.6x100mm 3.5um"]),
            "flow_ml_min": rng.choice([0.8, 1.0, 1.2]),
            "gradient": [
                {"t_min": 0, "b_pct": 5},
                {"t_min": rng.choice([15, 20, 30]), "b_pct": 95},
            ],
            "injection_ul": rng.choice([5, 10, 20]),
            "wavelength_nm": rng.choice([214, 254, 280]),
            "sample_count": sample_count,
        }
    if kind == "lc-ms":
        return {
            "ionization": rng.choice(["ESI+", "ESI-"]),
            "mass_range": [100, rng.choice([1000, 1500, 2000])],
            "column": "C18 2.1x50mm 1.7um",
            "flow_ml_min": 0.4,
            "sample_count": sample_count,
        }
    if kind == "plate-read":
        return {
            "mode": rng.choice(["absorbance", "fluorescence", "luminescence"]),
            "wavelength_nm": rng.choice([450, 490, 570, 600]),
            "plate_format": 96,
            "reads": rng.choice([1, 3]),
        }
    if kind == "cell-culture":
        return {
            "cell_line": rng.choice(["HEK293", "CHO-K1", "HeLa", "Jurkat"]),
            "medium": "DMEM + 10% FBS",
            "temperature_c": 37.0,
            "co2_pct": 5.0,
            "duration_h": rng.choice([24, 48, 72]),
            "plate_format": rng.choice([24, 96]),
        }
    if kind == "synthesis":
        return {
            "reaction": rng.choice(["amide coupling", "Suzuki coupling", "Boc deprotection"]),
            "scale_mmol": round(rng.uniform(0.1, 5.0), 2),
            "temperature_c": rng.choice([0, 25, 60, 80]),
            "duration_h": rng.choice([2, 4, 16]),
            "solvent": "DMF",
        }
    raise ValueError(f"unknown experiment kind {kind!r}")


def hplc_peaks(rng: random.Random) -> list[dict[str, float]]:
    """2 to 6 peaks sorted by retention time; areas in mAU*s, heights in mAU."""
    times = sorted(round(rng.uniform(0.8, 18.0), 3) for _ in range(rng.randint(2, 6)))
    return [
        {
            "rt_min": rt,
            "area": round(rng.lognormvariate(7.0, 1.0), 1),
            "height": round(rng.lognormvariate(4.5, 0.8), 1),
        }
        for rt in times
    ]


def result_for(kind: str, rng: random.Random) -> dict[str, Any]:
    """What a successful run of `kind` reports."""
    if kind == "hplc":
        peaks = hplc_peaks(rng)
        total_area = sum(p["area"] for p in peaks)
        main = max(peaks, key=lambda p: p["area"])
        return {"peaks": peaks, "purity_pct": round(100 * main["area"] / total_area, 2)}
    if kind == "lc-ms":
        return {
            "features": [
                {
                    "mz": round(rng.uniform(120, 1400), 4),
                    "rt_min": round(rng.uniform(0.3, 4.5), 2),
                    "intensity": round(rng.lognormvariate(12, 1.5)),
                }
                for _ in range(rng.randint(3, 8))
            ]
        }
    if kind == "plate-read":
        return {
            "wells_read": 96,
            "mean_signal": round(rng.uniform(0.05, 3.5), 3),
            "cv_pct": round(rng.uniform(2, 15), 1),
        }
    if kind == "cell-culture":
        return {
            "confluence_pct": round(rng.uniform(40, 98), 1),
            "viability_pct": round(rng.uniform(80, 99.5), 1),
        }
    if kind == "synthesis":
        return {
            "yield_pct": round(rng.uniform(20, 95), 1),
            "purity_pct": round(rng.uniform(85, 99.9), 1),
        }
    raise ValueError(f"unknown experiment kind {kind!r}")


FAILURE_REASONS = {
    "hplc": ("pressure limit exceeded", "injector needle blocked", "baseline drift out of spec"),
    "lc-ms": ("spray instability", "mass calibration out of tolerance"),
    "plate-read": ("plate misaligned", "lid detected"),
    "cell-culture": ("contamination detected", "CO2 supply interrupted"),
    "synthesis": ("reagent dispense error", "temperature overshoot"),
}
