"""`WorkerSettings`: everything the stream worker reads from the environment.

Prefix `LABSTREAM_WORKER_`, e.g. `LABSTREAM_WORKER_APP_ID=labstream-worker-b`.
Topic names and the app id are settings so that tests (and side-by-side
deployments) can run isolated workers on one cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from base.contracts import topics
from base.settings import service_settings

# reference tables the worker keeps in memory (every worker: all partitions)
REFERENCE_TABLES = ("tenants", "experiments", "instruments", "samples", "inventory_items",
                    "trigger_rules")
# tables whose changes are routed (each worker: the partitions it is assigned)
EVENT_TABLES = ("runs", "experiments", "inventory_items", "sensor_readings")


class WorkerSettings(BaseSettings):
    """The stream worker (`labstream worker`)."""

    model_config = SettingsConfigDict(env_prefix="LABSTREAM_WORKER_", frozen=True,
                                      extra="ignore")

    app_id: str = Field(default="labstream-worker",
                        description="Faust app id = consumer group; DLQ is <app_id>.dlq")
    cdc_prefix: str = Field(default="lab", description="CDC topic prefix: <prefix>.public.<table>")
    routed_prefix: str = Field(default="lab.routed", description="routed topics: <this>.<kind>")
    decisions_topic: str = Field(default="lab.decisions", description="every trigger decision")
    partitions: int = Field(default=4, ge=1,
                            description="partitions for topics the worker creates when missing")
    replication_factor: int = Field(default=1, ge=1, description="for topics it creates")
    enrichment_wait_s: float = Field(default=5.0, ge=0,
                                     description="how long to wait for late reference rows")
    enrichment_poll_s: float = Field(default=0.1, gt=0, description="re-check interval")
    reference_ready_timeout_s: float = Field(
        default=60.0, gt=0, description="max wait at start to load reference topics")
    fridge_max_celsius: float = Field(default=8.0, description="fridge.excursion threshold")
    lot_expiry_days: float = Field(default=7.0, gt=0, description="inventory.lot_expiring window")
    lot_sweep_interval_s: float = Field(
        default=300.0, gt=0, description="how often the group leader looks for lots that "
                                         "entered the expiry window without a row change")
    session_timeout_s: float = Field(
        default=10.0, gt=0, description="consumer session timeout: how soon a dead worker's "
                                        "partitions move to the others")
    commit_interval_s: float = Field(
        default=1.0, gt=0, description="offset commit interval (records since the last "
                                       "commit are handled again after a crash)")
    max_in_flight: int = Field(
        default=1000, ge=1, description="records handled but not yet acknowledged (their "
                                        "outputs still on their way to the broker), per agent")
    max_output_bytes: int = Field(
        default=900_000, ge=1024,
        description="largest record (key + value + headers) the worker produces; a larger "
                    "output goes to the DLQ as a reference (Kafka refuses > ~1 MB by default)")
    engine: Literal["kafka", "faust"] = Field(
        default="kafka",
        description="kafka: the batch loop on confluent-kafka (streams.batchworker); faust: "
                    "one Faust agent per topic (streams.app), record by record")
    max_batch: int = Field(default=500, ge=1, le=100_000,
                           description="records consumed and handled per batch (kafka engine)")
    trace_runs_per_batch: int = Field(
        default=16, ge=0,
        description="runs of records sharing a trace context (source transactions) of a "
                    "batch that get their own CONSUMER + PRODUCER spans; the rest share one "
                    "batch span linked to each (kafka engine: tracing cost at full load)")
    launch_jobs: bool = Field(default=True,
                              description="hand fired decisions to the job runner (false: "
                                          "decisions only)")
    data_dir: Path | None = Field(
        default=None, description="Faust data dir (default <state_dir>/worker/<app_id>)")
    log_level: str = Field(default="INFO", description="worker log level")

    def cdc_topic(self, table: str) -> str:
        return topics.cdc_topic(self.cdc_prefix, "public", table)

    def routed_topic(self, kind: str) -> str:
        return topics.routed_topic(self.routed_prefix, kind)

    @property
    def dlq_topic(self) -> str:
        return topics.dlq_topic(self.app_id)

    @property
    def bootstrap_servers(self) -> str:
        return service_settings().kafka_bootstrap_servers

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir or service_settings().state_dir / "worker" / self.app_id
