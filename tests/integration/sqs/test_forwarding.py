"""The forwarding pipeline on a real server: messages held long keep their receipt handles."""

from __future__ import annotations

import asyncio

import pytest

from splitter.routing import Router
from splitter.sqs.client import SqsClient
from splitter.sqs.forwarding import Forwarding
from splitter.sqs.settings import SqsSettings
from splitter.sqs.stats import SqsWorkerStats
from tests.integration.sqs.support import client_for, make_queue
from tests.servers.sqs import SqsEndpoint

pytestmark = pytest.mark.integration


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
            forwarding = Forwarding(
                client,
                lambda coro, name: tg.create_task(coro, name=name),
                fifo=False,
                stats=stats,
                settings=SqsSettings(linger=30.0),  # nothing is sent until flushed
            )
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
