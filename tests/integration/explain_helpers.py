"""The whole chain for end-to-end tests: connector + worker subprocesses, the API in process.

Shared by test_e2e_trace.py and test_explain_*.py (not a test module). Every name
(slot, publication, topic prefix, worker app id) is unique per chain; `Chain.close`
stops the processes, drops the slot and publication and deletes the rows and
topics it created.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from service_signals import rule_loaded

from explain.facts import Sources
from tracing.propagation import emit_db_trace_context, extract_http_headers
from tracing.spanstore import DbSpanExporter

REPO = Path(__file__).resolve().parents[2]
CAPTURED = r"public\.(tenants|experiments|instruments|runs|samples|inventory_items|trigger_rules)"
# every span of a chain's processes carries it: other helpers' connectors and workers may
# capture the same lab tables and add their own spans to our traces
CHAIN_ATTRIBUTE = "labstream.test.chain"
PEAKS = {"peaks": [{"rt_min": 2.1, "area": 900.0, "height": 40.0},
                   {"rt_min": 4.7, "area": 100.0, "height": 5.0}]}


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def execute(database_url: str, sql: str, params: Any = None) -> list[Any]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


@dataclass
class Chain:
    database_url: str
    bootstrap: str
    name: str  # slot, publication, topic prefix
    otlp_endpoint: str | None
    log_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    tenants: list[str] = field(default_factory=list)
    instruments: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    @property
    def app_id(self) -> str:
        return f"{self.name}-worker"

    @property
    def decisions_topic(self) -> str:
        return f"{self.name}.decisions"

    def tracing_env(self) -> dict[str, str]:
        env = {"LABSTREAM_TRACING_EXPORTERS": "db,otlp" if self.otlp_endpoint else "db",
               "OTEL_BSP_SCHEDULE_DELAY": "200", "LABSTREAM_DATABASE_URL": self.database_url,
               "LABSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
               "OTEL_RESOURCE_ATTRIBUTES": f"{CHAIN_ATTRIBUTE}={self.name}"}
        if self.otlp_endpoint:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.otlp_endpoint
        return env

    def cdc_env(self, **overrides: str) -> dict[str, str]:
        values = {"NAME": self.name, "SLOT_NAME": self.name, "PUBLICATION": self.name,
                  "TOPIC_PREFIX": self.name, "TABLE_INCLUDE_LIST": CAPTURED,
                  "SNAPSHOT_MODE": "no_data", "HEARTBEAT_INTERVAL_MS": "1000"}
        values.update(overrides)
        return {f"LABSTREAM_CDC_{k}": v for k, v in values.items()}

    def worker_env(self) -> dict[str, str]:
        return {
            "LABSTREAM_WORKER_APP_ID": self.app_id, "LABSTREAM_WORKER_CDC_PREFIX": self.name,
            "LABSTREAM_WORKER_ROUTED_PREFIX": f"{self.name}.routed",
            "LABSTREAM_WORKER_DECISIONS_TOPIC": self.decisions_topic,
            "LABSTREAM_WORKER_PARTITIONS": "1", "LABSTREAM_WORKER_ENRICHMENT_WAIT_S": "5",
            "LABSTREAM_WORKER_DATA_DIR": str(self.log_dir / "worker-data"),
            "LABSTREAM_JOBS_LAUNCH_ATTEMPTS": "1", "LABSTREAM_JOBS_LAUNCH_BACKOFF_S": "0.1",
        }

    def sources(self) -> Sources:
        from connectors.source.config import CdcSettings
        from streams.config import WorkerSettings

        return Sources(
            database_url=self.database_url, bootstrap_servers=self.bootstrap,
            cdc=CdcSettings(name=self.name, slot_name=self.name, publication=self.name,
                            topic_prefix=self.name),
            worker=WorkerSettings(app_id=self.app_id, cdc_prefix=self.name,
                                  decisions_topic=self.decisions_topic),
            budget_s=15.0)

    def cli_args(self) -> list[str]:
        return ["--topic-prefix", self.name, "--connector", self.name, "--publication",
                self.name, "--worker-group", self.app_id, "--decisions-topic",
                self.decisions_topic]

    # -- processes ------------------------------------------------------------------------

    def start(self, what: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{what}.log", "ab")  # noqa: SIM115 - closed at exit
        proc = subprocess.Popen([sys.executable, "-m", "labstream.cli", *args],
                                env={**os.environ, **self.tracing_env(), **env}, stdout=log,
                                stderr=subprocess.STDOUT, cwd=REPO)
        self.processes.append(proc)
        return proc

    def start_connector(self, *, publication_tables: list[str] | None = None,
                        **overrides: str) -> None:
        """Start `labstream cdc run`; with `publication_tables`, on a publication of exactly
        those tables, created here (autocreate disabled)."""
        if publication_tables is not None:
            execute(self.database_url, f'CREATE PUBLICATION "{self.name}" FOR TABLE '
                    + ", ".join(publication_tables))
            overrides = {"PUBLICATION_AUTOCREATE_MODE": "disabled", **overrides}
        proc = self.start("cdc", ["cdc", "run"], self.cdc_env(**overrides))

        def slot_active() -> bool:
            assert proc.poll() is None, f"connector exited: {self.log('cdc')}"
            rows = execute(self.database_url, "SELECT active FROM pg_replication_slots WHERE "
                           "slot_name = %s", (self.name,))
            return bool(rows and rows[0][0])

        wait_for(slot_active, 60, "the connector's slot to be active")

    def start_worker(self) -> None:
        """Start `labstream worker`; return once its consumer got its partitions."""
        proc = self.start("worker", ["worker"], self.worker_env())

        def assigned() -> bool:
            assert proc.poll() is None, f"worker exited: {self.log('worker')}"
            return self._group_is_stable()

        try:
            wait_for(assigned, 120, "the worker to join its consumer group")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker log:\n{self.log('worker')}") from exc

    def _group_is_stable(self) -> bool:
        from confluent_kafka import ConsumerGroupState
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        try:
            group = admin.describe_consumer_groups([self.app_id])[self.app_id].result(10)
        except Exception:  # the group does not exist yet
            return False
        return bool(group.state == ConsumerGroupState.STABLE and group.members)

    def log(self, what: str) -> str:
        path = self.log_dir / f"{what}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def close(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self._drop_replication()
        self._delete_rows()
        self._delete_topics()

    def _drop_replication(self) -> None:
        with contextlib.suppress(psycopg.Error):
            execute(self.database_url, "SELECT pg_drop_replication_slot(slot_name) FROM "
                    "pg_replication_slots WHERE slot_name LIKE %s AND NOT active",
                    (f"{self.name}%",))
        with contextlib.suppress(psycopg.Error):
            execute(self.database_url, f'DROP PUBLICATION IF EXISTS "{self.name}"')
        with contextlib.suppress(psycopg.Error):
            execute(self.database_url, "DELETE FROM labstream.connector_offsets WHERE "
                    "connector_name = %s", (self.name,))

    def _delete_rows(self) -> None:
        url = self.database_url
        for tenant in self.tenants:
            traces = execute(url, "SELECT DISTINCT trace_id FROM public.jobs WHERE tenant_id = %s "
                             "AND trace_id IS NOT NULL", (tenant,))
            execute(url, "DELETE FROM labstream.spans WHERE trace_id = ANY(%s)",
                    ([row[0] for row in traces],))
            execute(url, "DELETE FROM public.jobs WHERE tenant_id = %s", (tenant,))
            execute(url, "DELETE FROM public.runs WHERE experiment_id IN (SELECT id FROM "
                    "public.experiments WHERE tenant_id = %s)", (tenant,))
            execute(url, "DELETE FROM public.experiments WHERE tenant_id = %s", (tenant,))
        execute(url, "DELETE FROM labstream.spans WHERE resource ->> %s = %s",
                (CHAIN_ATTRIBUTE, self.name))
        execute(url, "DELETE FROM public.trigger_rules WHERE id = ANY(%s)", (self.rules,))
        execute(url, "DELETE FROM public.instruments WHERE id = ANY(%s)", (self.instruments,))
        execute(url, "DELETE FROM public.tenants WHERE id = ANY(%s)", (self.tenants,))

    def _delete_topics(self) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        names = [t for t in admin.list_topics(timeout=10).topics
                 if t.startswith(f"{self.name}.") or t.startswith(self.app_id)
                 or t == f"__labstream-heartbeat.{self.name}"]
        if names:
            for future in admin.delete_topics(names, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result(30)

    # -- lab rows -------------------------------------------------------------------------

    def tenant(self) -> str:
        tenant = f"{self.name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
        execute(self.database_url, "INSERT INTO public.tenants (id, name) VALUES (%s, %s)",
                (tenant, tenant))
        self.tenants.append(tenant)
        return tenant

    def instrument(self) -> str:
        instrument = f"hplc-{uuid.uuid4().hex[:10]}"
        execute(self.database_url, "INSERT INTO public.instruments (id, name, kind) VALUES "
                "(%s, %s, 'hplc')", (instrument, f"HPLC {instrument}"))
        self.instruments.append(instrument)
        return instrument

    def rule(self, tenant: str, command: list[str], *, condition: dict[str, Any] | None = None,
             env: dict[str, str] | None = None, timeout_s: int = 120) -> str:
        """A rule for `tenant` on hplc.completed that only this chain's worker fires.

        The condition on `origin.topic` keeps other workers (other tests' chains that
        capture the same tables) from firing it: the job is launched by ours.
        """
        rule_id = f"r-{uuid.uuid4().hex[:12]}"
        condition = {"origin.topic": f"{self.name}.public.runs", **(condition or {})}
        env = {"OTEL_RESOURCE_ATTRIBUTES": f"{CHAIN_ATTRIBUTE}={self.name}", **(env or {})}
        execute(self.database_url,
                "INSERT INTO public.trigger_rules (id, tenant_id, event_kind, condition, command, "
                "env, timeout_s) VALUES (%s, %s, 'hplc.completed', %s, %s, %s, %s)",
                (rule_id, tenant, json.dumps(condition), json.dumps(command), json.dumps(env),
                 timeout_s))
        self.rules.append(rule_id)
        self.wait_until_delivered("trigger_rules", rule_id)
        self.wait_until_worker_loaded(rule_id)
        return rule_id

    def wait_until_worker_loaded(self, rule_id: str, timeout: float = 60) -> None:
        """Block until the worker's reference follower logged the rule as loaded (it fires
        only for events it handles after that)."""
        path = self.log_dir / "worker.log"
        try:
            wait_for(lambda: path.exists() and rule_loaded(path.read_text(errors="replace"),
                                                           rule_id),
                     timeout, f"the worker to load rule {rule_id}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker log:\n{self.log('worker')}") from exc

    def wait_until_delivered(self, table: str, key_part: str, timeout: float = 60) -> None:
        """Block until the connector has written a record of `key_part` to the table's topic."""
        from explain.kafkascan import KafkaScanner

        topic = f"{self.name}.public.{table}"
        with KafkaScanner(self.bootstrap, budget_s=10) as scanner:
            wait_for(lambda: scanner.has_topic(topic) and scanner.scan(
                topic, lambda r: r.key is not None and key_part.encode() in r.key).records,
                timeout, f"{key_part} on {topic}")

    def complete_run(self, experiment_id: str, instrument: str, traceparent: str | None,
                     provider: TracerProvider | None) -> str:
        """Insert a completed HPLC run, in a transaction that carries the trace context."""
        run_id = f"run-{uuid.uuid4().hex[:12]}"
        carrier = {"traceparent": traceparent} if traceparent else {}
        tracer = trace.get_tracer("tests.e2e", tracer_provider=provider)
        with tracer.start_as_current_span("complete run", context=extract_http_headers(carrier)), \
                psycopg.connect(self.database_url) as conn, conn.cursor() as cursor:
            emit_db_trace_context(cursor)
            cursor.execute(
                "INSERT INTO public.runs (id, experiment_id, instrument_id, status, started_at, "
                "finished_at, result) VALUES (%s, %s, %s, 'completed', now() - interval '1 "
                "minute', now(), %s)", (run_id, experiment_id, instrument, json.dumps(PEAKS)))
        return run_id

    def job_of(self, experiment_id: str, rule_id: str, timeout: float = 90) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
                row = cursor.execute("SELECT * FROM public.jobs WHERE experiment_id = %s AND "
                                     "rule_id = %s", (experiment_id, rule_id)).fetchone()
            done = ("succeeded", "failed", "timed_out", "launch_failed")
            return row if row and row["status"] in done else None

        try:
            return wait_for(finished, timeout, f"job of rule {rule_id}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker log:\n{self.log('worker')}") from exc


def api_tracer_provider(otlp_traces_url: str | None, database_url: str,
                        chain_name: str) -> TracerProvider:
    """The in-process API's provider: spans to the OTLP receiver and the span store."""
    provider = TracerProvider(resource=Resource.create(
        {"service.name": "labstream-api", CHAIN_ATTRIBUTE: chain_name}))
    if otlp_traces_url:
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(otlp_traces_url)))
    provider.add_span_processor(SimpleSpanProcessor(DbSpanExporter(database_url)))
    return provider


@contextlib.contextmanager
def chain(database_url: str, bootstrap: str, tmp_dir: Path, *, otlp_endpoint: str | None,
          worker: bool = True, publication_tables: list[str] | None = None,
          **cdc_overrides: str) -> Iterator[Chain]:
    running = Chain(database_url, bootstrap, f"ex{uuid.uuid4().hex[:10]}", otlp_endpoint,
                    tmp_dir)
    try:
        running.start_connector(publication_tables=publication_tables, **cdc_overrides)
        if worker:
            running.start_worker()
        yield running
    finally:
        running.close()
