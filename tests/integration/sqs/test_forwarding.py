"""The forwarding pipeline on a real server: messages held long keep their receipt handles."""

from __future__ import annotations

import asyncio

import pytest

from splitter.routing import Router
from splitter.sqs.client import SqsClient
from splitter.sqs.forwarding import Forwarding
from splitter.sqs.settings import SqsSettings
from splitter.sqs.stats import SqsWorkerStats
from tests.integration.sqs.support import client_for, make_queue, wait_for
from tests.servers.sqs import SqsEndpoint

pytestmark = pytest.mark.integration


def pipeline(
    tg: asyncio.TaskGroup,
    client: SqsClient,
    stats: SqsWorkerStats,
    settings: SqsSettings,
    *,
    fifo: bool,
) -> Forwarding:
    """A forwarding pipeline whose tasks run in ``tg``."""
    return Forwarding(
        client,
        lambda coro, name: tg.create_task(coro, name=name),
        fifo=fifo,
        stats=stats,
        settings=settings,
    )


async def test_messages_held_past_their_visibility_timeout_are_kept_invisible(
    sqs_endpoint: SqsEndpoint, unique_name: str
) -> None:
    """Receive 5 messages with a 2 s visibility timeout and hold their forwards for 5 s
    (a linger far longer than the timeout, as a throttled destination would): the keeper
    restarts their timeouts, so no other receive sees them meanwhile, and afterwards all
    5 are forwarded and deleted with their original receipt handles (none expired)."""
    client: SqsClient
    async with client_for(sqs_endpoint) as client:
        source = await make_queue(client, f"{unique_name}-src")
        target = await make_queue(client, f"{unique_name}-dst")
        await client.send_batch(source, [{"Id": str(i), "MessageBody": f"m{i}"} for i in range(5)])
        stats = SqsWorkerStats()
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            # A linger of 30 s: nothing is sent until flushed.
            forwarding = pipeline(tg, client, stats, SqsSettings(linger=30.0), fifo=False)
            keeper = tg.create_task(forwarding.run_keeper(stop, visibility=2))
            received = []
            while len(received) < 5:
                await forwarding.reserve(10)
                got = await client.receive(source, wait_seconds=1, visibility_timeout=2)
                forwarding.unreserve(10 - len(got))
                received += got
                forwarding.submit(source, got, Router((), target))
            await asyncio.sleep(5)
            assert await client.receive(source, wait_seconds=0) == []
            assert stats.extended >= 5
            assert await forwarding.wait_idle(within=10)
            stop.set()
            await keeper
        assert stats.deleted == 5
        assert stats.delete_failed == 0
        assert sorted(m["Body"] for m in await client.receive(target, wait_seconds=1)) == [
            f"m{i}" for i in range(5)
        ]


@pytest.mark.parametrize(
    ("count", "linger", "waits"),
    [(6, 0.2, True), (2, 0.4, False)],
    ids=["busy-waits-its-linger", "quiet-goes-at-once"],
)
async def test_a_partly_full_batch_waits_its_linger_only_if_another_entry_is_expected(
    sqs_endpoint: SqsEndpoint, unique_name: str, count: int, linger: float, waits: bool
) -> None:
    """No flusher runs. 6 messages for one destination with a 0.2 s linger (1.2 more entries
    expected within it at that rate): the batch waits, and still goes, whole, the moment its
    linger is over (a timer per batch, not a flusher tick that adds up to another linger).
    2 messages with a 0.4 s linger (0.8 expected, less than one): the submit itself sends
    them; waiting would add latency and most likely save no call."""
    async with client_for(sqs_endpoint) as client:
        source = await make_queue(client, f"{unique_name}-src")
        target = await make_queue(client, f"{unique_name}-dst")
        bodies = [f"m{i}" for i in range(count)]
        await client.send_batch(source, [{"Id": b, "MessageBody": b} for b in bodies])
        stats = SqsWorkerStats()
        async with asyncio.TaskGroup() as tg:
            forwarding = pipeline(tg, client, stats, SqsSettings(linger=linger), fifo=False)
            received = await receive_all(client, forwarding, source, count)
            forwarding.submit(source, received, Router((), target))
            assert len(sending_to(target)) == (0 if waits else 1)
            arrived: list[str] = []
            while len(arrived) < count:
                arrived += [m["Body"] for m in await client.receive(target, wait_seconds=1)]
            assert sorted(arrived) == bodies
            assert await forwarding.wait_idle(within=10)
        assert (stats.send_batches, stats.send_entries, stats.deleted) == (1, count, count)


async def receive_all(
    client: SqsClient, forwarding: Forwarding, source: str, count: int
) -> list[dict[str, object]]:
    """Receive ``count`` messages from ``source``, reserved in ``forwarding`` as a worker does."""
    received: list[dict[str, object]] = []
    while len(received) < count:
        await forwarding.reserve(10)
        got = await client.receive(source, wait_seconds=1)
        forwarding.unreserve(10 - len(got))
        received += got
    return received


def sending_to(destination: str) -> list[asyncio.Task[object]]:
    """The forwarding's send tasks to ``destination`` under way."""
    return [t for t in asyncio.all_tasks() if t.get_name() == f"send->{destination}"]


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
async def test_deletes_wait_delete_linger_on_a_standard_queue_and_not_on_fifo(
    sqs_endpoint: SqsEndpoint, unique_name: str, fifo: bool
) -> None:
    """A forwarded message's delete waits ``delete_linger`` for more entries on a standard
    queue (it is invisible meanwhile and its forward is done: no latency); on FIFO an
    undeleted message would hold back its group, so there it goes after ``linger``."""
    suffix = ".fifo" if fifo else ""
    async with client_for(sqs_endpoint) as client:
        source = await make_queue(client, f"{unique_name}-src{suffix}")
        target = await make_queue(client, f"{unique_name}-dst{suffix}")
        group = {"MessageGroupId": "g", "MessageDeduplicationId": "d"} if fifo else {}
        await client.send_batch(source, [{"Id": "0", "MessageBody": "m0", **group}])
        stats = SqsWorkerStats()
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            forwarding = pipeline(
                tg, client, stats, SqsSettings(linger=0.02, delete_linger=600.0), fifo=fifo
            )
            flusher = tg.create_task(forwarding.run_flusher(stop))
            got: list[dict[str, object]] = []
            while not got:
                await forwarding.reserve(10)
                got = await client.receive(source, wait_seconds=1)
                forwarding.unreserve(10 - len(got))
            forwarding.submit(source, got, Router((), target))
            while not await client.receive(target, wait_seconds=1):
                pass
            if fifo:
                # The flusher deletes it after linger.
                await wait_for("the delete", lambda: stats.deleted >= 1)
            else:
                await asyncio.sleep(0.5)  # 25 flusher ticks: the delete still waits
                assert stats.deleted == 0
                assert sum(await client.counts(source)) == 1  # in flight, not deleted
                forwarding.flush()
                assert await forwarding.wait_idle(within=10)
            stop.set()
            await flusher
        assert stats.deleted == 1
        assert sum(await client.counts(source)) == 0
