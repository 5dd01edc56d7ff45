"""`CdcSettings`: every knob of `labstream cdc`, read from `LABSTREAM_CDC_*`.

The field descriptions are the settings reference: `docs/connector.md` and
`labstream cdc run --help` are generated from them (`settings_reference()`).
Names follow Debezium's where one exists (`table.include.list` ->
`LABSTREAM_CDC_TABLE_INCLUDE_LIST`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from base.contracts import topics
from connectors.source.exceptions import CdcConfigError

SnapshotMode = Literal["initial", "never", "when_needed", "no_data"]
# labstream's own state is never captured, whatever the include list says.
NEVER_CAPTURED_SCHEMAS = frozenset({"labstream", "pg_catalog", "information_schema"})
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


class CdcSettings(BaseSettings):
    """Settings of the CDC source connector (`LABSTREAM_CDC_*`)."""

    model_config = SettingsConfigDict(env_prefix="LABSTREAM_CDC_", frozen=True, extra="ignore")

    name: str = Field(
        default="",
        description="Connector name: the key of its row in labstream.connector_offsets. "
        "Empty: the slot name. (`source.name` in events is the topic prefix, as Debezium.)",
    )
    slot_name: str = Field(
        default="labstream",
        description="Logical replication slot (lowercase letters, digits, underscore). "
        "A snapshot hand-over may create `<slot>_h<8 hex>`; the offsets table names "
        "the one in use.",
    )
    publication: str = Field(
        default="labstream", description="Publication the slot streams (created on start)."
    )
    publication_autocreate_mode: Literal["filtered", "all_tables", "disabled"] = Field(
        default="filtered",
        description="filtered: publish exactly the captured tables (set again on every "
        "start, needs table ownership); all_tables: FOR ALL TABLES (needs superuser); "
        "disabled: use an existing publication as is.",
    )
    topic_prefix: str = Field(
        default="lab",
        description="Topic prefix: <prefix>.<schema>.<table> (Debezium topic.prefix).",
    )
    table_include_list: str = Field(
        default="",
        description="Comma-separated regular expressions matched against the whole "
        "`schema.table`; empty: every table of every schema except labstream's own.",
    )
    table_exclude_list: str = Field(
        default="", description="Comma-separated regular expressions of tables not captured."
    )
    snapshot_mode: SnapshotMode = Field(
        default="initial",
        description="initial: snapshot once, then stream; never: stream from the slot "
        "only; when_needed: snapshot again if the slot or offsets are gone; no_data: "
        "mark the snapshot done without reading rows, then stream.",
    )
    heartbeat_interval_ms: int = Field(
        default=10_000,
        ge=0,
        description="When the stream has been idle this long, write a heartbeat record to "
        "__labstream-heartbeat.<prefix> and a WAL message so the slot can advance. 0: off.",
    )
    provide_transaction_metadata: bool = Field(
        default=False,
        description="Write BEGIN/END records to <prefix>.transaction and fill the "
        "`transaction` block of events (Debezium's provide.transaction.metadata).",
    )
    skipped_operations: str = Field(
        default="t",
        description="Comma-separated operations not emitted (Debezium's skipped.operations): "
        "c, u, d, t; `none` emits all. Default t: TRUNCATE is skipped, as Debezium does.",
    )
    tombstones_on_delete: bool = Field(
        default=True, description="Write a tombstone (key, null value) after each delete."
    )
    serializer: Literal["avro", "json"] = Field(
        default="avro",
        description="Record format. avro: Confluent framing, schema ids from the registry "
        "(SCHEMA_REGISTRY_URL, else the lab database table); json: Debezium's "
        "JsonConverter with schemas.",
    )
    topic_partitions: int = Field(
        default=4,
        ge=1,
        description="Partitions of the topics the connector creates (key = primary key, "
        "so per-row order holds with any count; several workers share a topic's "
        "partitions, at most one worker per partition).",
    )
    topic_replication_factor: int = Field(
        default=1, ge=1, description="Replication factor of the topics it creates."
    )
    trace_column: str = Field(
        default="",
        description="Optional column holding a W3C traceparent; a row that has it gives "
        "its change record that trace context when the transaction sent none.",
    )
    trace_spans_per_window: int = Field(
        default=1, ge=0,
        description="Traced transactions per window (the records between two producer "
        "polls: up to 256 replication messages under load, one transaction at a trickle) that "
        "get their own PRODUCER span; the rest of the window share one span linked to each "
        "transaction's context (it counts their records; their acknowledgements go to the "
        "connector only), and their records carry that context on. 0: every transaction "
        "its own span (+63 % CPU on single-row transactions at full load, "
        "docs/BENCHMARKS.md).",
    )
    linger_ms: int = Field(
        default=2, ge=0,
        description="Producer linger.ms. 2 ms: at a trickle each record waits up to this long "
        "for company, and 2 instead of 5 halved the steady p50 (4 -> 2-3 ms) for ~7 % more CPU "
        "at 2,000 tx/s; bulk batches fill anyway (docs/BENCHMARKS.md, session 5).",
    )
    batch_size: int = Field(default=1_000_000, ge=1, description="Producer batch.size (bytes).")
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="lz4",
        description="Producer compression.type. lz4 by default: JsonConverter records repeat "
        "their schema, and lz4 batches cut the broker's work per record (docs/BENCHMARKS.md); "
        "every Kafka client reads it (kafka-python with `lz4`, aiokafka with `cramjam`).",
    )
    feedback_interval_ms: int = Field(
        default=100,
        ge=10,
        description="How often the acknowledged LSN is confirmed to PostgreSQL.",
    )
    offsets_interval_ms: int = Field(
        default=1_000,
        ge=100,
        description="How often the offsets row (acked LSN, commit time) is written.",
    )
    tx_buffer_max_records: int = Field(
        default=50_000,
        ge=1,
        description="A transaction's changes are held until its COMMIT (so a trace "
        "message anywhere in it covers all of them); past this many they are sent early.",
    )
    reconnect_backoff_max_s: float = Field(
        default=30.0, gt=0, description="Longest wait between reconnect attempts."
    )
    permanent_error_attempts: int = Field(
        default=3,
        ge=1,
        description="A permanent error (wrong password, missing database or role, malformed "
        "URL, unknown host) is tried this many times, with backoff, before the connector "
        "exits non-zero with one line naming the cause and the fix. Transient errors "
        "(PostgreSQL or Kafka restarting) are retried without limit.",
    )
    max_record_bytes: int = Field(
        default=8_388_608,
        ge=65_536,
        le=104_857_600,
        description="Largest record the connector sends. Topics it creates get this "
        "`max.message.bytes` and the producer's message.max.bytes agrees; for a topic "
        "that already exists the smaller of this and its own max.message.bytes applies.",
    )
    oversized_record_mode: Literal["reference", "fail"] = Field(
        default="reference",
        description="A change record still larger than its topic allows: reference: its "
        "largest text/bytes/json columns are kept in labstream.cdc_oversized_values and "
        "the record carries `labstream-oversized:<id>` in their place (no table stalls, "
        "nothing is lost); fail: stop, naming the table, key, LSN and the fix.",
    )

    @field_validator("slot_name")
    @classmethod
    def _slot_name_is_identifier(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            raise ValueError("use lowercase letters, digits and _ (at most 41 characters)")
        return value

    @field_validator("skipped_operations")
    @classmethod
    def _known_operations(cls, value: str) -> str:
        ops = {op.strip() for op in value.split(",") if op.strip()}
        unknown = ops - {"c", "u", "d", "t", "none"}
        if unknown:
            raise ValueError(f"unknown operation(s) {sorted(unknown)}: use c, u, d, t or none")
        return value

    @property
    def skipped_ops(self) -> frozenset[str]:
        return frozenset(op.strip() for op in self.skipped_operations.split(",")
                         if op.strip() and op.strip() != "none")

    @property
    def connector_name(self) -> str:
        return self.name or self.slot_name

    @property
    def heartbeat_topic(self) -> str:
        return topics.heartbeat_topic(self.topic_prefix)

    @property
    def transaction_topic(self) -> str:
        return topics.transaction_topic(self.topic_prefix)

    def topic_for(self, schema: str, table: str) -> str:
        return topics.cdc_topic(self.topic_prefix, schema, table)

    @cached_property
    def table_filter(self) -> TableFilter:
        return TableFilter.parse(self.table_include_list, self.table_exclude_list)


def _compile(patterns: str, setting: str) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for raw in patterns.split(","):
        text = raw.strip()
        if not text:
            continue
        try:
            compiled.append(re.compile(text))
        except re.error as exc:
            raise CdcConfigError(
                f"{setting} entry {text!r} is not a regular expression: {exc}",
                hint="separate patterns with commas; escape dots as \\.",
            ) from exc
    return tuple(compiled)


@dataclass(frozen=True)
class TableFilter:
    """Debezium-style include/exclude lists over `schema.table` (whole-name match)."""

    include: tuple[re.Pattern[str], ...]
    exclude: tuple[re.Pattern[str], ...]

    @classmethod
    def parse(cls, include: str, exclude: str) -> TableFilter:
        return cls(
            _compile(include, "LABSTREAM_CDC_TABLE_INCLUDE_LIST"),
            _compile(exclude, "LABSTREAM_CDC_TABLE_EXCLUDE_LIST"),
        )

    def captures(self, schema: str, table: str) -> bool:
        if schema in NEVER_CAPTURED_SCHEMAS or schema.startswith("pg_"):
            return False
        name = f"{schema}.{table}"
        if self.include and not any(p.fullmatch(name) for p in self.include):
            return False
        return not any(p.fullmatch(name) for p in self.exclude)


def settings_reference() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting."""
    rows = []
    for field_name, info in CdcSettings.model_fields.items():
        default = info.default
        shown = "" if default in ("", None) else str(default).lower() if isinstance(
            default, bool
        ) else str(default)
        rows.append((f"LABSTREAM_CDC_{field_name.upper()}", shown, info.description or ""))
    return rows


REFERENCE_BEGIN = (
    "<!-- settings-reference:begin (generated by `python -m connectors.source.config`) -->"
)
REFERENCE_END = "<!-- settings-reference:end -->"


def settings_markdown() -> str:
    """The settings table of docs/connector.md, generated from the fields above."""
    lines = [REFERENCE_BEGIN, "", "| variable | default | meaning |", "|---|---|---|"]
    for name, default, description in settings_reference():
        shown = f"`{default}`" if default else ""
        lines.append(f"| `{name}` | {shown} | {description.replace('|', '/')} |")
    lines += ["", REFERENCE_END]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - regenerates the docs table
    print(settings_markdown())
