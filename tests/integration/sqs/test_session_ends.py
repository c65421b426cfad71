"""Session ends on real servers (moto and LocalStack): what happens to a session's queue.

A ``mirror`` session's leftovers are copies and are dropped; an end waits for
messages still in flight or delayed and deletes only an empty queue, never
giving up and keeping it; an end a stop interrupted is finished by the next
worker (it finds the queue by pymirror's tags); only queues pymirror made for
the split are drained or deleted, the others refused naming the queue.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from splitter.errors import NotOursError
from splitter.sqs.client import SqsClient
from splitter.sqs.split import SqsSplit
from splitter.sqs.worker import SqsSplitWorker
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


@pytest.fixture
async def sqs(sqs_endpoint: ServerEndpoint) -> AsyncIterator[SqsClient]:
    async with client_for(sqs_endpoint) as client:
        yield client


def alice_messages(count: int, prefix: str = "m") -> list[Outgoing]:
    return [Outgoing(f"{prefix}{n:03d}", {"user": attribute("alice")}) for n in range(count)]


async def test_a_mirror_sessions_leftovers_are_dropped_at_its_end_not_routed_again(
    sqs: SqsClient, unique_name: str
) -> None:
    """1. A ``mirror`` session watches alice's messages: each goes to the fallback and a
       copy to the watcher's queue, which nobody reads;
    2. the mirror session ends while bob's session stays;
    3. its queue is deleted, and the fallback holds each message exactly once - the
       copies were not routed a second time to the fallback."""
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    watch_q = await temporary(sqs, original, "watch", mode="mirror")
    bob_q = await temporary(sqs, original, "bob")
    watch = route("watch", 1, watch_q, {"user": "^alice$"}, mode="mirror")
    bob = route("bob", 2, bob_q, {"user": "^bob$"})
    sent = alice_messages(30)
    async with running(sqs, SqsSplit(original, fallback), [watch, bob]) as (worker, _task):
        await send(sqs, original, sent)
        await wait_for("every forward", lambda: worker.stats.deleted >= len(sent), within=60)
        assert worker.stats.forwarded["watch"] == len(sent)
        worker.set_routes([bob])
        await wait_for("the mirror queue to be deleted", lambda: gone(sqs, watch_q), within=60)
        got = await drain(sqs, {FALLBACK: fallback}, expect=len(sent))
        assert worker.stats.rerouted == 0
    copies = Counter(mid_of(m) for m in got[FALLBACK])
    assert copies == Counter({m.mid: 1 for m in sent})


async def test_a_session_end_waits_for_held_and_delayed_messages_and_survives_a_stop(
    sqs: SqsClient, unique_name: str
) -> None:
    """1. 30 of alice's messages wait in her queue; her consumer takes 10 with a
       900 s visibility timeout and holds them; one more is sent to her queue with a
       5 s delay;
    2. her session ends (bob's stays): the worker routes the 20 visible ones to the
       fallback and then waits - her queue is not empty (10 in flight, 1 delayed);
    3. the worker is stopped during that wait: her queue is kept, not deleted;
    4. a new worker starts with only bob's session; it finds her queue (tagged by
       pymirror, routed to, no longer a session) and resumes the end;
    5. her consumer gives the 10 back (visibility 0): they are routed, the delayed
       one too once due, and only then is her queue deleted;
    6. the fallback holds all 31 exactly once.
    """
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, "alice")
    bob_q = await temporary(sqs, original, "bob")
    alice = route("alice", 1, alice_q, {"user": "^alice$"})
    bob = route("bob", 2, bob_q, {"user": "^bob$"})
    sent = alice_messages(30)
    settings = worker_settings(session_end_warn_after=0.5)
    split = SqsSplit(original, fallback)
    async with running(sqs, split, [alice, bob], settings) as (worker, task):
        await send(sqs, original, sent)
        await wait_for("every forward", lambda: worker.stats.deleted >= len(sent), within=60)
        held = []
        while len(held) < 10:
            held += await sqs.receive(
                alice_q, max_messages=10 - len(held), wait_seconds=1, visibility_timeout=900
            )
        late = Outgoing("late", {"user": attribute("alice")}).entry("0")
        assert not (await sqs.send_batch(alice_q, [{**late, "DelaySeconds": 5}])).failed
        worker.set_routes([bob])
        await wait_moving(
            "the 20 visible leftovers to be routed",
            lambda: worker.stats.deleted >= len(sent) + 20,
            lambda: worker.stats.deleted,
        )
        assert not task.done()
        worker.stop()
        await asyncio.wait_for(task, settings.shutdown_grace + 10)
    assert not await gone(sqs, alice_q), "the end gave up and deleted a queue still holding 11"
    async with running(sqs, split, [bob], settings) as (second, _task):
        result = await sqs.change_visibility_batch(
            alice_q, [(str(i), m["ReceiptHandle"]) for i, m in enumerate(held)], 0
        )
        assert not result.failed
        await wait_moving(
            "alice's queue to be emptied and deleted",
            lambda: gone(sqs, alice_q),
            lambda: second.stats.deleted,
        )
        assert second.stats.rerouted == 11
        got = await drain(sqs, {FALLBACK: fallback}, expect=len(sent) + 1)
    copies = Counter(mid_of(m) for m in got[FALLBACK])
    assert copies == Counter({**{m.mid: 1 for m in sent}, "late": 1})


async def test_a_fallback_pymirror_did_not_make_is_refused_at_start_and_left_untouched(
    sqs: SqsClient, unique_name: str
) -> None:
    """A mistyped fallback - a real queue of someone else's - would be drained and
    deleted at the hand-back: the worker refuses to start, naming the queue and the
    fix, before it receives anything; the queue keeps its message."""
    original = await make_queue(sqs, unique_name)
    theirs = await make_queue(sqs, unique_name + "-payments")
    await send(sqs, theirs, [Outgoing("theirs")])
    await send(sqs, original, [Outgoing("waiting")])
    worker = SqsSplitWorker(sqs, SqsSplit(original, theirs), worker_settings())
    with pytest.raises(NotOursError, match=r"refusing the fallback .*payments.*Check the queue"):
        await worker.run()
    assert await sqs.counts(theirs) == (1, 0, 0)
    assert await sqs.counts(original) == (1, 0, 0)


async def test_a_session_naming_a_queue_pymirror_did_not_make_is_rejected_and_the_others_kept(
    sqs: SqsClient, unique_name: str
) -> None:
    """At start a session naming a real queue is refused with an error naming it; a
    session added later that names one is dropped by ``vet_routes`` (logged) while the
    other sessions are kept; ending it never drains or deletes that queue."""
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, "alice")
    theirs = await make_queue(sqs, unique_name + "-orders-prod")
    await send(sqs, theirs, [Outgoing("theirs")])
    alice = route("alice", 1, alice_q, {"user": "^alice$"})
    wrong = route("bob", 2, theirs, {"user": "^bob$"})
    split = SqsSplit(original, fallback)
    with pytest.raises(NotOursError, match=r"refusing session 'bob': .*orders-prod"):
        await SqsSplitWorker(sqs, split, worker_settings(), [alice, wrong]).run()
    async with running(sqs, split, [alice]) as (worker, _task):
        kept = await worker.vet_routes([alice, wrong])
        assert kept == [alice]
        worker.set_routes([alice, wrong])  # a source that skips vet_routes
        worker.set_routes([alice])  # bob's end must not touch that queue
        await send(sqs, original, [Outgoing("a1", {"user": attribute("alice")})])
        await wait_for("alice's forward", lambda: worker.stats.deleted >= 1)
        await worker._ended.join()
    assert await sqs.counts(theirs) == (1, 0, 0)


async def test_a_worker_killed_during_a_session_end_leaves_it_to_the_next_worker_process(
    sqs: SqsClient, sqs_endpoint: ServerEndpoint, unique_name: str, tmp_path: Path
) -> None:
    """``pymirror worker sqs`` as a process; the queues' visibility timeout is 5 s:

    1. 30 of alice's messages are forwarded to her queue; her consumer takes 10 with
       a 900 s visibility timeout and holds them;
    2. her session is removed from the sessions file: the worker routes the 20
       visible ones to the fallback and waits for the 10 held;
    3. the worker is killed with SIGKILL during that wait;
    4. a new worker process starts with the same sessions file (bob only); her
       consumer gives the 10 back; the new worker finds her queue (pymirror's tags,
       routed to, no longer a session), routes them and deletes it;
    5. the fallback got all 30 (copies beyond one at most the messages the killed
       worker held); SIGTERM ends the new worker with exit 0."""
    original = await make_queue(sqs, unique_name, VisibilityTimeout="5")
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, "alice")
    bob_q = await temporary(sqs, original, "bob")
    sessions = tmp_path / "sessions.json"
    log = tmp_path / "worker.log"
    entries = [
        {"id": "alice", "sequence": 1, "queue": alice_q, "message_filter": {"user": "^alice$"}},
        {"id": "bob", "sequence": 2, "queue": bob_q, "message_filter": {"user": "^bob$"}},
    ]
    write_sessions(sessions, entries)
    sent = alice_messages(30)
    reader = Reader(fallback)
    reading = asyncio.create_task(reader.run(sqs))
    env = process_env(sqs_endpoint, PYMIRROR_SQS__DRAIN_POLL="0.2")
    first = start_worker(
        sqs_endpoint, original, fallback, sessions, log, "--wait-seconds", "1", env=env
    )
    second = None
    try:
        await send(sqs, original, sent)

        async def in_alice() -> int:
            return (await sqs.counts(alice_q))[0]

        visible = 0

        async def all_in_alice() -> bool:
            nonlocal visible
            visible = await in_alice()
            return visible >= len(sent) or first.poll() is not None

        await wait_moving("alice's queue to fill", all_in_alice, lambda: visible)
        assert first.poll() is None, log.read_text()[-3000:]
        held = []
        while len(held) < 10:
            held += await sqs.receive(
                alice_q, max_messages=10 - len(held), wait_seconds=1, visibility_timeout=900
            )
        write_sessions(sessions, entries[1:])
        await wait_moving(
            "the 20 visible leftovers to reach the fallback",
            lambda: len(reader.taken) >= 20 or first.poll() is not None,
            lambda: len(reader.taken),
        )
        assert first.poll() is None, log.read_text()[-3000:]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert not await gone(sqs, alice_q)
        second = start_worker(
            sqs_endpoint, original, fallback, sessions, log, "--wait-seconds", "1", env=env
        )
        result = await sqs.change_visibility_batch(
            alice_q, [(str(i), m["ReceiptHandle"]) for i, m in enumerate(held)], 0
        )
        assert not result.failed
        await wait_moving(
            lambda: f"alice's queue to be deleted (worker exit code {second.poll()})",
            lambda: second.poll() is not None or gone(sqs, alice_q),
            lambda: len(reader.taken),
        )
        assert second.poll() is None, log.read_text()[-3000:]
        await wait_moving(
            "every message in the fallback",
            lambda: len({mid for mid, _at in reader.taken}) >= len(sent),
            lambda: len(reader.taken),
        )
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        reader.stop.set()
        await asyncio.wait_for(reading, 30)
    copies = Counter(mid for mid, _at in reader.taken)
    assert set(copies) == {m.mid for m in sent}
    assert sum(copies.values()) - len(copies) <= 10, copies
    assert "sqs resuming an unfinished session end" in log.read_text()
