"""Summarise one HPLC run's peaks: count, main peak, purity %. Exit 0 when done.

    python -m streams.jobs.examples.hplc_peak_summary --run <run-id> [--fail]

Reads `public.runs.result -> 'peaks'` (`[{"rt_min", "area", "height"}, ...]`) from
LABSTREAM_DATABASE_URL and prints the summary on stdout, one fact per line, so
the lines land in `job_log_lines`. `--fail` (or LABSTREAM_EXAMPLE_FAIL=1) makes
it exit 3 after printing, for tests of the failed status. Exit 2: bad input
(no such run, no peaks); exit 1: it could not reach the database.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from opentelemetry import trace

from base.errors import LabstreamError
from base.logs import kv
from streams.jobs.examples._jobkit import database_url, job_session, log

FAIL_EXIT_CODE = 3
tracer = trace.get_tracer("streams.jobs.examples.hplc_peak_summary")


@dataclass(frozen=True)
class PeakSummary:
    count: int
    total_area: float
    main_rt_min: float
    main_area: float
    purity_pct: float


def summarize_peaks(peaks: Sequence[Mapping[str, Any]]) -> PeakSummary:
    """Main peak = largest area; purity = its share of the total area, in %."""
    usable = [peak for peak in peaks if float(peak.get("area", 0)) > 0]
    if not usable:
        raise ValueError("the run has no peak with a positive area")
    total = sum(float(peak["area"]) for peak in usable)
    main = max(usable, key=lambda peak: float(peak["area"]))
    return PeakSummary(
        count=len(usable),
        total_area=round(total, 3),
        main_rt_min=float(main["rt_min"]),
        main_area=float(main["area"]),
        purity_pct=round(100.0 * float(main["area"]) / total, 2),
    )


def read_peaks(url: str, run_id: str) -> list[dict[str, Any]] | None:
    """The run's peaks; None when there is no such run."""
    with (
        tracer.start_as_current_span("read run", attributes={"lab.run.id": run_id}),
        psycopg.connect(url, connect_timeout=10, application_name="hplc_peak_summary") as conn,
    ):
        row = conn.execute(
            "SELECT coalesce(result -> 'peaks', '[]'::jsonb) FROM public.runs WHERE id = %s",
            (run_id,),
        ).fetchone()
    return None if row is None else list(row[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hplc_peak_summary", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="id of the HPLC run (public.runs.id)")
    parser.add_argument("--fail", action="store_true", help=f"exit {FAIL_EXIT_CODE} at the end")
    args = parser.parse_args(argv)
    fail = args.fail or os.environ.get("LABSTREAM_EXAMPLE_FAIL") == "1"
    with job_session() as trace_id:
        kv(log, "info", "hplc peak summary starting", run_id=args.run, handed_trace_id=trace_id)
        with tracer.start_as_current_span("hplc peak summary", attributes={"lab.run.id": args.run}):
            try:
                peaks = read_peaks(database_url(), args.run)
            except (psycopg.Error, LabstreamError) as exc:
                print(f"error: cannot read run {args.run}: {exc}", file=sys.stderr)
                return 1
            if peaks is None:
                print(f"error: no run {args.run!r} in public.runs", file=sys.stderr)
                return 2
            try:
                summary = summarize_peaks(peaks)
            except ValueError as exc:
                print(f"error: run {args.run}: {exc}", file=sys.stderr)
                return 2
            print(f"run {args.run}: {summary.count} peaks, total area {summary.total_area}")
            print(f"main peak at {summary.main_rt_min} min, area {summary.main_area}")
            print(f"purity {summary.purity_pct}%")
        if fail:
            print("failing on purpose (--fail)", file=sys.stderr)
            return FAIL_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main())
