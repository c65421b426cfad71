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


async def test_a_partly_full_batch_goes_the_moment_its_linger_ends(
    sqs_endpoint: SqsEndpoint, unique_name: str
) -> None:
    """No flusher runs: 3 messages for one destination still go, in one batch, once their
    linger is over (a timer per batch, not a flusher tick that adds up to another linger)."""
    async with client_for(sqs_endpoint) as client:
        source = await make_queue(client, f"{unique_name}-src")
        target = await make_queue(client, f"{unique_name}-dst")
        await client.send_batch(source, [{"Id": str(i), "MessageBody": f"m{i}"} for i in range(3)])
        stats = SqsWorkerStats()
        async with asyncio.TaskGroup() as tg:
            forwarding = pipeline(tg, client, stats, SqsSettings(linger=0.2), fifo=False)
            received = []
            while len(received) < 3:
                await forwarding.reserve(10)
                got = await client.receive(source, wait_seconds=1)
                forwarding.unreserve(10 - len(got))
                received += got
            forwarding.submit(source, received, Router((), target))
            assert stats.send_batches == 0  # waiting for its linger
            arrived: list[str] = []
            while len(arrived) < 3:
                arrived += [m["Body"] for m in await client.receive(target, wait_seconds=1)]
            assert sorted(arrived) == ["m0", "m1", "m2"]
            assert await forwarding.wait_idle(within=10)
        assert (stats.send_batches, stats.send_entries) == (1, 3)
        assert stats.deleted == 3


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
