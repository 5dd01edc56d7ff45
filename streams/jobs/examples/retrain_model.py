"""Refit the HPLC calibration line: total peak area vs. injected volume, recent runs.

    python -m streams.jobs.examples.retrain_model [--limit 50] [--tenant <id>]

Ordinary least squares in pure Python over the last `--limit` completed HPLC
runs (area = slope * injection_ul + intercept), printed with r² and the number
of runs used. Exit 0 with a fit, 2 when fewer than 2 runs or one injection
volume only (no line to fit), 1 when the database cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from opentelemetry import trace

from base.errors import LabstreamError
from base.logs import kv
from streams.jobs.examples._jobkit import database_url, job_session, log

tracer = trace.get_tracer("streams.jobs.examples.retrain_model")

RECENT_RUNS_SQL = """
SELECT (e.protocol ->> 'injection_ul')::float AS injection_ul,
       (SELECT sum((peak ->> 'area')::float) FROM jsonb_array_elements(r.result -> 'peaks') peak)
           AS total_area
  FROM public.runs r JOIN public.experiments e ON e.id = r.experiment_id
 WHERE e.kind = 'hplc' AND r.status = 'completed' AND r.result ? 'peaks'
   AND e.protocol ? 'injection_ul' AND (%(tenant)s::text IS NULL OR e.tenant_id = %(tenant)s)
 ORDER BY r.finished_at DESC NULLS LAST
 LIMIT %(limit)s
"""


@dataclass(frozen=True)
class LineFit:
    slope: float
    intercept: float
    r_squared: float
    points: int


def fit_line(points: Sequence[tuple[float, float]]) -> LineFit:
    """Least-squares line through (x, y); ValueError when x does not vary."""
    n = len(points)
    if n < 2:
        raise ValueError(f"need at least 2 points, got {n}")
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        raise ValueError("every run used the same injection volume: no line to fit")
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    ss_tot = sum((y - mean_y) ** 2 for _, y in points)
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in points)
    r_squared = 1.0 - ss_res / ss_tot if ss_tot else 1.0
    return LineFit(slope, intercept, r_squared, n)


def read_points(url: str, limit: int, tenant: str | None) -> list[tuple[float, float]]:
    with (
        tracer.start_as_current_span("read recent hplc runs", attributes={"limit": limit}),
        psycopg.connect(url, connect_timeout=10, application_name="retrain_model") as conn,
    ):
        rows = conn.execute(RECENT_RUNS_SQL, {"limit": limit, "tenant": tenant}).fetchall()
    return [(float(x), float(y)) for x, y in rows if x is not None and y is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retrain_model", description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=50, help="how many recent runs to use")
    parser.add_argument("--tenant", default=None, help="only this tenant's runs")
    args = parser.parse_args(argv)
    with job_session(), tracer.start_as_current_span("retrain calibration"):
        try:
            points = read_points(database_url(), args.limit, args.tenant)
        except (psycopg.Error, LabstreamError) as exc:
            print(f"error: cannot read runs: {exc}", file=sys.stderr)
            return 1
        kv(log, "info", "calibration points read", points=len(points))
        try:
            fit = fit_line(points)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(
            f"calibration from {fit.points} runs: area = {fit.slope:.4f} * injection_ul "
            f"+ {fit.intercept:.4f}"
        )
        print(f"r_squared {fit.r_squared:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
