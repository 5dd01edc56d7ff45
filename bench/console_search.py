"""The console's experiment search (GET /experiments) on a big tenant, with the 0012
indexes and without them, interleaved round by round.

Stages one tenant with --experiments rows (and one job per tenth of them) beside the
others in the lab DB, then times the statement the API runs (console_store's
_SEARCH_EXPERIMENTS, a page of 20 + 1) for: the first page, a page 50 pages deep
(keyset cursor), a status filter, a submitted_by filter and a title search. "without"
drops the 0012 indexes inside a transaction that is rolled back, so the database is
left as it was. The staged tenant is deleted at the end.

    .venv/bin/python bench/console_search.py --experiments 200000 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from base.settings import service_settings
from labstream.api.console_model import EXPERIMENT_STATUSES, page, parse_list_query
from labstream.api.console_store import _SEARCH_EXPERIMENTS

INDEXES = ("experiments_tenant_created_idx", "experiments_tenant_status_created_idx",
           "experiments_tenant_submitter_idx", "jobs_tenant_created_idx", "jobs_status_created_idx")


def stage(conn: psycopg.Connection, tenant: str, count: int) -> None:
    conn.execute("INSERT INTO public.tenants (id, name) VALUES (%s, %s)", (tenant, tenant))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with conn.cursor().copy("COPY public.experiments (id, tenant_id, kind, status, title, "
                            "submitted_by, created_at) FROM STDIN") as copy:
        for i in range(count):
            copy.write_row((f"exp-{tenant}-{i}", tenant, "hplc", EXPERIMENT_STATUSES[i % 6],
                            f"assay {i}", f"user{i % 50}", start + timedelta(seconds=i)))
    with conn.cursor().copy("COPY public.jobs (id, job_key, rule_id, tenant_id, experiment_id, "
                            "backend, status, created_at) FROM STDIN") as copy:
        for i in range(0, count, 10):
            copy.write_row((f"job-{tenant}-{i}", f"k-{tenant}-{i}", "r-bench", tenant,
                            f"exp-{tenant}-{i}", "local", "failed" if i % 20 else "succeeded",
                            start + timedelta(seconds=i)))
    conn.execute("ANALYZE public.experiments")
    conn.execute("ANALYZE public.jobs")


def deep_cursor(conn: psycopg.Connection, tenant: str, pages: int) -> str:
    """The `before` cursor of page `pages + 1`, walked through the API's own statement."""
    before = ""
    for _ in range(pages):
        rows = run(conn, tenant, {"before": before} if before else {})
        _, cursor = page(rows, 20)
        before = cursor or ""
    return before


def run(conn: psycopg.Connection, tenant: str, params: dict[str, str]) -> list[dict[str, Any]]:
    query = parse_list_query(params, statuses=EXPERIMENT_STATUSES)
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        cursor.execute(_SEARCH_EXPERIMENTS, query.params(tenant))
        return cursor.fetchall()


def timed(conn: psycopg.Connection, tenant: str, params: dict[str, str], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        run(conn, tenant, params)
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5, help="timings per case per round")
    args = parser.parse_args()
    tenant = f"bench-search-{uuid.uuid4().hex[:8]}"
    url = service_settings().database_url
    with psycopg.connect(url, autocommit=True) as conn:
        stage(conn, tenant, args.experiments)
        try:
            deep = deep_cursor(conn, tenant, 50)
            cases = {"first page": {}, "page 51 (keyset)": {"before": deep},
                     "status=failed": {"status": "failed"},
                     "submitted_by=user7": {"submitted_by": "user7"},
                     "q=assay 123 (title)": {"q": "assay 123"},
                     "rule=r-bench&job_status=failed": {"rule": "r-bench", "job_status": "failed"}}
            results: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.rounds):
                for name, params in cases.items():
                    results.setdefault((name, "with"), []).append(timed(conn, tenant, params,
                                                                       args.repeat))
                with conn.transaction(force_rollback=True):
                    for index in INDEXES:
                        conn.execute(f"DROP INDEX public.{index}")
                    for name, params in cases.items():
                        results.setdefault((name, "without"), []).append(
                            timed(conn, tenant, params, args.repeat))
        finally:
            conn.execute("DELETE FROM public.jobs WHERE tenant_id = %s", (tenant,))
            conn.execute("DELETE FROM public.experiments WHERE tenant_id = %s", (tenant,))
            conn.execute("DELETE FROM public.tenants WHERE id = %s", (tenant,))
    print(f"{args.experiments} experiments in one tenant, medians of {args.rounds} rounds "
          f"(each the median of {args.repeat} runs), ms")
    print("| query | with 0012 indexes | without | ratio |")
    print("|---|---|---|---|")
    for name in cases:
        with_ms = statistics.median(results[(name, "with")])
        without_ms = statistics.median(results[(name, "without")])
        print(f"| {name} | {with_ms:.2f} | {without_ms:.2f} | {without_ms / with_ms:.1f}x |")


if __name__ == "__main__":
    main()
