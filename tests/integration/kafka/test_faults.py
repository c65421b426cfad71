"""The delivery guarantees under injected faults, on real brokers (noida-db and Tansu).

Faults come from :class:`tests.faults.kafka_proxy.KafkaProxy`, a TCP proxy in front
of the real broker that stalls or cuts connections on command (it rewrites the
advertised address, so clients stay on it after bootstrap). The guarantees
checked: 0 lost, 0 misrouted, order per partition kept (first occurrences),
duplicates within the documented bound (one batch per in-flight fetch per fault),
a failed forward never committed past, SIGTERM honoured within the flush bound
whatever the worker is doing, and an interrupted hand-back resumed by the next
start.

Every wait is on an event or on measured progress (the worker's counters, the
proxy's frame count, the records read back); the bounds passed to ``wait_until``
only turn a hang into a failure.

Broker quirks met here (docs/testing.md, "Kafka broker quirks"): Tansu lists a
wrong end offset after a batched produce (the checks read back until idle or
until the expected count, never to a listed end); noida-db needs
``session_timeout_ms >= 6000`` (``group_timeouts``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from splitter.kafka.clients import KafkaClients
from splitter.kafka.forwarding import Forwarder
from splitter.kafka.membership import recorded_hand_back
from splitter.kafka.properties import translate_properties
from splitter.kafka.settings import KafkaSettings
from splitter.kafka.worker import KafkaSplitWorker, KafkaWorkerIdentity, KafkaWorkerStats
from splitter.routing import SessionRoute
from tests.faults.kafka_proxy import KafkaProxy
from tests.integration.kafka.support import (
    WORKLOAD_PROPERTIES,
    Got,
    Sent,
    committed_offsets,
    create_topics,
    list_topics,
    make_records,
    produce,
    read_all,
    route,
    wait_until,
    worker_consumer_overrides,
)
from tests.servers.kafka import KafkaBroker

pytestmark = pytest.mark.integration

PARTITIONS = 2
FETCH_MAX_RECORDS = 50
#: A produce request held by a stalled proxy fails after this (ms): the fault shows fast.
REQUEST_TIMEOUT_MS = 1500


def clients(bootstrap: str, **properties: str) -> KafkaClients:
    return KafkaClients(
        translate_properties({"bootstrap.servers": bootstrap, **WORKLOAD_PROPERTIES, **properties})
    )


class ForwardsThroughProxy(KafkaClients):
    """Reads straight from the broker, forwards through the proxy (a stall hits only
    forwards already started: records read, not yet acknowledged)."""

    def __init__(self, broker: KafkaBroker, proxy: KafkaProxy) -> None:
        direct = clients(broker.bootstrap)
        super().__init__(direct.options)
        self._proxied = clients(proxy.bootstrap, **{"request.timeout.ms": str(REQUEST_TIMEOUT_MS)})

    def forwarder(self, *, max_record_bytes: int | None = None, **overrides: Any) -> Forwarder:
        return self._proxied.forwarder(max_record_bytes=max_record_bytes, **overrides)


def worker_for(
    broker: KafkaBroker,
    kafka_clients: KafkaClients,
    topic: str,
    fallback: str,
    *routes: SessionRoute,
    hand_back_file: Path | None = None,
    **settings: Any,
) -> KafkaSplitWorker:
    identity = KafkaWorkerIdentity(
        topic=topic, group_id=f"{topic}-g", fallback_topic=fallback, hand_back_file=hand_back_file
    )
    tuned = KafkaSettings.model_validate(
        {
            "commit_interval": 0.1,
            "fetch_max_records": FETCH_MAX_RECORDS,
            "forward_retry_backoff": 0.2,
            "forward_retry_backoff_max": 1.0,
            **settings,
        }
    )
    return KafkaSplitWorker(
        kafka_clients, identity, tuned, routes, consumer_overrides=worker_consumer_overrides(broker)
    )


def first_occurrences(got: list[Got]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    seen: set[str] = set()
    for g in sorted(got, key=lambda g: (g.partition, g.offset)):
        if g.id not in seen:
            seen.add(g.id)
            out.setdefault(g.partition, []).append(g.id)
    return out


def check_guarantees(sent: list[Sent], got: list[Got], *, duplicates_at_most: int) -> int:
    """0 lost, order per partition kept, duplicates bounded; returns the duplicates."""
    assert {g.id for g in got} == {r.id for r in sent}, "lost or foreign records"
    for partition, ids in first_occurrences(got).items():
        assert ids == sorted(ids), f"partition {partition} out of order"
        assert all(int(i[1:]) % PARTITIONS == partition for i in ids), "wrong partition"
    duplicates = sum(n - 1 for n in Counter(g.id for g in got).values())
    assert duplicates <= duplicates_at_most
    return duplicates


async def committed_total(broker: KafkaBroker, topic: str) -> int:
    return sum((await committed_offsets(broker, f"{topic}-g", topic, PARTITIONS)).values())


async def topics(broker: KafkaBroker, name: str, *suffixes: str) -> list[str]:
    """Topics ``name`` and ``<name>-<suffix>`` for each suffix, created (PARTITIONS each)."""
    names = [name, *(f"{name}-{suffix}" for suffix in suffixes)]
    await create_topics(broker, PARTITIONS, *names)
    return names


@contextlib.asynccontextmanager
async def proxy_for(broker: KafkaBroker) -> AsyncIterator[KafkaProxy]:
    host, port = broker.bootstrap.rsplit(":", 1)
    async with KafkaProxy(int(port), host) as proxy:
        yield proxy


def forwarding_through(
    broker: KafkaBroker,
    proxy: KafkaProxy,
    topic: str,
    fallback: str,
    *,
    retry_after: float | None = None,
) -> KafkaSplitWorker:
    """A worker that reads from the broker and forwards through ``proxy``; with
    ``retry_after``, a failed forward is retried after that long (the backoff and its
    maximum), else after the tests' default backoff."""
    backoff: dict[str, Any] = {}
    if retry_after is not None:
        backoff = {"forward_retry_backoff": retry_after, "forward_retry_backoff_max": retry_after}
    return worker_for(broker, ForwardsThroughProxy(broker, proxy), topic, fallback, **backoff)


