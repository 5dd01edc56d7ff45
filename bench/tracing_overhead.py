"""What tracing costs the CDC connector: bulk rate with tracing on vs off, side by side.

    .venv/bin/python bench/tracing_overhead.py [--rows 100000] [--runs 3]

Each run streams `--rows` rows (transactions of 1,000 rows, each transaction
carrying its own W3C traceparent via `pg_logical_emit_message`, as the lab API
writes them) through `labstream cdc run` in three modes: tracing on as shipped
(`on`: `LABSTREAM_TRACING_EXPORTERS=auto` = the lab-DB span store), tracing on with
no exporter (`on-noexport`: spans made and dropped, to split the cost between making
spans and exporting them) and `LABSTREAM_TRACING_ENABLED=false` (`off`); the modes
alternate run by run (their order rotated each round) so drift on this shared machine
hits them alike. Rate = rows /
(first commit -> broker LogAppendTime of the last record), after a 5,000-row warm-up
(method: /work/shared/BENCHMARKING.md). Since the connector makes one span per
transaction within its span budget, `spans_stored` + `linked_transactions` (those linked
from a window span instead) should equal `transactions` and `records_in_spans` (the
spans' messaging.batch.message_count summed) the rows of the own-span transactions.
`LABSTREAM_CDC_TRACE_SPANS_PER_WINDOW=0` (`on-every-tx`) gives every transaction its own
span, `=4` (`on-4`) four per window instead of the default one. The
connector's CPU is read once its spans are also exported (every mode waits as long),
and split by thread:
`main`, `rdkafka`, `other` (the span exporters' thread).
Prints one JSON line per run, then the medians and the cost against `off`.

`--backlog` measures at full load instead of at the inserting client's pace: the
connector is stopped (SIGTERM, offsets saved) after the warm-up, the rows are written
while it is down, so they wait in the replication slot, and it is started again to
drain them as fast as it can. Rate = drained rows / (broker timestamp of the first
drained record -> of the last); CPU = the connector's CPU from the moment the first
drained record reached the broker (read from /proc then) to the end of the span
export, divided per row, so start-up (imports, connections) is not counted. Without
`--backlog` the client's own rate (10-row transactions: 3 round trips each) varied
2.6k-16.6k rows/s between runs on this machine and librdkafka's CPU per record moves
with it; with it every mode drains the same WAL.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from cdc_common import Bench, machine

ROWS_PER_TX = 1_000  # --rows-per-tx: smaller transactions = more spans per row
SETTLE_S = 6.0  # > the span store's batch delay (OTEL_BSP_SCHEDULE_DELAY, 5 s)


def insert_traced(bench: Bench, rows: int) -> list[str]:
    """Insert `rows` rows, one traceparent per transaction; returns the trace ids."""
    trace_ids = []
    with psycopg.connect(bench.database_url) as conn:
        per_tx = int(os.environ.get("BENCH_ROWS_PER_TX", ROWS_PER_TX))
        for _ in range(rows // per_tx):
            trace_id = uuid.uuid4().hex
            trace_ids.append(trace_id)
            with conn.transaction():
                conn.execute("SELECT pg_logical_emit_message(true, 'traceparent', %s)",
                             (f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01",))
                conn.execute(
                    f"INSERT INTO {bench.table} (tenant, reading, note, qty) "
                    "SELECT 'tenant-' || (g % 7), g * 0.5, 'traced row ' || g, g "
                    f"FROM generate_series(1, {per_tx}) g")
    return trace_ids


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of the connector's threads: `main`, `rdkafka` (librdkafka's own threads)
    and `other` (the other Python threads: the span exporters' and /metrics')."""
    tick = os.sysconf("SC_CLK_TCK")
    totals = {"main": 0.0, "rdkafka": 0.0, "other": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            name = (task / "comm").read_text().strip()
            group = "main" if task.name == str(pid) else \
                "rdkafka" if name.startswith("rdk:") else "other"
            totals[group] += (int(fields[11]) + int(fields[12])) / tick
    return totals


def settle(bench: Bench, mode: str, trace_ids: list[str], since_ns: int) -> None:
    """Wait until the connector has also exported the spans of what it sent (the span
    store writes a batch every 5 s or every 512 spans, so without this wait the export
    of the last spans happened after the CPU reading); every mode waits at least as
    long, so all pay the same idle time."""
    deadline = time.monotonic() + SETTLE_S
    while mode.startswith("on") and mode != "on-noexport" and time.monotonic() < deadline + 60:
        rows = bench.sql("SELECT count(*) FROM labstream.spans WHERE trace_id = ANY(%s)",
                         (trace_ids,))
        # the transactions over the span budget are linked from window spans instead
        linked = bench.sql("SELECT coalesce(sum((attributes->>'lab.linked_transactions')"
                           "::bigint), 0) FROM labstream.spans WHERE attributes ? "
                           "'lab.linked_transactions' AND start_time_unix_nano >= %s",
                           (since_ns,))
        if int(rows[0][0]) + int(linked[0][0]) >= len(trace_ids):
            break
        time.sleep(0.2)
    time.sleep(max(0.0, deadline - time.monotonic()))


def stored_spans(bench: Bench, trace_ids: list[str]) -> tuple[int, int]:
    """(spans stored, records they account for): one span per transaction, whose
    messaging.batch.message_count says how many records it sent."""
    rows = bench.sql("SELECT count(*), coalesce(sum((attributes->>'messaging.batch.message_count')"
                     "::bigint), 0) FROM labstream.spans WHERE trace_id = ANY(%s)", (trace_ids,))
    bench.sql("DELETE FROM labstream.spans WHERE trace_id = ANY(%s)", (trace_ids,))
    return int(rows[0][0]), int(rows[0][1])


def window_spans(bench: Bench, since_ns: int) -> tuple[int, int]:
    """(window spans, transactions they link) written by the connector since `since_ns`:
    the transactions over the span budget (`LABSTREAM_CDC_TRACE_SPANS_PER_WINDOW`) are
    linked from one span per window instead of having their own."""
    where = ("FROM labstream.spans WHERE attributes ? 'lab.linked_transactions' "
             "AND start_time_unix_nano >= %s")
    rows = bench.sql("SELECT count(*), coalesce(sum((attributes->>'lab.linked_transactions')"
                     "::bigint), 0) " + where, (since_ns,))
    bench.sql("DELETE " + where, (since_ns,))
    return int(rows[0][0]), int(rows[0][1])


def delete_topics(bench: Bench) -> None:
    # Bench.teardown asks for the deletion but does not wait for it, and the request can
    # be lost when its admin client goes away: wait here
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bench.bootstrap})
    existing = admin.list_topics(timeout=10).topics
    names = [t for t in (bench.topic, f"__labstream-heartbeat.{bench.name}") if t in existing]
    for future in (admin.delete_topics(names, operation_timeout=30).values() if names else ()):
        with contextlib.suppress(Exception):  # already gone is fine
            future.result(30)


