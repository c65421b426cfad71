"""Records the worker must forward like any other, on real brokers (noida-db and Tansu).

A record with a null key and a null value, a record larger than 1 MiB on a topic whose
``max.message.bytes`` allows it, records of an aborted transaction (never
forwarded), a partition the group never committed (started where the workload
would start it), a destination with fewer partitions than the original, and an
original that grows. Each was a crash loop, a loss or a replay before.

Broker quirks met here (docs/testing.md, "Kafka broker quirks", and measured): Tansu
0.6 has no transactions (InitProducerId fails) and no CreatePartitions, so the
aborted-transaction and growth tests run on noida-db only; both brokers take
records over 1 MiB.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.structs import OffsetAndMetadata

from splitter.kafka.draining import fallback_lag
from splitter.kafka.forwarding import NullableProducer
from splitter.kafka.settings import KafkaSettings
from splitter.kafka.topics import create_temporary_topic
from splitter.kafka.worker import KafkaSplitWorker, KafkaWorkerIdentity
from splitter.naming import DEFAULT_KAFKA_TOPIC_FORMAT, NameFormat
from splitter.routing import SessionRoute
from tests.integration.kafka.support import (
    clients_for,
    committed_offsets,
    create_topics,
    make_records,
    per_partition,
    produce,
    read_all,
    route,
    wait_until,
    worker_consumer_overrides,
)
from tests.servers.kafka import KafkaBroker

pytestmark = pytest.mark.integration

PARTITIONS = 2


def worker_for(
    broker: KafkaBroker,
    topic: str,
    fallback: str,
    *routes: SessionRoute,
    properties: dict[str, str] | None = None,
    consumer: dict[str, Any] | None = None,
) -> KafkaSplitWorker:
    identity = KafkaWorkerIdentity(topic=topic, group_id=f"{topic}-g", fallback_topic=fallback)
    return KafkaSplitWorker(
        clients_for(broker, properties),
        identity,
        KafkaSettings(commit_interval=0.1, partition_check_interval=0.5),
        routes,
        consumer_overrides={**worker_consumer_overrides(broker), **(consumer or {})},
    )


async def make_topic(broker: KafkaBroker, name: str, partitions: int, **configs: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def test_a_record_with_null_key_and_null_value_is_forwarded_as_such(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    """Was: aiokafka's "Need at least one: key or value" AssertionError, a crash loop."""
    original, fallback = unique_name, f"{unique_name}-fb"
    await create_topics(kafka_broker, PARTITIONS, original, fallback)
    # aiokafka's own producer refuses such a record; the splitter's takes it.
    producer = NullableProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await producer.start()
    try:
        await (await producer.send(original, None, key=None, partition=1, headers=[("id", b"n")]))
    finally:
        await producer.stop()
    after = make_records(4, PARTITIONS, ["bob"])
    await produce(kafka_broker, original, after)

    worker = worker_for(kafka_broker, original, fallback)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(worker.run())
        got = await read_all(kafka_broker, fallback, PARTITIONS, expect=5)
        worker.stop()
    assert task.done()
    assert task.exception() is None
    null = [g for g in got if g.id == "n"]
    assert [(g.partition, g.key, g.value) for g in null] == [(1, None, None)]
    assert {g.id for g in got} == {"n", *(r.id for r in after)}


