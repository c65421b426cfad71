"""Concurrent session ends on real servers (moto and LocalStack).

Sessions that end together are ended ``sqs.session_end_concurrency`` at a time
(observed through :attr:`~splitter.sqs.worker.SqsSplitWorker.most_ending` and the
``ending`` count the worker logs when an end starts), and every guarantee of a
one-at-a-time end still holds: nothing lost, every leftover routed again in
session-start order through the sessions still active - never to a session that
is ending too - else the fallback; an end waits for what is still in flight; a
worker killed with SIGKILL during concurrent ends leaves them to the next worker
process, which resumes them all at once; the hand-back after the last session
waits for every end.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from splitter.sqs.client import Message, SqsClient
from splitter.sqs.split import SqsSplit
from tests.integration.sqs.support import (
    FALLBACK,
    Outgoing,
    Reader,
    attribute,
    client_for,
    drain,
    gone,
    make_queue,
    mid_of,
    process_env,
    route,
    running,
    send,
    start_worker,
    temporary,
    wait_for,
    wait_moving,
    worker_settings,
    write_sessions,
)
from tests.servers.sqs import SqsEndpoint as ServerEndpoint

pytestmark = pytest.mark.integration

#: The active sessions' filters: "both" matches both, and must go to k1 (started first).
K1_FILTER = {"user": "^(k1|both)$"}
K2_FILTER = {"user": "^(k2|both)$"}


@pytest.fixture
async def sqs(sqs_endpoint: ServerEndpoint) -> AsyncIterator[SqsClient]:
    async with client_for(sqs_endpoint) as client:
        yield client


def user_of(message: Message) -> str:
    return str(message["MessageAttributes"]["user"]["StringValue"])


def leftovers(queue: int, ending: int, users: Sequence[str]) -> list[Outgoing]:
    """What waits in ending session ``e{queue}``'s queue: one message per user in ``users``
    (``own`` = e{queue}'s own user, ``other`` = the next ending session's user)."""
    names = {"own": f"e{queue}", "other": f"e{(queue + 1) % ending}"}
    return [
        Outgoing(f"q{queue}-{n:02d}-{user}", {"user": attribute(names.get(user, user))})
        for n, user in enumerate(users)
    ]


def expected_label(user: str, active: Sequence[str]) -> str:
    """Where a message of ``user`` must land with ``active`` sessions k1 (first), k2."""
    if user in ("k1", "both") and "k1" in active:
        return "k1"
    if user in ("k2", "both") and "k2" in active:
        return "k2"
    return FALLBACK


def check_routed(
    got: dict[str, list[Message]], sent: Sequence[Outgoing], active: Sequence[str]
) -> Counter[str]:
    """Every message sent arrived, only where its user routes among ``active``; returns
    the copies per mid (a duplicate is counted, a misroute or a loss fails)."""
    users = {m.mid: m.attributes["user"]["StringValue"] for m in sent}
    copies: Counter[str] = Counter()
    misrouted = []
    for label, messages in got.items():
        for message in messages:
            mid = mid_of(message)
            copies[mid] += 1
            if label != expected_label(users[mid], active):
                misrouted.append((mid, label))
    assert not misrouted, f"misrouted (mid, where): {misrouted}"
    assert set(copies) == set(users), f"lost: {sorted(set(users) - set(copies))}"
    return copies


@pytest.mark.parametrize("concurrency", [8, 3])
async def test_sessions_ended_at_once_end_concurrently_routing_leftovers_only_to_active_ones(
    sqs: SqsClient, unique_name: str, concurrency: int
) -> None:
    """1. Six sessions e0..e5 (one ``user`` each) and two that stay, k1 (started first)
       and k2; each e-queue holds 12 leftovers: its own user's, the next e-session's
       (which ends too), k1's, k2's, ``both`` (k1 and k2 match: k1 comes first) and
       nobody's;
    2. all six are removed in one change, while new messages for them keep coming to
       the original;
    3. min(6, ``session_end_concurrency``) ends are under way at once, never more;
    4. every e-queue is deleted; each message arrived exactly once, and only where
       the remaining sessions route it: the ending sessions' users and nobody's to the
       fallback, ``k1``/``both`` to k1, ``k2`` to k2."""
    ending = 6
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    k1_q = await temporary(sqs, original, "k1")
    k2_q = await temporary(sqs, original, "k2")
    e_queues = [await temporary(sqs, original, f"e{i}") for i in range(ending)]
    e_routes = [route(f"e{i}", i + 1, q, {"user": f"^e{i}$"}) for i, q in enumerate(e_queues)]
    k1 = route("k1", 20, k1_q, K1_FILTER)
    k2 = route("k2", 21, k2_q, K2_FILTER)
    users = ["own", "other", "k1", "k2", "both", "nobody"] * 2
    sent = [m for i in range(ending) for m in leftovers(i, ending, users)]
    settings = worker_settings(session_end_concurrency=concurrency)
    split = SqsSplit(original, fallback)
    async with running(sqs, split, [*e_routes, k1, k2], settings) as (worker, _task):
        for i, queue in enumerate(e_queues):
            await send(sqs, queue, sent[i * len(users) : (i + 1) * len(users)])
        seen: set[int] = set()

        async def sample() -> None:
            while True:
                seen.add(len(worker.ending))
                await asyncio.sleep(0.01)

        sampling = asyncio.create_task(sample())
        worker.set_routes([k1, k2])
        late = [Outgoing(f"late-{i}", {"user": attribute(f"e{i}")}) for i in range(ending)]
        await send(sqs, original, late)
        sent += late
        try:
            for queue in e_queues:
                await wait_moving(
                    f"the ended session's queue {queue} to be deleted",
                    lambda queue=queue: gone(sqs, queue),
                    lambda: worker.stats.deleted,
                )
        finally:
            sampling.cancel()
        assert worker.most_ending == min(ending, concurrency)
        assert max(seen) <= concurrency
        assert max(seen) > 1, f"never more than one end under way: {seen}"
        assert worker.ending == []
        got = await drain(sqs, {FALLBACK: fallback, "k1": k1_q, "k2": k2_q}, expect=len(sent))
        assert worker.stats.rerouted == ending * len(users)
    copies = check_routed(got, sent, ["k1", "k2"])
    assert all(n == 1 for n in copies.values()), copies
    assert Counter(len(v) for v in got.values()) == Counter(
        # fallback: own, other, nobody (x2 each per queue) + late; k1: k1 + both; k2: k2
        {ending * 6 + ending: 1, ending * 4: 1, ending * 2: 1}
    )


def log_events(log: Path, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of ``log`` whose event is ``event``."""
    found = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == event:
            found.append(record)
    return found