MODES = {
    "on": {"LABSTREAM_TRACING_ENABLED": "true", "LABSTREAM_TRACING_EXPORTERS": "auto"},
    "on-noexport": {"LABSTREAM_TRACING_ENABLED": "true", "LABSTREAM_TRACING_EXPORTERS": "none"},
    "off": {"LABSTREAM_TRACING_ENABLED": "false", "LABSTREAM_TRACING_EXPORTERS": "auto"},
    # every transaction its own span, no budget (the connector before the span budget)
    "on-every-tx": {"LABSTREAM_TRACING_ENABLED": "true", "LABSTREAM_TRACING_EXPORTERS": "auto",
                    "LABSTREAM_CDC_TRACE_SPANS_PER_WINDOW": "0"},
    # four own spans per window instead of the default one
    "on-4": {"LABSTREAM_TRACING_ENABLED": "true", "LABSTREAM_TRACING_EXPORTERS": "auto",
             "LABSTREAM_CDC_TRACE_SPANS_PER_WINDOW": "4"},
}


@contextlib.contextmanager
def mode_environment(mode: str) -> Iterator[None]:
    """The mode's settings in os.environ for the run, the previous values after it."""
    saved = {name: os.environ.get(name) for name in MODES[mode]}
    os.environ.update(MODES[mode])
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def thread_cpu_since(pid: int, before: dict[str, float]) -> dict[str, float]:
    return {name: round(seconds - before[name], 2) for name, seconds in thread_cpu(pid).items()}


