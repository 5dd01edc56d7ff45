"""The bench's arithmetic and rendering (no services): percentiles, rates, properties."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from common import bulk_rate, latency_summary, median, percentile  # noqa: E402
from debezium.connect_standalone import DebeziumConnect  # noqa: E402


def test_percentile_is_nearest_rank_over_sorted_values() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 0.50) == 51.0  # index round(0.5 * 99) = 50
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile(values, 0.0) == 1.0
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN when there is nothing


def test_latency_is_broker_time_minus_commit_time() -> None:
    stamps = [(1_010, 1_000), (1_003, 1_000), (2_050, 2_000), (2_001, 2_000)]
    summary = latency_summary(stamps)
    assert summary["records"] == 4
    assert summary["p50_ms"] == 10.0  # sorted 1, 3, 10, 50 -> index round(1.5) = 2
    assert summary["max_ms"] == 50.0


def test_bulk_rate_spans_first_commit_to_last_arrival() -> None:
    # 4 rows committed between t=1000 and t=1500 ms, last one on the broker at t=3000 ms
    stamps = [(1_200, 1_000), (1_600, 1_000), (2_000, 1_500), (3_000, 1_500)]
    rate = bulk_rate(stamps)
    assert rate["seconds"] == 2.0
    assert rate["rows_per_s"] == 2
    assert rate["commit_span_s"] == 0.5


def test_median_ignores_failed_runs_recorded_as_nan() -> None:
    assert median([3.0, float("nan"), 1.0, 2.0]) == 2.0
    assert median([]) != median([])


def test_debezium_properties_name_slot_publication_prefix_and_overrides(tmp_path: Path) -> None:
    connect = DebeziumConnect(
        name="bench_x_1",
        table="public.bench_x_1",
        database_url="postgresql://lab:secret@127.0.0.1:55432/lab",
        bootstrap="127.0.0.1:59092",
        workdir=tmp_path,
        libs=tmp_path,
        extra_connector={"poll.interval.ms": 10},
    )
    worker_file, connector_file = connect.render()
    worker = dict(line.split("=", 1) for line in worker_file.read_text().splitlines())
    connector = dict(line.split("=", 1) for line in connector_file.read_text().splitlines())
    assert worker["producer.acks"] == "all"
    assert worker["value.converter.schemas.enable"] == "true"
    assert worker["listeners"] == f"http://127.0.0.1:{connect.rest_port}"
    assert connector["slot.name"] == connector["publication.name"] == "bench_x_1"
    assert connector["topic.prefix"] == "bench_x_1"
    assert connector["table.include.list"] == "public.bench_x_1"
    assert connector["database.port"] == "55432"
    assert connector["database.password"] == "secret"
    assert connector["plugin.name"] == "pgoutput"
    assert connector["poll.interval.ms"] == "10"


def test_report_checks_the_goals_against_the_medians() -> None:
    from cdc_report import markdown

    def medians(avro_rate: float, json_rate: float, p99: float) -> dict[str, object]:
        common = {
            "steady_p50_ms": 5.0,
            "steady_p99_ms": p99,
            "vmhwm_mb": 80.0,
            "bulk_cpu_s": 5.0,
            "runs": 3,
        }
        return {
            "labstream-avro": {**common, "bulk_rows_per_s": avro_rate},
            "labstream-json": {**common, "bulk_rows_per_s": json_rate},
            "debezium": {"bulk_rows_per_s": 8_000.0, "bulk_cpu_s": 25.0, "runs": 3},
            "debezium-tuned": {"bulk_rows_per_s": 7_000.0, "bulk_cpu_s": 25.0, "runs": 3},
        }

    machine = {
        "nproc": 2,
        "cpu_model": "x",
        "postgresql": "15",
        "synchronous_commit": "on",
        "kafka_broker": "4",
        "java": "17",
        "python": "3.11",
    }
    # the goals raised by issue 13 item 6: JSON >= 5x tuned Debezium, Avro >= 50,000 rows/s,
    # steady p99 <= 10 ms, VmHWM < 150 MB
    good = markdown(
        {"started": "t", "machine": machine, "runs": [], "medians": medians(50_000, 35_000, 9)}
    )
    assert "JSON bulk vs tuned Debezium (debezium-tuned): 5.00x (goal ≥ 5.0x): met" in good
    assert "Avro bulk: 50,000 rows/s (goal ≥ 50,000): met" in good
    assert "NOT met" not in good
    bad = markdown(
        {"started": "t", "machine": machine, "runs": [], "medians": medians(49_000, 34_000, 16)}
    )
    assert "4.86x (goal ≥ 5.0x): NOT met" in bad
    assert "49,000 rows/s (goal ≥ 50,000): NOT met" in bad
    assert "p50/p99: 5/16 ms (goal ≤ 8/10): NOT met" in bad
    steady_only = medians(float("nan"), float("nan"), 9)
    lines = markdown({"started": "t", "machine": machine, "runs": [], "medians": steady_only})
    assert "JSON bulk vs tuned" not in lines  # not measured: no verdict, no NaN
    assert "rows/s (goal" not in lines
    assert "labstream-avro steady p50/p99: 5/9 ms (goal ≤ 8/10): met" in lines
    # tuned Debezium with lz4 batches, when measured, gets its own verdict
    with_lz4 = medians(50_000, 35_000, 9)
    with_lz4["debezium-tuned-lz4"] = {"bulk_rows_per_s": 8_750.0, "bulk_cpu_s": 25.0, "runs": 3}
    lines = markdown({"started": "t", "machine": machine, "runs": [], "medians": with_lz4})
    assert "JSON bulk vs tuned Debezium (debezium-tuned): 5.00x (goal ≥ 5.0x): met" in lines
    assert "JSON bulk vs tuned Debezium (debezium-tuned-lz4): 4.00x (goal ≥ 5.0x): NOT met" \
        in lines