async def committed(worker: KafkaSplitWorker, count: int) -> None:
    """Until ``worker`` committed ``count`` records."""
    await wait_until(
        lambda: worker.stats.committed >= count,
        within=60,
        what=lambda: f"committed {worker.stats.committed}",
    )


async def stalled_after(
    broker: KafkaBroker,
    proxy: KafkaProxy,
    worker: KafkaSplitWorker,
    first: list[Sent],
    second: list[Sent],
    *,
    stuck: Callable[[KafkaWorkerStats], bool],
) -> None:
    """``first`` produced to the worker's topic and committed; then the forwarder's proxy
    stalls and ``second`` is produced; until both were read and ``stuck(worker.stats)``."""
    topic = worker.identity.topic
    await produce(broker, topic, first)
    await committed(worker, len(first))
    proxy.stall()
    await produce(broker, topic, second)
    await wait_until(
        lambda: stuck(worker.stats) and worker.stats.read >= len(first) + len(second),
        within=60,
        what=lambda: f"stats {worker.stats}",
    )


def all_partitions_failing(stats: KafkaWorkerStats) -> bool:
    return stats.failing == PARTITIONS


async def test_a_failed_forward_holds_the_commit_and_is_sent_again_until_it_is_acknowledged(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    """Steps: 40 records are forwarded and committed. The proxy in front of the
    forwarder stalls; 40 more are read and their forwards time out (the worker
    counts and reports the failure, and keeps running). While they fail, the
    group's commit stays at 40 - nothing at or after a failed offset is committed.
    The proxy resumes: the worker sends them again by itself, every record arrives
    (order kept, duplicates at most the stalled batch), and the commit reaches 80.
    Before: the failure was raised out of the committer and the worker died."""
    original, fallback = await topics(kafka_broker, unique_name, "fb")
    async with proxy_for(kafka_broker) as proxy:
        worker = forwarding_through(kafka_broker, proxy, original, fallback)
        first, second = (
            make_records(40, PARTITIONS, ["a"]),
            make_records(40, PARTITIONS, ["b"], start=40),
        )
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(worker.run())
            await stalled_after(
                kafka_broker, proxy, worker, first, second, stuck=lambda s: s.forward_failures >= 1
            )
            assert not task.done()
            assert worker.stats.failing >= 1
            assert "failed" in worker.stats.last_forward_error
            assert await committed_total(kafka_broker, original) == 40
            proxy.resume()
            got = await read_all(kafka_broker, fallback, PARTITIONS, expect=80, within=90)
            await committed(worker, 80)
            worker.stop()
        assert task.exception() is None
    check_guarantees(first + second, got, duplicates_at_most=len(second))
    assert await committed_total(kafka_broker, original) == 80
    assert worker.stats.failing == 0


async def test_records_read_while_a_forward_fails_wait_behind_it_and_order_holds(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    """Steps: 20 records are forwarded and committed. The forwarder's proxy stalls;
    20 more are read and their forwards time out (both partitions stuck at a failed
    record). The proxy cuts its connections (the stalled requests are dropped: those
    records really are not forwarded) and resumes; 20 more arrive at once, while the
    failed ones still wait for their retry's backoff. Checked: per partition, the records read
    during the backoff reach the fallback only after the failed ones (first
    occurrences in offset order), nothing lost, duplicates at most the stalled 20.
    Before: records read during the backoff were forwarded at once and landed
    before the failed records' retry - the partition's order broke."""
    original, fallback = await topics(kafka_broker, unique_name, "fb")
    first, second, third = (
        make_records(20, PARTITIONS, ["a"]),
        make_records(20, PARTITIONS, ["b"], start=20),
        make_records(20, PARTITIONS, ["c"], start=40),
    )
    async with proxy_for(kafka_broker) as proxy:
        # The retry waits well past the resume: the third batch is read meanwhile.
        worker = forwarding_through(kafka_broker, proxy, original, fallback, retry_after=8.0)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(worker.run())
            await stalled_after(
                kafka_broker, proxy, worker, first, second, stuck=all_partitions_failing
            )
            proxy.cut()  # the stalled requests never reach the broker
            proxy.resume()
            await produce(kafka_broker, original, third)
            await wait_until(
                lambda: worker.stats.read >= 60, within=60, what=lambda: f"stats {worker.stats}"
            )
            # The premise: the third batch was read while both partitions wait to retry.
            assert worker.stats.failing == PARTITIONS, "the retries came before the third batch"
            # Committed: every record forwarded and acknowledged (read back after, until
            # idle: the stalled batch may be there twice).
            await committed(worker, 60)
            worker.stop()
        got = await read_all(kafka_broker, fallback, PARTITIONS)
        assert task.exception() is None
    check_guarantees(first + second + third, got, duplicates_at_most=len(second))
    assert worker.stats.failing == 0


async def test_a_stop_while_a_forward_fails_commits_up_to_it_and_the_next_worker_forwards_it(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    """Steps: 30 records are forwarded and committed; the forwarder's proxy stalls;
    30 more are read and fail. The worker is stopped (SIGTERM's path): its last
    commit - the revocation/shutdown commit that used to jump past a failed
    record - stays at 30. The proxy resumes, a new worker of the group reads the 30
    again from there and forwards them: nothing is lost."""
    original, fallback = await topics(kafka_broker, unique_name, "fb")
    first, second = (
        make_records(30, PARTITIONS, ["a"]),
        make_records(30, PARTITIONS, ["b"], start=30),
    )
    async with proxy_for(kafka_broker) as proxy:
        # No retry during the test: the stop comes first.
        worker = forwarding_through(kafka_broker, proxy, original, fallback, retry_after=30.0)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(worker.run())
            # Both partitions stuck at a failed record (else an in-flight forward could
            # still succeed after the resume below, and its commit rightly move on).
            await stalled_after(
                kafka_broker, proxy, worker, first, second, stuck=all_partitions_failing
            )
            worker.stop()
            proxy.resume()  # the producer's close may send what it still holds
        assert task.exception() is None
        assert await committed_total(kafka_broker, original) == 30

    successor = worker_for(kafka_broker, clients(kafka_broker.bootstrap), original, fallback)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(successor.run())
        got = await read_all(kafka_broker, fallback, PARTITIONS, expect=60, within=90)
        await committed(successor, 30)
        successor.stop()
    assert task.exception() is None
    check_guarantees(first + second, got, duplicates_at_most=len(second))
    assert await committed_total(kafka_broker, original) == 60


async def test_connections_cut_mid_stream_lose_and_misroute_nothing_and_keep_order(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    """Steps: the whole worker (consumer, committer, forwarder, admin) talks through
    the proxy; 300 records are produced in chunks straight to the broker. Every
    time the worker has read 60 more, the proxy cuts every connection (3 cuts).
    Checked: alice's records all in her topic, the rest all in the fallback, order
    per partition kept, duplicates at most one fetched batch per cut per partition."""
    original, fallback, alice = await topics(kafka_broker, unique_name, "fb", "alice")
    sent = make_records(300, PARTITIONS, ["alice", "bob", "carol"])
    async with proxy_for(kafka_broker) as proxy:
        worker = worker_for(
            kafka_broker,
            clients(proxy.bootstrap),
            original,
            fallback,
            route("alice", 1, alice, user="^alice$"),
        )
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(worker.run())
            for i in range(0, len(sent), 30):
                await produce(kafka_broker, original, sent[i : i + 30])
                # Paced by progress: the worker has read this chunk (a cut re-reads some).
                await wait_until(
                    lambda i=i: worker.stats.read >= i + 30,
                    within=60,
                    what=lambda: f"read {worker.stats.read}",
                )
                if i + 30 in (60, 150, 240):
                    proxy.cut()
            assert proxy.cuts == 3
            want_alice = [r for r in sent if dict(r.headers)["user"] == b"alice"]
            rest = [r for r in sent if r not in want_alice]
            got_alice = await read_all(
                kafka_broker, alice, PARTITIONS, expect=len(want_alice), within=90
            )
            got_rest = await read_all(
                kafka_broker, fallback, PARTITIONS, expect=len(rest), within=90
            )
            worker.stop()
        assert task.exception() is None
    bound = max(proxy.cuts, 1) * FETCH_MAX_RECORDS * PARTITIONS
    duplicates = check_guarantees(want_alice, got_alice, duplicates_at_most=bound)
    duplicates += check_guarantees(rest, got_rest, duplicates_at_most=bound)
    assert duplicates <= bound


async def test_sigterm_during_the_hand_back_wait_returns_in_bound_and_the_next_start_resumes(
    kafka_broker: KafkaBroker, unique_name: str, tmp_path: Path
) -> None:
    """Steps: alice's session ends (the sessions list becomes empty): the worker hands
    the topic back and waits for the workload to drain the fallback (no drain
    timeout; the workload is not reading, so it waits). Stop (SIGTERM's path) must
    return within the flush bound - it used to wait forever. The hand-back file
    still says a hand-back is under way. A new worker started with no sessions
    (what a restarted process reads) resumes it: it does not consume the original,
    moves the fallback's records back to the original (drain timeout 0), deletes
    the fallback and forgets the hand-back."""
    original, fallback, alice = await topics(kafka_broker, unique_name, "fb", "alice")
    sent = make_records(20, PARTITIONS, ["alice", "bob"])
    await produce(kafka_broker, original, sent)
    state = tmp_path / "hand-back.json"
    kafka = clients(kafka_broker.bootstrap)
    worker = worker_for(
        kafka_broker,
        kafka,
        original,
        fallback,
        route("alice", 1, alice, user="^alice$"),
        hand_back_file=state,
    )
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(worker.run())
        await read_all(kafka_broker, fallback, PARTITIONS, expect=10)
        worker.set_routes([])
        await wait_until(
            lambda: worker.stats.lag >= 10, within=60, what=lambda: f"lag {worker.stats.lag}"
        )
        stopped = time.monotonic()
        worker.stop()
        async with asyncio.timeout(worker.settings.flush_timeout):
            await asyncio.shield(task)
        took = time.monotonic() - stopped
    assert task.exception() is None
    assert took < worker.settings.flush_timeout
    recorded = recorded_hand_back(state)
    assert recorded is not None
    assert recorded.fallback == fallback
    assert fallback in await list_topics(kafka_broker)
    committed = await committed_total(kafka_broker, original)

    resumed = worker_for(
        kafka_broker, kafka, original, fallback, hand_back_file=state, drain_timeout=0
    )
    async with asyncio.timeout(120):
        await resumed.run()
    assert resumed.stats.read == 0  # it never consumed the original again
    # The fallback held bob's 10 and alice's 10 her session's end routed there.
    assert resumed.stats.returned == 20
    assert recorded_hand_back(state) is None
    assert fallback not in await list_topics(kafka_broker)
    assert await committed_total(kafka_broker, original) == committed
    back = await read_all(kafka_broker, original, PARTITIONS, expect=40)
    assert Counter(g.id for g in back) == Counter([r.id for r in sent] * 2)


async def test_sigterm_during_a_session_end_returns_in_bound_and_the_next_start_finishes_it(
    kafka_broker: KafkaBroker, unique_name: str, tmp_path: Path
) -> None:
    """Steps: the worker talks through the proxy; alice's session topic holds 10
    records her process never consumed. The proxy stalls, then her session ends
    (the last one): the session end hangs reading her topic. Stop must return
    within the flush bound (it used to wait for the session end forever). The
    proxy resumes; a new worker started with no sessions finds the session end and
    the hand-back recorded, routes alice's leftovers to the fallback, deletes her
    topic and hands the topic back."""
    original, fallback, alice = await topics(kafka_broker, unique_name, "fb", "alice")
    leftovers = make_records(10, PARTITIONS, ["alice"])
    await produce(kafka_broker, alice, leftovers)
    state = tmp_path / "hand-back.json"
    async with proxy_for(kafka_broker) as proxy:
        worker = worker_for(
            kafka_broker,
            clients(proxy.bootstrap),
            original,
            fallback,
            route("alice", 1, alice, user="^alice$"),
            hand_back_file=state,
            flush_timeout=5.0,
        )
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(worker.run())
            await wait_until(
                lambda: len(worker._ledgers) == PARTITIONS,
                within=60,
                what=lambda: "the worker never got its partitions",
            )
            proxy.stall()
            worker.set_routes([])
            recorded = recorded_hand_back(state)
            assert recorded is not None
            assert recorded.ended_topics == (alice,)
            frames = proxy.frames
            stopped = time.monotonic()
            worker.stop()
            async with asyncio.timeout(worker.settings.flush_timeout * 2):
                await asyncio.shield(task)
            took = time.monotonic() - stopped
        assert proxy.frames == frames  # nothing passed: the end could not have finished
        assert task.exception() is None
        assert took < worker.settings.flush_timeout * 2
        proxy.resume()
    assert alice in await list_topics(kafka_broker)

    resumed = worker_for(
        kafka_broker,
        clients(kafka_broker.bootstrap),
        original,
        fallback,
        hand_back_file=state,
        drain_timeout=0,
    )
    async with asyncio.timeout(120):
        await resumed.run()
    assert resumed.stats.rerouted == 10
    assert alice not in await list_topics(kafka_broker)
    assert recorded_hand_back(state) is None
    back = await read_all(kafka_broker, original, PARTITIONS, expect=10)
    assert sorted(g.id for g in back) == sorted(r.id for r in leftovers)