def run_once(mode: str, rows: int) -> dict[str, object]:
    bench = Bench("avro", f"trace_{mode.replace('-', '_')}")
    since_ns = time.time_ns()
    with mode_environment(mode):  # Bench.start hands os.environ to the connector
        return _run_once(bench, since_ns, rows, mode)


def _run_once(bench: Bench, since_ns: int, rows: int, mode: str) -> dict[str, object]:
    bench.setup()
    try:
        bench.start()
        warm_traces = insert_traced(bench, 5_000)  # topic metadata, schemas, caches
        bench.wait_for_offset(5_000)
        settle(bench, mode, warm_traces, since_ns)
        assert bench.proc is not None
        threads_before = thread_cpu(bench.proc.pid)
        cpu_before = bench.cpu_seconds()
        mark = time.time_ns()
        trace_ids = insert_traced(bench, rows)
        bench.wait_for_offset(5_000 + rows)
        settle(bench, mode, trace_ids, mark)
        cpu = bench.cpu_seconds() - cpu_before
        threads = thread_cpu_since(bench.proc.pid, threads_before)
        peak_mb = bench.peak_rss_mb()
        assert bench.stop() == 0
        time.sleep(0.5)
        stamps = bench.read_back(5_000, 5_000 + rows)
        first_commit = min(commit for _, commit in stamps)
        last_arrival = max(broker for broker, _ in stamps)
        seconds = (last_arrival - first_commit) / 1000
        spans, records_in_spans = stored_spans(bench, trace_ids)
        stored_spans(bench, warm_traces)
        windows, linked = window_spans(bench, mark)
        window_spans(bench, since_ns)  # and the warm-up's
        return {"tracing": mode, "rows": rows, "window_spans": windows,
                "linked_transactions": linked, "rows_per_s": round(rows / seconds),
                "seconds": round(seconds, 2), "connector_cpu_s": round(cpu, 2),
                "connector_threads_cpu_s": threads,
                "connector_vmhwm_mb": round(peak_mb, 1), "transactions": len(trace_ids),
                "spans_stored": spans, "records_in_spans": records_in_spans}
    finally:
        bench.teardown()
        delete_topics(bench)


def drain_once(mode: str, rows: int) -> dict[str, object]:
    """One `--backlog` run: the connector drains `rows` rows written while it was down."""
    bench = Bench("avro", f"drain_{mode.replace('-', '_')}")
    since_ns = time.time_ns()
    with mode_environment(mode):
        return _drain_once(bench, since_ns, rows, mode)


