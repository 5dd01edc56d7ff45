"""`labstream demo`: the whole pipeline on the local stack, then where to look.

simulator -> lab DB -> CDC connector -> Kafka -> worker (enrich, route, trigger)
-> local job -> jobs / job_log_lines / spans. The connector and the worker run as
child processes (their logs under `<state>/demo/`), exactly as an operator would
start them; the demo only orchestrates and reports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import psycopg

from base.errors import LabstreamError, ServiceUnavailable
from base.kafka import kafka_connection
from base.settings import service_settings
from streams.jobs import reads as job_reads
from tracing import spanstore

CHILD_STOP_TIMEOUT_S = 20.0


@dataclass
class DemoReport:
    topics: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)
    log_lines: int = 0
    spans: int = 0
    example: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    # a scientist token of the demo's tenant, to sign in to the console (shown once)
    console: dict[str, str] = field(default_factory=dict)


def _labstream_command() -> list[str]:
    return [sys.executable, "-m", "labstream.cli"]


@contextmanager
def child(
    name: str, args: list[str], log_dir: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `labstream <args>` in the background for the duration of the block."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [*_labstream_command(), *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        time.sleep(1.0)
        if proc.poll() is not None:
            raise LabstreamError(
                f"{name} exited at start with code {proc.returncode}",
                hint=f"read {log_path}",
            )
        yield proc
    finally:
        stop_child(proc)


def stop_child(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=CHILD_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for_slot(database_url: str, slot: str, timeout_s: float = 60.0) -> None:
    """The connector is streaming once its slot is active."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
        if row and row[0]:
            return
        time.sleep(0.5)
    raise ServiceUnavailable(
        f"the CDC connector did not start streaming within {timeout_s:.0f}s (slot {slot} inactive)",
        hint="read <state>/demo/cdc.log",
    )


def ensure_alive(children: dict[str, subprocess.Popen[bytes]], log_dir: Path) -> None:
    for name, proc in children.items():
        if proc.poll() is not None:
            raise LabstreamError(
                f"the {name} process exited with code {proc.returncode} during the demo",
                hint=f"read {log_dir / (name + '.log')}",
            )


def wait_for_jobs(
    database_url: str, since: float, timeout_s: float, alive: Callable[[], None]
) -> dict[str, int]:
    """Wait until no job created during the demo is still queued or running."""
    deadline = time.monotonic() + timeout_s
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        alive()
        counts = job_counts(database_url, since)
        if counts and not (counts.get("queued", 0) or counts.get("started", 0)):
            return counts
        time.sleep(1.0)
    return counts


def job_counts(database_url: str, since: float) -> dict[str, int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM jobs"
            " WHERE created_at >= to_timestamp(%s) GROUP BY status",
            (since,),
        ).fetchall()
    return {status: count for status, count in rows}


def example_job(database_url: str, since: float) -> dict[str, Any]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            """SELECT j.id, j.rule_id, j.experiment_id, j.trace_id, j.status,
                      (SELECT count(*) FROM job_log_lines l WHERE l.job_id = j.id)
                 FROM jobs j
                WHERE j.created_at >= to_timestamp(%s) AND j.status = 'succeeded'
                ORDER BY j.finished_at DESC LIMIT 1""",
            (since,),
        ).fetchone()
    if row is None:
        return {}
    keys = ("job_id", "rule_id", "experiment_id", "trace_id", "status", "log_lines")
    return dict(zip(keys, row, strict=True))


def console_access(database_url: str) -> dict[str, str]:
    """A one-day scientist token of the tenant with the newest experiment: the console
    and the API need one (labstream tokens), and the demo's tenants are made up."""
    from datetime import timedelta

    from labstream.auth.tokens import Role, create_token

    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT tenant_id FROM public.experiments "
                           "ORDER BY created_at DESC LIMIT 1").fetchone()
        if row is None:
            return {}
        token, stored = create_token(conn, role=Role.SCIENTIST, tenant_id=row[0],
                                     name="labstream demo", expires_in=timedelta(days=1))
    return {"tenant": str(row[0]), "token": token, "token_id": stored.id}


