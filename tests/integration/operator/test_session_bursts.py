"""Many sessions of one split created or deleted at once: few QueueSplit writes.

The whole operator (``controller.build``, its default ``reconcile_workers``) runs in
this test's event loop with the local runtime running the meme app and the split
worker, on the real test API server and moto. An anchor session makes the split (its
rollout is not part of the burst); then ``BURST`` sessions are created at once, and
deleted at once. The operator reconciles that many sessions at the same time, and its
``SplitWriter`` folds the route changes that wait while a write is under way into the
next write, so the burst's routes go in and out in a few writes, counted as the
QueueSplit's ``metadata.generation`` (one per spec write), not by timing. With 4
reconciles at a time (the operator's earlier fixed number) one write carried at most 4
changes, and the first of a burst goes alone: at least ``1 + ceil((BURST - 1) / 4)``
(7) writes, more than ``MAX_LEAVE_WRITES``. The joins reach their route write less
together (each plans, records and creates its queue first), so their bound is looser.
"""

from __future__ import annotations

import asyncio

import pytest

from registry.objects import Obj
from tests.integration.operator.support import (
    Cluster,
    gone,
    meme_app,
    session_body,
    settled,
    watch_session,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BURST = 24
#: At most this many spec writes remove the burst's routes (4 at a time: 7 or more;
#: measured: 2).
MAX_LEAVE_WRITES = 4
#: At most this many spec writes add them (measured: 4 to 6).
MAX_JOIN_WRITES = 8
#: No session's lease lapses during the test (nobody renews).
LEASE = 900


def route_sessions(split: Obj) -> list[str]:
    return [str(r["session"]) for r in split["spec"].get("routes") or ()]


def queue_names(split: Obj) -> set[str]:
    return {str(r["name"]) for r in (split.get("status") or {}).get("temporaryResources") or ()}


async def test_a_burst_of_sessions_joins_and_leaves_one_split_in_a_few_writes(
    cluster: Cluster,
) -> None:
    await meme_app(cluster.kube, cluster.sqs, cluster.namespace)
    sessions = cluster.sessions
    async with cluster.operating():
        await sessions.create(session_body("anchor", lease=LEASE))
        anchor = await settled(sessions, "anchor")
        assert anchor["status"]["phase"] == "Ready", anchor["status"]
        (queue,) = anchor["status"]["queues"]
        split = str(queue["split"])
        before = (await cluster.queue_splits.get(split))["metadata"]["generation"]

        names = [f"dev{i:02d}" for i in range(BURST)]
        await asyncio.gather(*(sessions.create(session_body(n, lease=LEASE)) for n in names))
        ready = await asyncio.gather(*(settled(sessions, n) for n in names))
        assert [s["status"]["phase"] for s in ready] == ["Ready"] * BURST
        joined = await cluster.queue_splits.get(split)
        routed = route_sessions(joined)  # in start order: the anchor first
        assert routed[0] == f"{cluster.namespace}/anchor"
        assert sorted(routed[1:]) == [f"{cluster.namespace}/{n}" for n in names]
        temporary = {str(s["status"]["queues"][0]["temporary"]) for s in ready}
        assert temporary <= queue_names(joined)
        join_writes = joined["metadata"]["generation"] - before
        assert 1 <= join_writes <= MAX_JOIN_WRITES

        await asyncio.gather(*(sessions.delete(n) for n in names))
        await asyncio.gather(*(watch_session(sessions, n, gone) for n in names))
        left = await cluster.queue_splits.get(split)
        assert route_sessions(left) == [f"{cluster.namespace}/anchor"]
        assert not temporary & queue_names(left)
        leave_writes = left["metadata"]["generation"] - joined["metadata"]["generation"]
        assert 1 <= leave_writes <= MAX_LEAVE_WRITES
        remaining = {url.rpartition("/")[2] for url in await cluster.sqs.list_queues("")}
        assert not temporary & remaining
