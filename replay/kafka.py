"""Thin Kafka clients for replay: a group-less reader and an idempotent producer.

Reading uses kafka-python's `KafkaConsumer` with `assign`/`seek` and no group,
so a replay never commits offsets or joins a consumer group of a running agent;
`check_crcs=False` because the broker already verified them and the scan is the
hot path. Producing uses librdkafka (confluent-kafka) with idempotence, so
records stay in order per partition even when the client retries.
"""

from __future__ import annotations

import logging
from typing import Any

from base.errors import ServiceUnavailable
from base.kafka import kafka_connection
from base.settings import service_settings

STACK_HINT = "start the stack (`labstream stack up`) or set LABSTREAM_KAFKA_BOOTSTRAP_SERVERS"


def bootstrap_servers(bootstrap: str | None = None) -> str:
    return bootstrap or service_settings().kafka_bootstrap_servers


def open_consumer(bootstrap: str | None = None) -> Any:
    # kafka-python narrates every connection at INFO: noise in a CLI's output
    logging.getLogger("kafka").setLevel(logging.WARNING)
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    servers = bootstrap_servers(bootstrap)
    try:
        return KafkaConsumer(
            **kafka_connection(servers).kafka_python("replay"),
            group_id=None,
            enable_auto_commit=False,
            check_crcs=False,
            auto_offset_reset="earliest",
            request_timeout_ms=30_000,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
    except KafkaError as exc:
        raise ServiceUnavailable(
            f"Kafka at {servers} did not answer: {exc}", hint=STACK_HINT
        ) from exc


def open_producer(bootstrap: str | None = None) -> Any:
    from confluent_kafka import Producer

    return Producer(
        {
            **kafka_connection(bootstrap_servers(bootstrap)).librdkafka("replay"),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            # none: the reader (kafka-python) decodes lz4/snappy/zstd only with extra packages
            "compression.type": "none",
            "message.max.bytes": 8_388_608,
        }
    )


def ensure_topic(bootstrap: str | None, topic: str, partitions: int) -> bool:
    """Create `topic` with `partitions` unless it exists; True when it was created."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(kafka_connection(bootstrap_servers(bootstrap)).librdkafka("replay"))
    try:
        if topic in admin.list_topics(timeout=10).topics:
            return False
        future = admin.create_topics([NewTopic(topic, num_partitions=partitions)])[topic]
        future.result(timeout=15)
        return True
    except KafkaException as exc:
        error = exc.args[0]
        if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise ServiceUnavailable(f"could not create topic {topic}: {exc}", hint=STACK_HINT) from exc


def partition_count(consumer: Any, topic: str) -> int:
    return len(consumer.partitions_for_topic(topic) or ())