async def test_a_worker_killed_during_concurrent_ends_leaves_them_all_to_the_next_process(
    sqs: SqsClient, sqs_endpoint: ServerEndpoint, unique_name: str, tmp_path: Path
) -> None:
    """``pymirror worker sqs`` as a process:

    1. four sessions e0..e3 and k1 (started first of all); each e-queue holds 10
       leftovers (k1's, nobody's, its own and the next e-session's users); a consumer
       takes 2 of each e-queue with a 900 s visibility timeout and holds them;
    2. the four are removed from the sessions file: the worker logs four ends under
       way at once, routes the 32 visible leftovers and waits for the 8 held;
    3. it is killed with SIGKILL: every e-queue is kept;
    4. a new worker process (k1 only) resumes the four ends - again all under way at
       once; the consumer gives the 8 back; the four queues are deleted;
    5. every message arrived, only where k1 routes it (the e-users to the fallback,
       never to another ending session); SIGTERM ends the new worker with exit 0."""
    ending = 4
    original = await make_queue(sqs, unique_name, VisibilityTimeout="5")
    fallback = await temporary(sqs, original)
    k1_q = await temporary(sqs, original, "k1")
    e_queues = [await temporary(sqs, original, f"e{i}") for i in range(ending)]
    sessions = tmp_path / "sessions.json"
    k1 = {"id": "k1", "sequence": 1, "queue": k1_q, "message_filter": K1_FILTER}
    e_entries = [
        {"id": f"e{i}", "sequence": i + 2, "queue": q, "message_filter": {"user": f"^e{i}$"}}
        for i, q in enumerate(e_queues)
    ]
    write_sessions(sessions, [k1, *e_entries])
    users = ["k1", "nobody", "own", "other", "both"] * 2
    sent = [m for i in range(ending) for m in leftovers(i, ending, users)]
    for i, queue in enumerate(e_queues):
        await send(sqs, queue, sent[i * len(users) : (i + 1) * len(users)])
    readers = {FALLBACK: Reader(fallback), "k1": Reader(k1_q)}
    reading = [asyncio.create_task(r.run(sqs)) for r in readers.values()]
    env = process_env(sqs_endpoint, PYMIRROR_SQS__DRAIN_POLL="0.2")
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_worker(
        sqs_endpoint, original, fallback, sessions, first_log, "--wait-seconds", "1", env=env
    )
    second = None

    def taken() -> int:
        return sum(len(r.taken) for r in readers.values())

    try:
        await wait_for(
            "the first worker to start",
            lambda: log_events(first_log, "sqs split worker started") or first.poll() is not None,
            within=60,
        )
        assert first.poll() is None, first_log.read_text()[-3000:]
        held: list[tuple[str, Message]] = []
        for queue in e_queues:
            mine: list[Message] = []
            while len(mine) < 2:
                mine += await sqs.receive(
                    queue, max_messages=2 - len(mine), wait_seconds=1, visibility_timeout=900
                )
            held += [(queue, m) for m in mine]
        write_sessions(sessions, [k1])
        visible = len(sent) - len(held)
        await wait_moving(
            f"the {visible} visible leftovers to be routed",
            lambda: taken() >= visible or first.poll() is not None,
            taken,
        )
        assert first.poll() is None, first_log.read_text()[-3000:]
        starts = log_events(first_log, "sqs session end started")
        assert sorted(s["session"] for s in starts) == [f"e{i}" for i in range(ending)]
        assert max(s["ending"] for s in starts) == ending
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert not log_events(first_log, "sqs session ended")
        for queue in e_queues:
            assert not await gone(sqs, queue), f"{queue} was deleted holding 2 in flight"
        second = start_worker(
            sqs_endpoint, original, fallback, sessions, second_log, "--wait-seconds", "1", env=env
        )
        await wait_for(
            "the second worker to resume the four ends",
            lambda: (
                len(log_events(second_log, "sqs session end started")) >= ending
                or second.poll() is not None
            ),
            within=60,
        )
        for queue in e_queues:
            mine = [m for q, m in held if q == queue]
            result = await sqs.change_visibility_batch(
                queue, [(str(i), m["ReceiptHandle"]) for i, m in enumerate(mine)], 0
            )
            assert not result.failed
        for queue in e_queues:
            await wait_moving(
                lambda queue=queue: f"{queue} to be deleted (exit code {second.poll()})",
                lambda queue=queue: second.poll() is not None or gone(sqs, queue),
                taken,
            )
        assert second.poll() is None, second_log.read_text()[-3000:]
        await wait_moving(
            "every message at its destination",
            lambda: len({mid for r in readers.values() for mid, _at in r.taken}) >= len(sent),
            taken,
        )
        resumed = log_events(second_log, "sqs resuming an unfinished session end")
        assert sorted(r["session"] for r in resumed) == [f"e{i}" for i in range(ending)]
        starts = log_events(second_log, "sqs session end started")
        assert max(s["ending"] for s in starts) == ending
        assert len(log_events(second_log, "sqs session ended")) == ending
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, second_log.read_text()[-3000:]
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        for reader in readers.values():
            reader.stop.set()
        await asyncio.wait_for(asyncio.gather(*reading), 30)
    copies = check_routed({k: r.messages for k, r in readers.items()}, sent, ["k1"])
    # A copy beyond one only for what the killed worker had forwarded but not yet deleted.
    assert sum(copies.values()) - len(copies) <= len(sent), copies


