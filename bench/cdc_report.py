"""Markdown tables for docs/BENCHMARKS.md from bench/cdc_compare.py result files.

    .venv/bin/python bench/cdc_report.py .state/bench/cdc_compare-<utc>.json [...]

Per file: every run's figures, the medians, labstream/Debezium ratios and the goals of
/work/shared/BENCHMARKING.md checked against the medians.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# goals from /work/shared/BENCHMARKING.md (raised since the first version: issue 13 item 6)
JSON_BULK_VS_TUNED = 5.0
AVRO_BULK_ROWS_PER_S = 50_000
P50_MS, P99_MS = 8.0, 10.0
RSS_MB = 150.0

RUN_COLUMNS = [
    ("round", "run", "{}"),
    ("loadavg", "load at start", "{}"),
    ("bulk_rows_per_s", "bulk rows/s", "{:,.0f}"),
    ("bulk_commit_span_s", "commit span s", "{:.2f}"),
    ("bulk_cpu_s", "bulk CPU s", "{:.2f}"),
    ("steady_p50_ms", "p50 ms", "{:.0f}"),
    ("steady_p95_ms", "p95 ms", "{:.0f}"),
    ("steady_p99_ms", "p99 ms", "{:.0f}"),
    ("steady_max_ms", "max ms", "{:.0f}"),
    ("steady_cpu_s", "steady CPU s", "{:.2f}"),
    ("pgbench_tps", "tx/s", "{:,.0f}"),
    ("vmhwm_mb", "VmHWM MB", "{:,.0f}"),
]


def _cell(run: dict[str, Any], key: str, pattern: str) -> str:
    value = run.get(key)
    if key == "loadavg" and value:
        return str(value[0])
    if value is None or value != value:  # missing or NaN
        return "-"
    return pattern.format(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _known(*values: float) -> bool:
    return all(v == v for v in values)  # NaN: that system or phase was not run


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _verdicts(medians: dict[str, dict[str, float]]) -> list[str]:
    """One line per goal whose figures were measured in this file."""

    def get(label: str, key: str) -> float:
        return float(medians.get(label, {}).get(key, float("nan")))

    lines = []
    # BENCHMARKING.md's reference is `debezium-tuned`; with `debezium-tuned-lz4` (the same
    # lz4 batches as labstream's default) measured too, the goal is judged against each
    tuned_labels = [label for label in ("debezium-tuned", "debezium-tuned-lz4")
                    if _known(get(label, "bulk_rows_per_s"))] or ["debezium-tuned"]
    tuned_label = tuned_labels[0]
    tuned, stock = get(tuned_label, "bulk_rows_per_s"), get("debezium", "bulk_rows_per_s")
    ours_json = get("labstream-json", "bulk_rows_per_s")
    for label in tuned_labels:
        reference = get(label, "bulk_rows_per_s")
        if _known(ours_json, reference):
            ratio = ours_json / reference
            lines.append(
                f"- JSON bulk vs tuned Debezium ({label}): {ratio:.2f}x (goal ≥ "
                f"{JSON_BULK_VS_TUNED}x): " + _verdict(ratio >= JSON_BULK_VS_TUNED)
            )
    for label in ("labstream-json", "labstream-avro"):
        ours = get(label, "bulk_rows_per_s")
        cpu_ratio = get(tuned_label, "bulk_cpu_s") / get(label, "bulk_cpu_s")
        if _known(ours, tuned, cpu_ratio):
            vs_stock = f", {ours / stock:.2f}x stock Debezium" if _known(stock) else ""
            lines.append(
                f"- {label} bulk: {ours / tuned:.2f}x tuned Debezium{vs_stock}; "
                f"{cpu_ratio:.1f}x less CPU than tuned Debezium per row"
            )
    avro = get("labstream-avro", "bulk_rows_per_s")
    if _known(avro):
        lines.append(
            f"- Avro bulk: {avro:,.0f} rows/s (goal ≥ {AVRO_BULK_ROWS_PER_S:,}): "
            + _verdict(avro >= AVRO_BULK_ROWS_PER_S)
        )
    for label in ("labstream-avro", "labstream-json"):
        p50, p99 = get(label, "steady_p50_ms"), get(label, "steady_p99_ms")
        if _known(p50, p99):
            lines.append(
                f"- {label} steady p50/p99: {p50:.0f}/{p99:.0f} ms (goal ≤ {P50_MS:.0f}/"
                f"{P99_MS:.0f}): " + _verdict(p50 <= P50_MS and p99 <= P99_MS)
            )
        rss = get(label, "vmhwm_mb")
        if _known(rss):
            lines.append(
                f"- {label} VmHWM {rss:.0f} MB (goal < {RSS_MB:.0f}): " + _verdict(rss < RSS_MB)
            )
    return lines


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"Run started {report['started']}: nproc={machine['nproc']}, "
        f"CPU {machine['cpu_model']}, PostgreSQL {machine['postgresql']} "
        f"(synchronous_commit={machine['synchronous_commit']}), Kafka broker "
        f"{machine['kafka_broker']}, {machine['java']}, Python {machine['python']}.",
        "",
    ]
    header = ["system"] + [title for _, title, _ in RUN_COLUMNS] + ["code"]
    rows = [
        [run["system"]]
        + [_cell(run, key, fmt) for key, _, fmt in RUN_COLUMNS]
        + [
            run.get("code", {}).get("sha1", "-")
            + (f" ERROR {run['error']}" if "error" in run else "")
        ]
        for run in report["runs"]
    ]
    lines += [*_table(header, rows), ""]
    median_columns = [c for c in RUN_COLUMNS if c[0] not in ("round", "loadavg")]
    rows = [
        [label, str(int(values.get("runs", 0)))]
        + [_cell(values, key, fmt) for key, _, fmt in median_columns]
        for label, values in report["medians"].items()
    ]
    lines += _table(["system (median)", "runs"] + [t for _, t, _ in median_columns], rows)
    lines += ["", *_verdicts(report["medians"])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", nargs="+", type=Path)
    for path in parser.parse_args().results:
        print(markdown(json.loads(path.read_text())))
        print()


if __name__ == "__main__":
    main()