def _drain_once(bench: Bench, since_ns: int, rows: int, mode: str) -> dict[str, object]:
    from confluent_kafka import Consumer, TopicPartition

    bench.setup()
    watcher = Consumer({"bootstrap.servers": bench.bootstrap, "group.id": bench.name})
    try:
        bench.start()
        warm_traces = insert_traced(bench, 5_000)
        bench.wait_for_offset(5_000)
        settle(bench, mode, warm_traces, since_ns)
        assert bench.stop() == 0, "the connector did not stop cleanly after the warm-up"
        base = bench.end_offset()
        mark = time.time_ns()
        trace_ids = insert_traced(bench, rows)  # waits in the slot: nobody reads it
        bench.start()
        assert bench.proc is not None
        partition = TopicPartition(bench.topic, 0)
        deadline = time.monotonic() + 600
        while (first := watcher.get_watermark_offsets(partition, timeout=10)[1]) <= base:
            if time.monotonic() > deadline or bench.proc.poll() is not None:
                raise RuntimeError("the connector did not start draining its backlog")
            time.sleep(0.01)
        threads_before = thread_cpu(bench.proc.pid)
        cpu_before = bench.cpu_seconds()
        bench.wait_for_offset(base + rows)
        settle(bench, mode, trace_ids, mark)
        cpu = bench.cpu_seconds() - cpu_before
        threads = thread_cpu_since(bench.proc.pid, threads_before)
        end = bench.end_offset()
        peak_mb = bench.peak_rss_mb()
        assert bench.stop() == 0
        stamps = bench.read_back(first, end)  # the records after the CPU reading began
        seconds = (max(b for b, _ in stamps) - min(b for b, _ in stamps)) / 1000
        measured = end - first
        spans, records_in_spans = stored_spans(bench, trace_ids)
        stored_spans(bench, warm_traces)
        windows, linked = window_spans(bench, mark)
        window_spans(bench, since_ns)  # and the warm-up's
        return {"tracing": mode, "rows": rows, "backlog": True,
                "window_spans": windows, "linked_transactions": linked, "rows_measured": measured,
                "duplicates": end - base - rows,
                "rows_per_s": round(measured / seconds) if seconds > 0 else None,
                "seconds": round(seconds, 2), "connector_cpu_s": round(cpu, 2),
                "cpu_us_per_row": round(1e6 * cpu / measured, 1),
                "connector_threads_cpu_s": threads,
                "connector_vmhwm_mb": round(peak_mb, 1), "transactions": len(trace_ids),
                "spans_stored": spans, "records_in_spans": records_in_spans}
    finally:
        watcher.close()
        bench.teardown()
        delete_topics(bench)


def _thread(result: dict[str, object], name: str) -> float:
    threads = result["connector_threads_cpu_s"]
    assert isinstance(threads, dict)
    return float(threads[name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="Runs per mode (alternating).")
    parser.add_argument("--rows-per-tx", type=int, default=ROWS_PER_TX,
                        help="rows per traced transaction (one span each)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated subset of: " + ", ".join(MODES) + " (off is "
                        "always run: the costs are against it)")
    parser.add_argument("--backlog", action="store_true",
                        help="write the rows while the connector is down, then time its "
                        "drain of the slot (full load, not the client's pace)")
    args = parser.parse_args()
    run = drain_once if args.backlog else run_once
    names = [m for m in MODES if m in args.modes.split(",") or m == "off"]
    os.environ["BENCH_ROWS_PER_TX"] = str(args.rows_per_tx)
    print(json.dumps({"machine": machine()}))
    results: dict[str, list[dict[str, object]]] = {mode: [] for mode in names}
    for round_number in range(args.runs):
        # rotate the order each round: the first run of a round follows the previous
        # round's teardown (topic deletion, span cleanup) and would always pay for it
        shift = round_number % len(names)
        for mode in names[shift:] + names[:shift]:
            result = run(mode, args.rows)
            results[mode].append(result)
            print(json.dumps(result), flush=True)
    medians = {mode: {
        "rows_per_s": statistics.median(float(str(r["rows_per_s"])) for r in runs),
        "connector_cpu_s": statistics.median(float(str(r["connector_cpu_s"])) for r in runs),
        "main_thread_cpu_s": statistics.median(_thread(r, "main") for r in runs),
        "exporter_threads_cpu_s": statistics.median(_thread(r, "other") for r in runs),
        # per row: a drain's measured window starts wherever the first record was seen
        "cpu_us_per_row": statistics.median(
            1e6 * float(str(r["connector_cpu_s"])) / float(str(r.get("rows_measured", r["rows"])))
            for r in runs),
    } for mode, runs in results.items()}
    off = medians["off"]
    costs = {mode: {"rate_cost_pct": round(100 * (1 - m["rows_per_s"] / off["rows_per_s"]), 1),
                    "cpu_cost_pct": round(100 * (m["cpu_us_per_row"] / off["cpu_us_per_row"]
                                                 - 1), 1)}
             for mode, m in medians.items() if mode != "off"}
    print(json.dumps({"median": medians, "cost_vs_off": costs}))


if __name__ == "__main__":
    main()
