"""Kafka split worker throughput, one run, one broker, ratios against baselines of the same run.

1. The split worker (``KafkaSplitWorker``: header routing through the
   ``Router``, pipelined ``acks=all`` forwards, commit after acknowledgement)
   vs a raw pipe written directly on aiokafka with the same client settings
   and the same fan-out: consume a batch, look the destination up in a dict
   by the ``user`` header, ``send`` every record (pipelined), commit the
   acknowledged prefix at the same interval. At 1, 10 and 100 sessions; half
   of the records match a session, half go to the fallback. Goals: ratio
   >= 0.90 at 10 sessions, >= 0.85 at 100. (The worker appends a record
   straight to the producer's open batch, where the raw pipe pays aiokafka's
   ``send`` per record: the worker may well come out faster.)
2. The worker vs a one-record-at-a-time loop (``send_and_wait`` per record,
   ``linger_ms=0`` so the loop is not penalised by batching it cannot use,
   commit per batch). Goal >= 10x.

Each rate is records/s from the first record read to the last offset
committed (group joins are not timed), best of the rounds, worker and raw
alternating. The broker is started here (noida-db by default, ``--broker
tansu`` for the other). ``--quick`` (10 and 100 sessions, fewer records) finishes
within about a minute; the last line is ``ratio kafka_throughput_10 <value>``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from splitter.filters import FilterSpec, compile_filter
from splitter.kafka.clients import KafkaClients
from splitter.kafka.properties import translate_properties
from splitter.kafka.settings import KafkaSettings
from splitter.kafka.worker import KafkaSplitWorker, KafkaWorkerIdentity
from splitter.routing import SessionRoute
from tests.servers.kafka import KafkaBroker, group_timeouts, start_kafka

PARTITIONS = 3
FETCH_MAX_RECORDS = 500
COMMIT_INTERVAL = 0.2
# The worker's forwarder settings (KafkaClients.forwarder), used by the raw pipe too.
PRODUCER = {"acks": "all", "linger_ms": 5, "enable_idempotence": False}


def users_for(sessions: int) -> list[str]:
    """Twice as many users as sessions: u0..u{S-1} have a session, the rest fall back."""
    return [f"u{i}" for i in range(2 * sessions)]


async def create_topics(broker: KafkaBroker, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        for i in range(0, len(names), 50):
            await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names[i : i + 50]])
    finally:
        await admin.close()


async def fill(broker: KafkaBroker, topic: str, count: int, users: list[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, **{**PRODUCER, "linger_ms": 20})
    await producer.start()
    try:
        value = b"x" * 200
        futures = []
        for i in range(count):
            headers = [("id", str(i).encode()), ("user", users[i % len(users)].encode())]
            futures.append(
                await producer.send(
                    topic,
                    value,
                    key=str(i % 97).encode(),
                    partition=i % PARTITIONS,
                    headers=headers,
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def consumer_for(broker: KafkaBroker, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=FETCH_MAX_RECORDS,
        **group_timeouts(broker.kind),
    )


async def run_worker(
    broker: KafkaBroker, topic: str, count: int, destinations: dict[str, str], fallback: str
) -> float:
    routes = [
        SessionRoute(
            user,
            i,
            compile_filter(FilterSpec({"user": f"^{user}$"}), where=user),
            destination,
        )
        for i, (user, destination) in enumerate(destinations.items())
    ]
    identity = KafkaWorkerIdentity(topic=topic, group_id=f"{topic}-worker", fallback_topic=fallback)
    settings = KafkaSettings(fetch_max_records=FETCH_MAX_RECORDS, commit_interval=COMMIT_INTERVAL)
    # Like the raw pipe: a workload that reads a never-committed partition from the start.
    properties = {"bootstrap.servers": broker.bootstrap, "auto.offset.reset": "earliest"}
    clients = KafkaClients(translate_properties(properties))
    worker = KafkaSplitWorker(
        clients, identity, settings, routes, consumer_overrides=dict(group_timeouts(broker.kind))
    )
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(worker.run(), name="worker")
        while not worker.stats.read:  # the group join is not timed
            if task.done():
                break
            await asyncio.sleep(0.002)
        started = time.perf_counter()
        while worker.stats.committed < count:
            if task.done():
                break
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - started
        worker.stop()
    assert worker.stats.committed == count, worker.stats
    return count / elapsed


async def run_raw(
    broker: KafkaBroker, topic: str, count: int, destinations: dict[str, str], fallback: str
) -> float:
    """consume -> dict lookup -> pipelined send -> commit the acknowledged prefix."""
    consumer = consumer_for(broker, topic, f"{topic}-raw")
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, **PRODUCER)
    await producer.start()
    await consumer.start()
    by_user = {user.encode(): destination for user, destination in destinations.items()}
    # Per partition: (offset after the record, its forward future), in offset order.
    pending: dict[TopicPartition, deque[tuple[int, Any]]] = {}
    committed = 0
    done_offsets: dict[TopicPartition, int] = {}
    base: dict[TopicPartition, int] = {}
    started = None

    async def commit() -> int:
        offsets = {}
        for tp, queue in pending.items():
            while queue and queue[0][1].done():
                done_offsets[tp] = queue.popleft()[0]
            if tp in done_offsets:
                offsets[tp] = OffsetAndMetadata(done_offsets[tp], "")
        if offsets:
            await consumer.commit(offsets)
        return sum(o.offset - base[tp] for tp, o in offsets.items())

    async def commit_loop() -> None:
        # The worker's schedule: the acknowledged prefix every COMMIT_INTERVAL.
        nonlocal committed
        while True:
            await asyncio.sleep(COMMIT_INTERVAL)
            committed = await commit()

    try:
        async with asyncio.TaskGroup() as tg:
            committer = tg.create_task(commit_loop())
            while committed < count:
                batch = await consumer.getmany(timeout_ms=100, max_records=FETCH_MAX_RECORDS)
                if batch and started is None:
                    started = time.perf_counter()
                for tp, records in batch.items():
                    queue = pending.setdefault(tp, deque())
                    base.setdefault(tp, records[0].offset)
                    for r in records:
                        user = next((v for k, v in r.headers if k == "user"), None)
                        destination = by_user.get(user, fallback) if user else fallback
                        future = await producer.send(
                            destination,
                            r.value,
                            key=r.key,
                            partition=tp.partition,
                            headers=list(r.headers),
                            timestamp_ms=r.timestamp,
                        )
                        queue.append((r.offset + 1, future))
            elapsed = time.perf_counter() - (started or 0.0)
            committer.cancel()
    finally:
        await consumer.stop()
        await producer.stop()
    return count / elapsed


async def run_one_at_a_time(
    broker: KafkaBroker, topic: str, count: int, destinations: dict[str, str], fallback: str
) -> float:
    """send_and_wait per record, commit per batch."""
    consumer = consumer_for(broker, topic, f"{topic}-slow")
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0, enable_idempotence=False
    )
    await producer.start()
    await consumer.start()
    by_user = {user.encode(): destination for user, destination in destinations.items()}
    done = 0
    started = None
    try:
        while done < count:
            batch = await consumer.getmany(timeout_ms=100, max_records=FETCH_MAX_RECORDS)
            if batch and started is None:
                started = time.perf_counter()
            for tp, records in batch.items():
                for r in records:
                    user = next((v for k, v in r.headers if k == "user"), None)
                    destination = by_user.get(user, fallback) if user is not None else fallback
                    await producer.send_and_wait(
                        destination,
                        r.value,
                        key=r.key,
                        partition=tp.partition,
                        headers=list(r.headers),
                        timestamp_ms=r.timestamp,
                    )
                    done += 1
            if batch:
                await consumer.commit()
        elapsed = time.perf_counter() - (started or 0.0)
    finally:
        await consumer.stop()
        await producer.stop()
    return count / elapsed


async def scenario(
    broker: KafkaBroker, sessions: int, count: int, rounds: int
) -> tuple[float, float]:
    """Best worker and raw rates at ``sessions`` sessions."""
    prefix = f"b{uuid.uuid4().hex[:8]}"
    users = users_for(sessions)
    destinations = {u: f"{prefix}-s-{u}" for u in users[:sessions]}
    fallback = f"{prefix}-fallback"
    await create_topics(broker, [*destinations.values(), fallback])
    best = {"worker": 0.0, "raw": 0.0}
    for r in range(rounds):
        order = ("worker", "raw") if r % 2 == 0 else ("raw", "worker")
        for kind in order:
            topic = f"{prefix}-{kind}-{r}"
            await create_topics(broker, [topic])
            await fill(broker, topic, count, users)
            run = run_worker if kind == "worker" else run_raw
            best[kind] = max(best[kind], await run(broker, topic, count, destinations, fallback))
    return best["worker"], best["raw"]


async def baseline(broker: KafkaBroker, sessions: int, count: int) -> float:
    prefix = f"b{uuid.uuid4().hex[:8]}"
    users = users_for(sessions)
    destinations = {u: f"{prefix}-s-{u}" for u in users[:sessions]}
    fallback = f"{prefix}-fallback"
    topic = f"{prefix}-slow"
    await create_topics(broker, [*destinations.values(), fallback, topic])
    await fill(broker, topic, count, users)
    return await run_one_at_a_time(broker, topic, count, destinations, fallback)


async def bench(broker: KafkaBroker, quick: bool) -> float:
    levels = [10, 100] if quick else [1, 10, 100]
    count = 50_000 if quick else 80_000
    rounds = 4 if quick else 5
    print(f"broker {broker.kind}, {PARTITIONS} partitions, {count} records of 200 bytes per run")
    print(f"{'sessions':>8} {'worker rec/s':>13} {'raw rec/s':>11} {'ratio':>6}")
    ratios = {}
    worker_rates = {}
    for sessions in levels:
        worker, raw = await scenario(broker, sessions, count, rounds)
        ratios[sessions] = worker / raw
        worker_rates[sessions] = worker
        print(f"{sessions:>8} {worker:>13,.0f} {raw:>11,.0f} {worker / raw:>6.2f}")
    slow = await baseline(broker, 10, 1_000 if quick else 3_000)
    print(f"one-at-a-time send_and_wait loop (10 sessions): {slow:,.0f} rec/s")
    print(f"ratio kafka_worker_vs_send_and_wait_10 {worker_rates[10] / slow:.1f}")
    for sessions in levels:
        if sessions != 10:
            print(f"ratio kafka_throughput_{sessions} {ratios[sessions]:.2f}")
    return ratios[10]


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 and 100 sessions, about a minute")
    parser.add_argument("--broker", choices=["noida", "tansu"], default="noida")
    args = parser.parse_args()
    running = start_kafka(args.broker, f"bench-{args.broker}")
    try:
        ratio = asyncio.run(bench(running.broker, args.quick))
    finally:
        running.stop()
    print(f"ratio kafka_throughput_10 {ratio:.2f}")


if __name__ == "__main__":
    main()
