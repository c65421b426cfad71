"""Temporary topics on real brokers: named by the format, shaped like the original.

Broker quirks met here (docs/testing.md, "Kafka broker quirks", and measured): Tansu 0.6 reports
every DescribeConfigs entry as a default (source 5) but lists only the
configs set on the topic, so ``KafkaAdmin.topic_configs`` takes a short
answer without any topic-sourced entry as the topic's own configs. noida-db
creates a topic that a Metadata request names, so a missing original must be
found missing without naming it in a Metadata request - the test checks the
topic list is unchanged afterwards.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from splitter.errors import KafkaTopicError
from splitter.kafka.topics import create_temporary_topic
from splitter.naming import DEFAULT_KAFKA_TOPIC_FORMAT, NameFormat
from tests.integration.kafka.support import clients_for, list_topics
from tests.servers.kafka import KafkaBroker

pytestmark = pytest.mark.integration

FORMAT = NameFormat(DEFAULT_KAFKA_TOPIC_FORMAT, "kafka")


async def test_temporary_topics_copy_partitions_and_topic_configs_of_the_original(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    original = f"{unique_name}.views"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    try:
        configs = {"retention.ms": "7200000", "max.message.bytes": "524288"}
        await admin.create_topics([NewTopic(original, 4, 1, topic_configs=configs)])
    finally:
        await admin.close()

    async with clients_for(kafka_broker).admin() as kafka:
        fallback = await create_temporary_topic(kafka, original, FORMAT, fallback=True)
        session = await create_temporary_topic(
            kafka, original, FORMAT, fallback=False, spec=fallback.spec
        )
        assert re.fullmatch(rf"mirrord-tmp-\d{{10}}-fallback-{re.escape(original)}", fallback.name)
        assert re.fullmatch(rf"mirrord-tmp-\d{{10}}-{re.escape(original)}", session.name)
        for topic in (fallback.name, session.name):
            assert await kafka.partitions(topic) == 4
            got = await kafka.topic_configs(topic)
            assert {k: got.get(k) for k in configs} == configs, got
        await kafka.delete_topic(session.name)
        await kafka.delete_topic(session.name)  # already gone: fine
    assert session.name not in await list_topics(kafka_broker)


async def test_a_missing_original_is_an_error_and_nothing_is_created(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    before = set(await list_topics(kafka_broker))
    async with clients_for(kafka_broker).admin() as kafka:
        with pytest.raises(KafkaTopicError, match=f"topic '{unique_name}' does not exist"):
            await create_temporary_topic(kafka, unique_name, FORMAT, fallback=True)
    assert set(await list_topics(kafka_broker)) == before


async def test_temporary_topics_copy_the_replication_factor_capped_by_the_live_brokers(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    """Was: every temporary topic got replication factor 1 next to a copied
    min.insync.replicas. The spec now carries the original's replication factor and a
    temporary topic gets it, capped by the live brokers (one here), or the configured
    one, capped the same way."""
    original = f"{unique_name}.orders"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(original, 2, 1, topic_configs={"min.insync.replicas": "1"})]
        )
    finally:
        await admin.close()
    async with clients_for(kafka_broker).admin() as kafka:
        spec = await kafka.spec_of(original)
        assert spec.replication == 1
        assert spec.configs.get("min.insync.replicas") == "1"
        assert await kafka.live_brokers() == 1
        wants_three = replace(spec, replication=3)  # an original on three brokers
        fallback = await create_temporary_topic(
            kafka, original, FORMAT, fallback=True, spec=wants_three
        )
        assert fallback.spec.replication == 1  # one live broker
        configured = await create_temporary_topic(
            kafka, original, FORMAT, fallback=False, spec=wants_three, replication=2
        )
        assert configured.spec.replication == 1
        for topic in (fallback.name, configured.name):
            assert (await kafka.spec_of(topic)).replication == 1
            await kafka.delete_topic(topic)


async def test_partition_counts_of_many_topics_take_two_requests_and_create_nothing(
    kafka_broker: KafkaBroker, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker with 100 sessions checks its 102 topics at each assignment: one list and
    # one describe, not two requests per topic (204 metadata answers slowed its first
    # second at 100 sessions by a third).
    topics = {f"{unique_name}.t{i}": 1 + i % 3 for i in range(12)}
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, n, 1) for t, n in topics.items()])
    finally:
        await admin.close()
    missing = f"{unique_name}.missing"
    before = set(await list_topics(kafka_broker))
    sent: list[str] = []
    original = AIOKafkaAdminClient._send_request

    async def counting(self: AIOKafkaAdminClient, request: object, *args: object) -> object:
        sent.append(type(request).__name__)
        return await original(self, request, *args)  # type: ignore[arg-type]

    async with clients_for(kafka_broker).admin() as kafka:
        monkeypatch.setattr(AIOKafkaAdminClient, "_send_request", counting)
        counts = await kafka.partition_counts([*topics, missing])
    assert counts == topics
    assert len(sent) == 2, sent
    assert set(await list_topics(kafka_broker)) == before  # the missing one not created