async def test_a_record_over_1_mib_on_a_topic_that_allows_it_is_forwarded(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    """Was: the producer's 1 MiB max_request_size refused it (MessageSizeTooLargeError)
    and the worker crashed on it again after every restart."""
    original, fallback = unique_name, f"{unique_name}-fb"
    big = {"max.message.bytes": str(3 * 1024 * 1024)}
    await make_topic(kafka_broker, original, 1, **big)
    await make_topic(kafka_broker, fallback, 1, **big)
    value = bytes(range(256)) * (2 * 1024 * 1024 // 256)  # 2 MiB
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_broker.bootstrap,
        acks="all",
        enable_idempotence=False,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        await (await producer.send(original, value, key=b"k", headers=[("id", b"big")]))
        await (await producer.send(original, b"small", headers=[("id", b"small")]))
    finally:
        await producer.stop()

    worker = worker_for(kafka_broker, original, fallback)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(worker.run())
        got = await read_all(kafka_broker, fallback, 1, expect=2)
        worker.stop()
    assert task.exception() is None
    assert [(g.id, g.key, len(g.value or b"")) for g in got] == [
        ("big", b"k", len(value)),
        ("small", None, 5),
    ]
    assert got[0].value == value
    assert worker.stats.forward_failures == 0


async def test_a_partition_the_group_never_committed_starts_at_the_end_like_the_workload(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    """The workload's consumer (auto.offset.reset unset = latest) would skip the history
    of a partition its group never committed; the worker used to replay all of it."""
    original, fallback = unique_name, f"{unique_name}-fb"
    await create_topics(kafka_broker, PARTITIONS, original, fallback)
    history = make_records(20, PARTITIONS, ["old"])
    for record in history:  # one at a time: Tansu lists a wrong end after a batched produce
        await produce(kafka_broker, original, [record])

    worker = worker_for(kafka_broker, original, fallback, properties={})
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(worker.run())
        # The worker's positions exist once it forwards something: probe until it does.
        probes = 0
        while worker.stats.read == 0:
            await produce(kafka_broker, original, make_records(1, 1, ["probe"], start=500 + probes))
            probes += 1
            await asyncio.sleep(0.2)
        new = make_records(6, PARTITIONS, ["new"], start=1000)
        await produce(kafka_broker, original, new)
        got = await read_all(kafka_broker, fallback, PARTITIONS)  # until idle
        worker.stop()
    assert task.exception() is None
    ids = {g.id for g in got}
    assert not ids & {r.id for r in history}  # the history was not replayed
    assert {r.id for r in new} <= ids
    assert len(ids) <= probes + len(new)


async def test_a_one_partition_session_topic_gets_every_source_partition_in_order(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    """Was: aiokafka's "Unrecognized partition" AssertionError for partition 1 of a
    1-partition session topic, a crash loop. Each source partition now maps onto
    one destination partition (p % count), so its order holds."""
    original, fallback, alice = unique_name, f"{unique_name}-fb", f"{unique_name}-alice"
    await create_topics(kafka_broker, 3, original, fallback)
    await create_topics(kafka_broker, 1, alice)
    sent = make_records(60, 3, ["alice", "bob"])
    await produce(kafka_broker, original, sent)

    worker = worker_for(kafka_broker, original, fallback, route("alice", 1, alice, user="^alice$"))
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(worker.run())
        got = await read_all(kafka_broker, alice, 1, expect=30)
        fell = await read_all(kafka_broker, fallback, 3, expect=30)
        worker.stop()
    assert task.exception() is None
    wanted = [r for r in sent if dict(r.headers)["user"] == b"alice"]
    assert sorted(g.id for g in got) == sorted(r.id for r in wanted)
    for partition, ids in per_partition(wanted).items():
        assert [g.id for g in got if int(g.id[1:]) % 3 == partition] == ids  # order per source
    assert per_partition(fell) == per_partition(r for r in sent if r not in wanted)


@pytest.mark.parametrize("kafka_broker", ["noida"], indirect=True)
async def test_an_original_that_grows_grows_its_temporary_topics_and_keeps_routing(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    """Steps: split a 2-partition original into a temporary fallback; add 2 partitions
    to the original; produce to the new ones. The worker (its consumer refreshing
    metadata every 0.5 s) is assigned them, grows the fallback to 4 and forwards to the
    same partition numbers. noida-db only: Tansu 0.6 has no CreatePartitions."""
    original = unique_name
    await create_topics(kafka_broker, 2, original)
    async with clients_for(kafka_broker).admin() as admin:
        fallback = await create_temporary_topic(
            admin, original, NameFormat(DEFAULT_KAFKA_TOPIC_FORMAT, "kafka"), fallback=True
        )
    worker = worker_for(
        kafka_broker, original, fallback.name, consumer={"metadata_max_age_ms": 500}
    )
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(worker.run())
        first = make_records(4, 2, ["a"])
        await produce(kafka_broker, original, first)
        await read_all(kafka_broker, fallback.name, 2, expect=4)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
        await admin.start()
        try:
            await admin.create_partitions({original: NewPartitions(4)})
        finally:
            await admin.close()
        await wait_until(
            lambda: len(worker._ledgers) == 4,
            within=60,
            what=lambda: f"assigned {sorted(worker._ledgers)}",
        )
        later = [r for r in make_records(8, 4, ["b"], start=100) if r.partition >= 2]
        await produce(kafka_broker, original, later)
        got = await read_all(kafka_broker, fallback.name, 4, expect=4 + len(later))
        worker.stop()
    assert task.exception() is None
    async with clients_for(kafka_broker).admin() as admin:
        assert await admin.partitions(fallback.name) == 4
        await admin.delete_topic(fallback.name)
    assert per_partition(g for g in got if g.id in {r.id for r in later}) == per_partition(later)


@pytest.mark.parametrize("kafka_broker", ["noida"], indirect=True)
async def test_records_of_an_aborted_transaction_are_never_forwarded(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    """Was: read_uncommitted, so an aborted transaction's records reached the fallback.
    noida-db only: Tansu 0.6 has no transactions."""
    original, fallback = unique_name, f"{unique_name}-fb"
    await create_topics(kafka_broker, 1, original, fallback)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_broker.bootstrap, transactional_id=f"{unique_name}-tx"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(original, b"kept", headers=[("id", b"kept")])
        await producer.begin_transaction()
        await producer.send(original, b"aborted", headers=[("id", b"aborted")])
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(original, b"after", headers=[("id", b"after")])
    finally:
        await producer.stop()

    worker = worker_for(kafka_broker, original, fallback)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(worker.run())
        got = await read_all(kafka_broker, fallback, 1, expect=2)
        await wait_until(
            lambda: worker.stats.committed >= 2,
            within=30,
            what=lambda: f"committed {worker.stats.committed}",
        )
        worker.stop()
    assert task.exception() is None
    assert [g.id for g in got] == ["kept", "after"]
    assert (await committed_offsets(kafka_broker, f"{original}-g", original, 1))[0] >= 3


async def test_the_fallback_lag_skips_a_partition_the_group_never_committed_as_the_workload_would(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    """The hand-back's drain waits for the workload group's lag on the fallback. 30 records
    over 3 partitions; the group committed partition 0 to its end, partition 1 to 2 of its
    10, partition 2 never. With ``auto.offset.reset`` latest (the default) the workload
    would start partition 2 at its end: the drain waits only for partition 1 and reports
    partition 2 as skipped (before: its lag counted from 0 and the drain could wait
    forever). With ``earliest`` it waits for partition 2 from its start too."""
    fallback, group = f"{unique_name}-fb", f"{unique_name}-g"
    await create_topics(kafka_broker, 3, fallback)
    records = make_records(30, 3, ["bob"])
    for record in records:  # one at a time: Tansu lists a wrong end after a batched produce
        await produce(kafka_broker, fallback, [record])
    sizes = {p: sum(1 for r in records if r.partition == p) for p in range(3)}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_broker.bootstrap, group_id=group, enable_auto_commit=False
    )
    consumer.assign([TopicPartition(fallback, p) for p in range(3)])
    await consumer.start()
    try:
        await consumer.commit(
            {
                TopicPartition(fallback, 0): OffsetAndMetadata(sizes[0], ""),
                TopicPartition(fallback, 1): OffsetAndMetadata(2, ""),
            }
        )
    finally:
        await consumer.stop()
    clients = clients_for(kafka_broker)
    latest = await fallback_lag(
        clients, fallback=fallback, group_id=group, partitions=3, idle_ms=500
    )
    assert latest.waiting == {1: (2, sizes[1])}
    assert latest.skipped == {2: (0, sizes[2])}
    earliest = await fallback_lag(
        clients,
        fallback=fallback,
        group_id=group,
        partitions=3,
        idle_ms=500,
        reset="earliest",
    )
    assert earliest.waiting == {1: (2, sizes[1]), 2: (0, sizes[2])}
    assert earliest.skipped == {}
