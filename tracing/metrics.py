"""Prometheus metrics of every labstream process (prometheus-client), and their endpoint.

All metrics live in prometheus-client's default registry, so one `/metrics` per process
shows them with the client's process metrics (CPU, RSS, open fds). Hot paths never
touch a labelled child per record: the connector counts records in plain ints and
`CounterFunc`-style collectors read them at scrape time; histograms are observed once
per transaction or job, not per record.

Endpoints:
- the connector and the worker: `serve_metrics(port)` starts prometheus-client's own
  HTTP server on a daemon thread (`LABSTREAM_METRICS_PORT`, 0 = off) with `/metrics`,
  `/healthz` and `/readyz` (tracing.health);
- the API mounts `metrics_response()` and the health routes on its own app.

Names follow Prometheus conventions: `labstream_<area>_<what>_<unit>`, counters end in
`_total`. docs/tracing.md lists them; docs/grafana-dashboard.json plots them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# -- tracing ---------------------------------------------------------------------------------
SPANS_DROPPED = Counter(
    "labstream_spans_dropped",
    "Finished spans not exported: the batch queue was full (queue_full), the exporter "
    "failed (export_failed) or the process was shutting down (shutdown).",
    ["exporter", "reason"],
)
SPANS_EXPORTED = Counter("labstream_spans_exported", "Spans an exporter accepted.", ["exporter"])

# -- CDC connector -----------------------------------------------------------------------------
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
CDC_COMMIT_TO_KAFKA = Histogram(
    "labstream_cdc_commit_to_kafka_seconds",
    "Source transaction COMMIT -> Kafka acknowledged all its records (one per transaction).",
    buckets=LATENCY_BUCKETS,
)



def observe_commit_to_kafka(commit_time_us: int | None) -> None:
    """The connector confirmed a transaction: how long after its COMMIT Kafka had it all
    (once per transaction, by the delivery tracker)."""
    if commit_time_us:
        CDC_COMMIT_TO_KAFKA.observe(max(0.0, time.time() - commit_time_us / 1e6))


# -- stream worker -----------------------------------------------------------------------------
JOB_WAIT = Histogram(
    "labstream_job_queue_wait_seconds",
    "Job claimed -> a run slot free (rule max_concurrency), per tenant.", ["tenant"],
    buckets=LATENCY_BUCKETS)
JOB_DURATION = Histogram(
    "labstream_job_duration_seconds", "Job run time, by backend and outcome.",
    ["backend", "outcome"], buckets=LATENCY_BUCKETS)
JOB_OUTCOMES = Counter(
    "labstream_job_outcomes", "Finished job attempts, by outcome.", ["tenant", "outcome"])



def job_finished(tenant: str | None, backend: str, outcome: str, began_monotonic: float) -> None:
    """One job attempt ended (the job runner, once per attempt)."""
    JOB_DURATION.labels(backend, outcome).observe(time.monotonic() - began_monotonic)
    JOB_OUTCOMES.labels(tenant or "", outcome).inc()


# -- API ---------------------------------------------------------------------------------------
HTTP_REQUESTS = Histogram(
    "labstream_http_request_duration_seconds", "API request time, by route and status.",
    ["method", "route", "status"], buckets=LATENCY_BUCKETS)


class CallbackCollector(Collector):
    """Metrics read at scrape time from a callable (the connector's plain-int counters,
    slot lag from the database): nothing on the hot path, fresh on every scrape.

    `read()` returns {metric name: value} or {metric name: {label tuple: value}}; a
    failing read is logged and yields nothing for that scrape (a scrape never fails).
    """

    def __init__(self, read: Callable[[], dict[str, Any]],
                 describe: dict[str, tuple[str, str, tuple[str, ...]]]) -> None:
        self._read = read
        self._describe = describe  # name -> (type counter|gauge, help, label names)

    def collect(self) -> Iterable[Any]:
        try:
            values = self._read()
        except Exception as exc:  # a scrape must answer even when a source is down
            log.warning("metrics source failed: %s", exc)
            return
        for name, (kind, help_text, labels) in self._describe.items():
            if name not in values:
                continue
            family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = family_type(name, help_text, labels=list(labels))
            value = values[name]
            if isinstance(value, dict):
                for label_values, sample in value.items():
                    family.add_metric(list(label_values), sample)
            else:
                family.add_metric([], value)
            yield family

    def describe(self) -> Iterable[Any]:
        return []  # names are dynamic per registration; skip the registry's duplicate check


_collectors_lock = threading.Lock()
_collectors: dict[str, Collector] = {}


def register_collector(key: str, collector: Collector) -> None:
    """Register (or replace: a restarted connector in the same process) a named collector."""
    with _collectors_lock:
        old = _collectors.pop(key, None)
        if old is not None:
            REGISTRY.unregister(old)
        REGISTRY.register(collector)
        _collectors[key] = collector


PORT_ENV = "LABSTREAM_METRICS_PORT"


def metrics_port() -> int | None:
    """`LABSTREAM_METRICS_PORT`: where the connector/worker serve /metrics, /healthz and
    /readyz; unset or `off` = not served, 0 = a free port the OS picks (logged)."""
    import os

    from base.errors import ConfigError

    raw = os.environ.get(PORT_ENV, "").strip().lower()
    if raw in ("", "off", "none"):
        return None
    if not raw.isdigit() or int(raw) > 65535:
        raise ConfigError(f"{PORT_ENV}={raw!r} is not a port",
                          hint=f"set {PORT_ENV} to a port number (0 = any free port) or off")
    return int(raw)
