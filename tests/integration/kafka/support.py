"""Helpers for the Kafka split tests: topics, producing, reading back, a workload consumer.

Test-side code talks to the brokers with aiokafka directly, so a bug in
splitter/kafka/ (the adapter) cannot hide itself in the checks. Records carry a unique
``id`` header; the checks compare ids, keys, partitions and order.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from splitter.filters import FilterSpec, compile_filter
from splitter.kafka.clients import KafkaClients
from splitter.kafka.properties import translate_properties
from splitter.routing import SessionRoute
from tests.servers.kafka import KafkaBroker, group_timeouts


@dataclass(frozen=True)
class Sent:
    """One record as produced by a test."""

    id: str
    partition: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


@dataclass(frozen=True)
class Got:
    """One record as read back."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    @property
    def id(self) -> str:
        return dict(self.headers)["id"].decode()


#: The workload most tests model reads a partition its group never committed from the
#: start (records are produced before the worker joins); the worker does what the
#: workload does, so the tests say so. Tests of the default (latest) pass ``{}``.
WORKLOAD_PROPERTIES = {"auto.offset.reset": "earliest"}


def clients_for(broker: KafkaBroker, properties: dict[str, str] | None = None) -> KafkaClients:
    props = WORKLOAD_PROPERTIES if properties is None else properties
    return KafkaClients(translate_properties({"bootstrap.servers": broker.bootstrap, **props}))


def worker_consumer_overrides(broker: KafkaBroker) -> dict[str, Any]:
    return dict(group_timeouts(broker.kind))


async def create_topics(broker: KafkaBroker, partitions: int, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def committed_offsets(
    broker: KafkaBroker, group: str, topic: str, partitions: int
) -> dict[int, int]:
    """The group's committed offset per partition (partitions without one left out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def list_topics(broker: KafkaBroker) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


def make_records(
    count: int, partitions: int, users: Sequence[str], *, start: int = 0
) -> list[Sent]:
    """Records with id/user headers, keys, explicit partitions and JSON values."""
    records = []
    # Recent timestamps: brokers enforce retention.ms on CreateTime (noida deletes
    # records older than 7 days at once).
    base_ms = int(time.time() * 1000) - 60_000
    for i in range(start, start + count):
        user = users[i % len(users)]
        headers = (("id", f"r{i:06d}".encode()), ("user", user.encode()))
        value = json.dumps({"n": i, "user": user}).encode()
        key = f"k{i % 13}".encode() if i % 5 else None
        records.append(Sent(f"r{i:06d}", i % partitions, key, value, headers, base_ms + i))
    return records


async def produce(broker: KafkaBroker, topic: str, records: Iterable[Sent]) -> None:
    """Pipelined produce (acks=all); every record acknowledged on return."""
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False, linger_ms=2
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                r.value,
                key=r.key,
                partition=r.partition,
                headers=list(r.headers),
                timestamp_ms=r.timestamp_ms,
            )
            for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(
    broker: KafkaBroker,
    topic: str,
    partitions: int,
    *,
    expect: int | None = None,
    within: float = 30.0,
    idle: float = 1.0,
) -> list[Got]:
    """Every record of ``topic`` from the start: until ``expect`` are read, else until idle."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    await consumer.start()
    got: list[Got] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within

    def keep(batch: dict[TopicPartition, list[Any]]) -> None:
        for tp, records in batch.items():
            got.extend(
                Got(tp.topic, tp.partition, r.offset, r.key, r.value, tuple(r.headers), r.timestamp)
                for r in records
            )

    try:
        quiet_since = loop.time()
        # Always fetch at least once (aiokafka 0.14 cannot stop a consumer
        # whose background task never ran: the stop raises CancelledError).
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            keep(batch)
            if expect is not None and len(got) >= expect:
                # Anything beyond the expected count would be a duplicate: look briefly.
                keep(await consumer.getmany(timeout_ms=300))
                break
            if batch:
                quiet_since = loop.time()
            elif expect is None and loop.time() - quiet_since > idle:
                break
    finally:
        await consumer.stop()
    return got


def route(
    session: str, sequence: int, destination: str, mode: str = "steal", **filters: str
) -> SessionRoute:
    spec = FilterSpec(message_filter=filters, mode=mode)  # type: ignore[arg-type]
    return SessionRoute(session, sequence, compile_filter(spec), destination)


def per_partition(records: Iterable[Got | Sent]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for r in records:
        out.setdefault(r.partition, []).append(r.id)
    return out


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    within: float,
    what: Callable[[], str],
    interval: float = 0.1,
) -> None:
    """Poll ``check`` until it is true; fail with ``what()`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"not within {within} s: {what()}")
        await asyncio.sleep(interval)


def worker_argv(
    broker: KafkaBroker, topic: str, group: str, fallback: str, sessions: Path, *extra: str
) -> list[str]:
    """``pymirror worker kafka`` as a subprocess command line, with the broker's test
    group timeouts."""
    timeouts = group_timeouts(broker.kind)
    return [
        sys.executable,
        "-m",
        "pymirror",
        "--log-format",
        "json",
        "worker",
        "kafka",
        "--topic",
        topic,
        "--group-id",
        group,
        "--fallback-topic",
        fallback,
        "--sessions-file",
        str(sessions),
        "--property",
        f"bootstrap.servers={broker.bootstrap}",
        "--property",
        f"session.timeout.ms={timeouts['session_timeout_ms']}",
        "--property",
        f"heartbeat.interval.ms={timeouts['heartbeat_interval_ms']}",
        *(f"--property={name}={value}" for name, value in WORKLOAD_PROPERTIES.items()),
        *extra,
    ]
