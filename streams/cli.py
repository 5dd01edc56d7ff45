"""`labstream worker`: run the stream worker (enrich -> route -> trigger).

Creates the worker's topics first (Faust ignores a topic that is missing when
it starts), registers the routed schemas, then starts the Faust worker in this
process. `--concurrency N` starts N worker processes in the same consumer group
(they share the partitions); agent concurrency inside a worker is always 1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import click

from base.errors import LabstreamError
from streams.config import WorkerSettings

_CHILD_ENV = "LABSTREAM_WORKER_CHILD"


@click.command("worker")
@click.option("--concurrency", "-c", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes to start in the same consumer group.")
@click.option("--no-jobs", is_flag=True, help="Publish decisions but launch no job.")
def worker(concurrency: int, no_jobs: bool) -> None:
    """Run the stream worker: CDC topics in; routed topics, decisions and jobs out.

    Settings (environment): LABSTREAM_WORKER_APP_ID (consumer group, default
    labstream-worker), LABSTREAM_WORKER_CDC_PREFIX (lab), LABSTREAM_WORKER_ROUTED_PREFIX
    (lab.routed), LABSTREAM_WORKER_DECISIONS_TOPIC (lab.decisions),
    LABSTREAM_WORKER_PARTITIONS (4, for topics it creates), LABSTREAM_WORKER_ENGINE (kafka:
    the batch loop; faust), LABSTREAM_WORKER_MAX_BATCH (500), LABSTREAM_WORKER_ENRICHMENT_WAIT_S
    (5), LABSTREAM_WORKER_LAUNCH_JOBS (true), LABSTREAM_KAFKA_BOOTSTRAP_SERVERS,
    LABSTREAM_DATABASE_URL, SCHEMA_REGISTRY_URL.
    """
    settings = WorkerSettings()
    if no_jobs:
        settings = settings.model_copy(update={"launch_jobs": False})
    if concurrency > 1 and not os.environ.get(_CHILD_ENV):
        sys.exit(_run_children(concurrency, no_jobs))
    run_worker(settings)


def run_worker(settings: WorkerSettings) -> None:
    """Create topics, then run one worker (the batch loop, or Faust) until SIGTERM/SIGINT."""
    from faust.worker import Worker

    from streams.app import create_worker_app
    from streams.topics import ensure_topics
    from tracing.setup import configure_tracing

    created = ensure_topics(settings)
    if created:
        click.echo(f"created topics: {', '.join(created)}", err=True)
    configure_tracing("labstream-worker")
    runner = None
    if settings.launch_jobs:
        from streams.jobs import JobRunner

        runner = JobRunner()
    if settings.engine == "kafka":
        from streams import metrics  # /metrics, /healthz, /readyz (LABSTREAM_METRICS_PORT)
        from streams.batchworker import BatchWorker

        batch_worker = BatchWorker(settings, runner=runner)
        metrics.start(batch_worker, settings)
        sys.exit(batch_worker.run())
    try:
        built = create_worker_app(settings, runner=runner)
    except LabstreamError:
        raise
    from streams import metrics  # /metrics, /healthz, /readyz (LABSTREAM_METRICS_PORT)

    metrics.start(built, settings)
    worker_process = Worker(built.app, built.resources, loglevel=settings.log_level,
                            quiet=True, redirect_stdouts=False,
                            logging_config=_logging_config(settings.log_level))
    worker_process.execute_from_commandline()


def _logging_config(level: str) -> dict[str, object]:
    """Faust's logs and ours in labstream's key=value format (LABSTREAM_LOG_FORMAT=json too)."""
    formatter = ("base.logs.JsonFormatter"
                 if os.environ.get("LABSTREAM_LOG_FORMAT", "kv").lower() == "json"
                 else "base.logs.KeyValueFormatter")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"labstream": {"()": formatter}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "labstream",
                                 "level": level.upper()}},
        "root": {"level": level.upper(), "handlers": ["default"]},
    }


def _run_children(count: int, no_jobs: bool) -> int:
    args = [sys.executable, "-m", "labstream.cli", "worker"] + (["--no-jobs"] if no_jobs else [])
    env = {**os.environ, _CHILD_ENV: "1"}
    children = [subprocess.Popen(args, env=env) for _ in range(count)]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return max(child.wait() for child in children)