def demo_totals(database_url: str, since: float) -> tuple[int, int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return job_reads.log_lines_since(conn, since), spanstore.spans_since(conn, since)


def topic_counts(bootstrap: str, prefix: str) -> dict[str, int]:
    """Records per topic (end offset minus beginning offset) for the demo's topics."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka_connection(bootstrap).kafka_python("demo"),
                             enable_auto_commit=False)
    try:
        names = sorted(t for t in consumer.topics() if t.startswith(prefix + "."))
        partitions = [
            TopicPartition(name, p)
            for name in names
            for p in consumer.partitions_for_topic(name) or ()
        ]
        begin = consumer.beginning_offsets(partitions)
        end = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    counts: dict[str, int] = {}
    for tp in partitions:
        counts[tp.topic] = counts.get(tp.topic, 0) + end[tp] - begin[tp]
    return counts


def run_demo(*, duration: float, rate: float, settle_s: float, echo: Any) -> DemoReport:
    from labstream.db.migrate import migrate
    from labstream.stack import control

    settings = service_settings()
    database_url = settings.database_url
    log_dir = settings.state_dir / "demo"
    log_dir.mkdir(parents=True, exist_ok=True)

    echo("1/5 local stack: PostgreSQL + Kafka")
    control.up(report=lambda message: echo(f"    {message}"))
    applied = migrate(database_url)
    echo(f"    migrations: {', '.join(applied) if applied else 'up to date'}")

    env = dict(os.environ)
    env.setdefault("LABSTREAM_LOG_LEVEL", "INFO")
    slot = env.get("LABSTREAM_CDC_SLOT_NAME", "labstream")
    prefix = env.get("LABSTREAM_CDC_TOPIC_PREFIX", "lab")
    since = time.time()
    report = DemoReport(logs={name: str(log_dir / f"{name}.log") for name in ("cdc", "worker")})

    echo("2/5 CDC connector (labstream cdc run)")
    with child("cdc", ["cdc", "run"], log_dir, env) as cdc:
        wait_for_slot(database_url, slot)
        echo("3/5 worker (labstream worker)")
        with child("worker", ["worker"], log_dir, env) as worker:
            children = {"cdc": cdc, "worker": worker}
            echo(f"4/5 simulator: {rate:g} actions/s for {duration:g}s")
            subprocess.run(
                [
                    *_labstream_command(),
                    "simulate",
                    "--rate",
                    str(rate),
                    "--duration",
                    str(duration),
                ],
                env=env,
                check=True,
            )
            echo(f"5/5 waiting up to {settle_s:g}s for triggered jobs to finish")
            ensure_alive(children, log_dir)
            report.jobs = wait_for_jobs(
                database_url, since, settle_s, lambda: ensure_alive(children, log_dir)
            )
    report.topics = topic_counts(settings.kafka_bootstrap_servers, prefix)
    report.log_lines, report.spans = demo_totals(database_url, since)
    report.example = example_job(database_url, since)
    report.console = console_access(database_url)
    return report


def print_report(report: DemoReport, echo: Any) -> None:
    echo("")
    echo("Records per topic:")
    for topic, count in sorted(report.topics.items()):
        echo(f"  {topic:<45} {count:>8}")
    jobs = ", ".join(f"{status} {count}" for status, count in sorted(report.jobs.items())) or "none"
    echo(f"Jobs started by the demo: {jobs}; log lines {report.log_lines}; spans {report.spans}")
    example = report.example
    echo("")
    echo("Where to look:")
    if example:
        job = f"{example['job_id']} (rule {example['rule_id']}, {example['log_lines']} log lines)"
        echo(f"  a job:      {job}")
        echo(f"  its trace:  labstream trace {example['trace_id']}")
        if example.get("experiment_id"):
            echo(f"  explain:    labstream explain {example['experiment_id']}")
    echo("  the events: labstream replay ls --topic lab.routed.hplc.completed --from -1h")
    from labstream.api.settings import ApiSettings

    echo(f"  lab API:    labstream api   (then http://127.0.0.1:{ApiSettings().port}/)")
    if report.console:
        access = report.console
        echo(f"  sign in:    tenant {access['tenant']}: paste this token into the console, or send"
             " it as Authorization: Bearer <token>")
        echo(f"              {access['token']}")
        echo(f"              (shown once; expires in a day; labstream tokens revoke "
             f"{access['token_id']})")
    echo(f"  logs:       {report.logs.get('cdc')}  {report.logs.get('worker')}")


@click.command()
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds of simulated lab activity.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Simulated front-end actions per second.",
)
@click.option(
    "--settle",
    "settle_s",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait afterwards for triggered jobs to finish.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def demo(duration: float, rate: float, settle_s: float, as_json: bool) -> None:
    """Run simulator -> CDC -> agents -> jobs on the local stack and print where to look."""
    echo = (lambda message: click.echo(message, err=True)) if as_json else click.echo
    report = run_demo(duration=duration, rate=rate, settle_s=settle_s, echo=echo)
    if as_json:
        click.echo(json.dumps(asdict(report), default=str, indent=2))
    else:
        print_report(report, echo)
