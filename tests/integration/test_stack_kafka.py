"""The stack's Kafka works with every client labstream uses: produce, consume, commit."""

from __future__ import annotations

import asyncio
import time

import pytest
from confluent_kafka import TopicPartition as ConfluentPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

pytestmark = pytest.mark.integration


def _create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()


def test_kafka_python_round_trip_with_headers(kafka_bootstrap: str, unique_name: str) -> None:
    topic = f"stack-test.{unique_name}"
    _create_topic(kafka_bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    sent = [
        producer.send(topic, key=b"k%d" % i, value=b"v%d" % i, headers=[("h", b"%d" % i)])
        for i in range(5)
    ]
    offsets = [future.get(timeout=15).offset for future in sent]
    producer.close()
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
        consumer_timeout_ms=10000,
    )
    received = [(r.key, r.value, r.headers) for r in consumer]
    consumer.close()
    _delete_topic(kafka_bootstrap, topic)
    assert offsets == [0, 1, 2, 3, 4]
    assert received == [(b"k%d" % i, b"v%d" % i, [("h", b"%d" % i)]) for i in range(5)]


def test_kafka_python_group_commit_is_read_back(kafka_bootstrap: str, unique_name: str) -> None:
    topic, group = f"stack-test.{unique_name}", f"group-{unique_name}"
    _create_topic(kafka_bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for i in range(3):
        producer.send(topic, b"%d" % i).get(timeout=15)
    producer.close()

    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=10000,
    )
    values = [next(consumer).value for _ in range(3)]
    consumer.commit()
    consumer.close()

    # a new member of the group starts after the commit, and the admin API sees it
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    committed = admin.list_group_offsets(group)[group]
    admin.close()
    again = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    partition = TopicPartition(topic, 0)
    committed_seen_by_member = again.committed(partition)
    again.close()
    _delete_topic(kafka_bootstrap, topic)

    assert values == [b"0", b"1", b"2"]
    assert committed[partition].offset == 3
    assert committed_seen_by_member == 3


def test_aiokafka_round_trip_and_group_commit(kafka_bootstrap: str, unique_name: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition as AioPartition

    topic, group = f"stack-test.{unique_name}", f"group-{unique_name}"
    _create_topic(kafka_bootstrap, topic)

    async def scenario() -> tuple[list[bytes], int | None]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(4):
                await producer.send_and_wait(topic, b"a%d" % i, headers=[("n", b"%d" % i)])
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, group_id=group,
            auto_offset_reset="earliest", enable_auto_commit=False,
        )
        await consumer.start()
        try:
            values: list[bytes] = []
            while len(values) < 4:
                record = await asyncio.wait_for(consumer.getone(), timeout=20)
                values.append(record.value)
            await consumer.commit()
            committed = await consumer.committed(AioPartition(topic, 0))
        finally:
            await consumer.stop()
        return values, committed

    values, committed = asyncio.run(scenario())
    _delete_topic(kafka_bootstrap, topic)
    assert values == [b"a0", b"a1", b"a2", b"a3"]
    assert committed == 4


def test_confluent_kafka_idempotent_producer_round_trip(
    kafka_bootstrap: str, unique_name: str
) -> None:
    """The connector's hot path: librdkafka, idempotent, acks=all."""
    from confluent_kafka import Consumer, Producer

    topic = f"stack-test.{unique_name}"
    _create_topic(kafka_bootstrap, topic)
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "acks": "all"}
    )
    delivered: list[int | None] = []
    for i in range(3):
        producer.produce(
            topic, value=b"c%d" % i, on_delivery=lambda err, msg: delivered.append(
                -1 if err else msg.offset()
            ),
        )
    assert producer.flush(15) == 0
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": f"group-{unique_name}",
         "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    values: list[bytes | None] = []
    deadline = time.monotonic() + 30
    while len(values) < 3 and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            values.append(message.value())
    consumer.commit(asynchronous=False)
    committed = consumer.committed([ConfluentPartition(topic, 0)], timeout=10)
    consumer.close()
    _delete_topic(kafka_bootstrap, topic)
    assert delivered == [0, 1, 2]
    assert values == [b"c0", b"c1", b"c2"]
    assert committed[0].offset == 3