async def test_the_hand_back_after_concurrent_last_ends_waits_for_every_end(
    sqs: SqsClient, unique_name: str
) -> None:
    """1. Five sessions, each queue holding 8 leftovers (its own user's and the next
       session's); all five end in one change - the last sessions;
    2. the five ends run at once; their leftovers go to the fallback (no session is
       left), where the workload reads them;
    3. the hand-back starts only once every end finished: the worker returns with the
       queue handed back, every session queue and the fallback deleted, and the
       workload got each leftover exactly once."""
    ending = 5
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    e_queues = [await temporary(sqs, original, f"e{i}") for i in range(ending)]
    e_routes = [route(f"e{i}", i + 1, q, {"user": f"^e{i}$"}) for i, q in enumerate(e_queues)]
    users = ["own", "other"] * 4
    sent = [m for i in range(ending) for m in leftovers(i, ending, users)]
    for i, queue in enumerate(e_queues):
        await send(sqs, queue, sent[i * len(users) : (i + 1) * len(users)])
    workload = Reader(fallback)
    reading = asyncio.create_task(workload.run(sqs))
    try:
        async with running(sqs, SqsSplit(original, fallback), e_routes) as (worker, task):
            worker.set_routes([])
            await wait_moving(
                "the hand-back", lambda: worker.handed_back.is_set(), lambda: len(workload.taken)
            )
            await asyncio.wait_for(task, 30)
            assert worker.most_ending == ending
            assert worker.stats.rerouted == len(sent)
    finally:
        workload.stop.set()
        await asyncio.wait_for(reading, 30)
    for queue in [*e_queues, fallback]:
        assert await gone(sqs, queue), f"{queue} is left"
    assert Counter(mid_of(m) for m in workload.messages) == Counter({m.mid: 1 for m in sent})
