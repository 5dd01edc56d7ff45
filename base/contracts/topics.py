"""Topic names: one strategy, used by the connector, the worker, replay and explain.

Debezium's naming for row changes (`<prefix>.<schema>.<table>`), its transaction
metadata topic (`<prefix>.transaction`) and logical-message topic
(`<prefix>.message`); heartbeats on `__labstream-heartbeat.<prefix>`; the worker's
routed topics (`<routed prefix>.<kind>`), decisions and dead-letter topic
(`<consumer group>.dlq`). docs/topics.md lists them for subscribers.
"""

from __future__ import annotations

DEFAULT_CDC_PREFIX = "lab"
DEFAULT_ROUTED_PREFIX = "lab.routed"
DEFAULT_DECISIONS_TOPIC = "lab.decisions"
HEARTBEAT_PREFIX = "__labstream-heartbeat"


def cdc_topic(prefix: str, schema: str, table: str) -> str:
    """`lab.public.runs`: the row changes of one table (Debezium's topic.prefix.schema.table)."""
    return f"{prefix}.{schema}.{table}"


def transaction_topic(prefix: str) -> str:
    """`lab.transaction`: Debezium's BEGIN/END transaction metadata records."""
    return f"{prefix}.transaction"


def message_topic(prefix: str) -> str:
    """`lab.message`: logical decoding messages (`pg_logical_emit_message`) that are captured."""
    return f"{prefix}.message"


def heartbeat_topic(prefix: str) -> str:
    """`__labstream-heartbeat.lab`: the connector's heartbeats while tables are idle."""
    return f"{HEARTBEAT_PREFIX}.{prefix}"


def routed_topic(routed_prefix: str, kind: str) -> str:
    """`lab.routed.hplc.completed`: typed lab events of one kind, written by the worker."""
    return f"{routed_prefix}.{kind}"


def dlq_topic(consumer_group: str) -> str:
    """`labstream-worker.dlq`: records a consumer group could not process, with the error."""
    return f"{consumer_group}.dlq"


def table_of_cdc_topic(topic: str, prefix: str = DEFAULT_CDC_PREFIX) -> tuple[str, str] | None:
    """(schema, table) of a CDC topic name, None for any other topic."""
    head = f"{prefix}."
    if not topic.startswith(head):
        return None
    parts = topic[len(head):].split(".")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]
