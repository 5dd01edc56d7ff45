"""Every topic the worker reads or writes, and `ensure_topics()` to create them first.

Faust subscribes only to topics that exist when the worker starts (a topic
created later is not picked up until a restart), so the CLI creates the CDC
topics it reads (when the connector has not yet), the routed topics, the
decisions topic and the dead-letter topic before starting the worker. Existing
topics are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from base.kafka import kafka_connection
from streams.config import EVENT_TABLES, REFERENCE_TABLES, WorkerSettings
from streams.exceptions import TopicSetupError
from streams.route import ROUTED_KINDS


@dataclass(frozen=True)
class WorkerTopics:
    event_topics: dict[str, str]  # topic -> table (consumed by the group)
    reference_topics: dict[str, str]  # topic -> table (every worker, all partitions)
    routed_topics: dict[str, str]  # kind -> topic
    decisions: str
    dlq: str

    @property
    def all_names(self) -> list[str]:
        names = {*self.event_topics, *self.reference_topics, *self.routed_topics.values(),
                 self.decisions, self.dlq}
        return sorted(names)


def worker_topics(settings: WorkerSettings) -> WorkerTopics:
    return WorkerTopics(
        event_topics={settings.cdc_topic(table): table for table in EVENT_TABLES},
        reference_topics={settings.cdc_topic(table): table for table in REFERENCE_TABLES},
        routed_topics={kind: settings.routed_topic(kind) for kind in ROUTED_KINDS},
        decisions=settings.decisions_topic,
        dlq=settings.dlq_topic,
    )


def ensure_topics(settings: WorkerSettings, topics: WorkerTopics | None = None,
                  *, timeout_s: float = 15.0) -> list[str]:
    """Create the missing topics (settings.partitions each); returns the names created."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    chosen = topics or worker_topics(settings)
    # librdkafka's own log lines would repeat the error below, without the fix
    admin = AdminClient({**kafka_connection(settings.bootstrap_servers).librdkafka("worker-admin"),
                         "log_level": 0})
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise TopicSetupError(f"cannot list topics on {settings.bootstrap_servers}: {exc}",
                              hint="is Kafka up? `labstream stack status`") from exc
    missing = [name for name in chosen.all_names if name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(name, settings.partitions, settings.replication_factor) for name in missing],
        operation_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" in str(exc):
                continue  # another worker created it in the meantime
            raise TopicSetupError(f"cannot create topic {name}: {exc}",
                                  hint="check the broker log and topic permissions") from exc
    return sorted(created)
