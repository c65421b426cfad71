"""Smoke: the Kafka fixtures give real brokers that do what pymirror relies on.

Designed around the measured quirks in docs/testing.md: no idempotent
producer (Tansu), one record per produce request (Tansu's end offsets are
wrong after a batched produce), manual commits only (noida never finishes a
rebalance with auto-commit), and one group join per test (a re-join on
Tansu waits ~2.4x the session timeout).
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.servers.kafka import KafkaBroker, group_timeouts

pytestmark = pytest.mark.integration


async def create_topic(broker: KafkaBroker, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def produce(broker: KafkaBroker, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for i, (key, value) in enumerate(records):
            headers = [("x-session", b"alice"), ("x-seq", str(i).encode())]
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


def group_consumer(broker: KafkaBroker, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **group_timeouts(broker.kind),
    )


async def test_records_with_headers_round_trip_and_group_commit_is_resumed(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    topic, group = unique_name, f"{unique_name}-g"
    tp = TopicPartition(topic, 0)
    await create_topic(kafka_broker, topic)
    await produce(kafka_broker, topic, [(b"k0", b"v0"), (b"k1", b"v1"), (b"k2", b"v2")])

    first = group_consumer(kafka_broker, topic, group)
    await first.start()
    try:
        got: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(30):
            while len(got) < 3:
                batch = await first.getmany(timeout_ms=1000)
                got += [r for records in batch.values() for r in records]
        await first.commit()
        committed = await first.committed(tp)
    finally:
        await first.stop()

    assert [(r.key, r.value) for r in got] == [(b"k0", b"v0"), (b"k1", b"v1"), (b"k2", b"v2")]
    assert [list(r.headers) for r in got] == [
        [("x-session", b"alice"), ("x-seq", str(i).encode())] for i in range(3)
    ]
    assert committed == 3

    await produce(kafka_broker, topic, [(b"k3", b"v3")])
    # Resume from the group's committed offset without a second group join
    # (a re-join after a member left costs ~2.4x session timeout on Tansu).
    second = AIOKafkaConsumer(
        bootstrap_servers=kafka_broker.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # a lost commit would show up as offset 0
    )
    second.assign([tp])
    await second.start()
    try:
        async with asyncio.timeout(30):
            record = await second.getone()
    finally:
        await second.stop()
    assert (record.key, record.value, record.offset) == (b"k3", b"v3", 3)
