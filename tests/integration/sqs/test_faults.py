"""The SQS split worker under injected faults, on moto and LocalStack.

The worker's client talks to the real server through :class:`~tests.faults.sqs_proxy.SqsProxy`,
which fails chosen batch entries, answers throttling and 5xx errors, delays calls
or cuts connections; the test's own client (readers, setup) goes straight to the
server. Each test names its faults in its docstring, then asserts the guarantees:
0 lost, 0 misrouted, duplicates within the documented bound, per-FIFO-group order
kept, and the worker never brought down by a transient error.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from splitter.errors import FilterError
from splitter.routing import Router
from splitter.sqs.client import SqsClient
from splitter.sqs.forwarding import Forwarding
from splitter.sqs.settings import SqsSettings
from splitter.sqs.split import SqsSplit
from splitter.sqs.stats import SqsWorkerStats
from tests.faults.sqs_proxy import Rule, SqsProxy
from tests.integration.sqs.support import (
    FALLBACK,
    Outgoing,
    Reader,
    attribute,
    client_for,
    drain,
    empty,
    gone,
    make_queue,
    mid_of,
    route,
    running,
    send,
    temporary,
    wait_for,
    wait_moving,
    worker_settings,
)
from tests.servers.sqs import SqsEndpoint as ServerEndpoint

pytestmark = pytest.mark.integration

#: More failures in a row than botocore's own retries (3 attempts) absorb, so the
#: worker's retries are what carries the call through.
BEYOND_BOTOCORE = 7


@pytest.fixture
async def sqs(sqs_endpoint: ServerEndpoint) -> AsyncIterator[SqsClient]:
    async with client_for(sqs_endpoint) as client:
        yield client


@pytest.fixture
async def proxy(sqs_endpoint: ServerEndpoint) -> AsyncIterator[SqsProxy]:
    async with SqsProxy(sqs_endpoint.url) as running_proxy:
        yield running_proxy


@pytest.fixture
async def faulty(sqs_endpoint: ServerEndpoint, proxy: SqsProxy) -> AsyncIterator[SqsClient]:
    """A client whose every call goes through the proxy (the worker's)."""
    through = ServerEndpoint(sqs_endpoint.kind, proxy.url, sqs_endpoint.region)
    async with client_for(through) as client:
        yield client


def name_of(url: str) -> str:
    return "/" + url.rstrip("/").rsplit("/", 1)[-1]


def numbered(count: int, user: str = "alice") -> list[Outgoing]:
    return [Outgoing(f"m{n:03d}", {"user": attribute(user)}) for n in range(count)]


async def test_throttling_and_5xx_in_a_session_end_and_the_hand_back_are_retried_not_a_crash(
    sqs: SqsClient, faulty: SqsClient, proxy: SqsProxy, unique_name: str
) -> None:
    """1. 20 of alice's messages wait unread in her queue;
    2. faults on her queue: ``ReceiveMessage`` throttled (``ThrottlingException``),
       ``GetQueueAttributes`` 503 ``ServiceUnavailable`` and ``DeleteQueue`` 500
       ``InternalError``, each more times in a row than botocore retries;
    3. her session ends: the end rides the faults out, routes the 20 to the fallback
       and deletes her queue;
    4. the same faults on the fallback; the last session ends with ``drain_timeout``
       0: the hand-back moves the 20 back to the original and deletes the fallback;
    5. the worker finished normally, and the original holds each message once."""
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, "alice")
    bob_q = await temporary(sqs, original, "bob")
    alice = route("alice", 1, alice_q, {"user": "^alice$"})
    bob = route("bob", 2, bob_q, {"user": "^bob$"})
    sent = numbered(20)
    settings = worker_settings(drain_timeout=0)
    split = SqsSplit(original, fallback)

    def faults(url: str) -> list[Rule]:
        return [
            proxy.add(
                Rule(
                    "ReceiveMessage",
                    "error",
                    queue=name_of(url),
                    code="ThrottlingException",
                    status=400,
                    times=BEYOND_BOTOCORE,
                )
            ),
            proxy.add(
                Rule(
                    "GetQueueAttributes",
                    "error",
                    queue=name_of(url),
                    code="ServiceUnavailable",
                    status=503,
                    times=BEYOND_BOTOCORE,
                )
            ),
            proxy.add(
                Rule(
                    "DeleteQueue",
                    "error",
                    queue=name_of(url),
                    code="InternalError",
                    status=500,
                    times=BEYOND_BOTOCORE,
                )
            ),
        ]

    async with running(faulty, split, [alice, bob], settings) as (worker, task):
        await send(sqs, original, sent)
        await wait_for("every forward", lambda: worker.stats.deleted >= len(sent), within=60)
        rules = faults(alice_q)
        worker.set_routes([bob])
        await wait_moving(
            "alice's queue to be deleted",
            lambda: task.done() or gone(sqs, alice_q),
            lambda: len(proxy.calls),
        )
        assert not task.done(), task.exception()
        assert [r.hits for r in rules] == [BEYOND_BOTOCORE] * 3
        rules = faults(fallback)
        worker.set_routes([])
        await wait_moving("the hand-back", task.done, lambda: len(proxy.calls))
        await task  # raises what brought the worker down, if anything did
        assert worker.handed_back.is_set()
        assert [r.hits for r in rules] == [BEYOND_BOTOCORE] * 3
    assert await gone(sqs, fallback)
    got = await drain(sqs, {"original": original}, expect=len(sent))
    assert Counter(mid_of(m) for m in got["original"]) == Counter({m.mid: 1 for m in sent})


async def test_a_session_queue_already_deleted_at_its_end_is_a_finished_end_not_a_crash(
    sqs: SqsClient, unique_name: str
) -> None:
    """Someone deletes alice's queue; then her session ends: the missing queue means the
    end is done. The worker keeps splitting: bob's next message reaches his queue."""
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, "alice")
    bob_q = await temporary(sqs, original, "bob")
    alice = route("alice", 1, alice_q, {"user": "^alice$"})
    bob = route("bob", 2, bob_q, {"user": "^bob$"})
    async with running(sqs, SqsSplit(original, fallback), [alice, bob]) as (worker, task):
        await sqs.delete_queue(alice_q)
        await wait_for("alice's queue to be gone", lambda: gone(sqs, alice_q))
        worker.set_routes([bob])
        await asyncio.wait_for(worker._ended.join(), 60)
        assert not task.done(), task.exception()
        await send(sqs, original, numbered(1, "bob"))
        got = await drain(sqs, {"bob": bob_q}, expect=1)
    assert [mid_of(m) for m in got["bob"]] == ["m000"]


async def test_the_hand_back_does_not_wait_for_a_receive_of_the_original_under_way(
    sqs: SqsClient, faulty: SqsClient, proxy: SqsProxy, unique_name: str
) -> None:
    """The last session's end hands the queue back while a receive of the original is
    still under way (in production a long poll of up to ``wait_seconds``, 20 s; here the
    proxy holds one until released): the hand-back finishes without it, and what that
    receive brings afterwards goes back to the original, not to the fallback."""
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, "alice")
    alice = route("alice", 1, alice_q, {"user": "alice"})
    release = asyncio.Event()
    held = proxy.add(
        Rule("ReceiveMessage", "delay", queue=name_of(original), release=release, times=1)
    )
    async with running(faulty, SqsSplit(original, fallback), [alice]) as (worker, task):
        await wait_for("a receive of the original held", lambda: held.hits == 1)
        worker.set_routes([])
        # Before the fix this waited for the held receive: it never came.
        await worker.handed_back.wait()
        assert not release.is_set()
        assert await gone(sqs, fallback)
        await send(sqs, original, [Outgoing("late", {"user": attribute("bob")})])
        release.set()
        await asyncio.wait_for(task, 30)
    back = await drain(sqs, {"original": original}, expect=1)
    assert [mid_of(m) for m in back["original"]] == ["late"]
    assert worker.stats.forwarded.get("alice", 0) == 0


async def test_no_session_is_routed_to_a_queue_while_its_delete_is_under_way(
    sqs: SqsClient, faulty: SqsClient, proxy: SqsProxy, unique_name: str
) -> None:
    """1. alice's session ends; the proxy holds her queue's ``DeleteQueue`` for 3 s;
    2. while the delete is held, a change routing a new session to her queue is
       refused with ``FilterError`` (before: accepted, and its messages went to a
       queue about to vanish);
    3. the delete lands, her end is done, and bob's session still routes."""
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, "alice")
    bob_q = await temporary(sqs, original, "bob")
    alice = route("alice", 1, alice_q, {"user": "^alice$"})
    bob = route("bob", 2, bob_q, {"user": "^bob$"})
    held = proxy.add(Rule("DeleteQueue", "delay", queue=name_of(alice_q), delay=3.0))
    async with running(faulty, SqsSplit(original, fallback), [alice, bob]) as (worker, task):
        worker.set_routes([bob])
        await wait_for("the delete to reach the proxy", lambda: held.hits == 1, within=60)
        carol = route("carol", 3, alice_q, {"user": "^carol$"})
        with pytest.raises(FilterError, match="which the end of an earlier session is deleting"):
            worker.set_routes([bob, carol])
        assert [r.session_id for r in worker.router.sessions] == ["bob"]
        await wait_moving(
            "alice's queue to be deleted",
            lambda: task.done() or gone(sqs, alice_q),
            lambda: len(proxy.calls),
        )
        assert not task.done(), task.exception()
        await send(sqs, original, numbered(1, "bob"))
        got = await drain(sqs, {"bob": bob_q}, expect=1)
    assert [mid_of(m) for m in got["bob"]] == ["m000"]


async def test_fifo_order_per_group_holds_when_batch_entries_fail_and_are_retried_or_released(
    sqs: SqsClient,
    sqs_endpoint: ServerEndpoint,
    faulty: SqsClient,
    proxy: SqsProxy,
    unique_name: str,
) -> None:
    """A FIFO original with three message groups of 20 ordered messages each, all
    going to the fallback. Faults on ``SendMessageBatch`` to the fallback:

    1. group a's 6th message fails twice with ``InternalError`` (retriable) while
       the rest of its batch is accepted;
    2. group b's 4th message fails twice with ``ServiceUnavailable``;
    3. group c's 11th message fails once as the sender's fault (``InvalidParameterValue``):
       it is released, to be received again.

    The fallback's reader then sees every message once and, in each group, in the
    order sent. One receiver: moto serves concurrent receives in threads that may
    each take messages of one group (its in-flight-group check reads a snapshot), an
    ordering fault of the server's own that real SQS does not have. moto also
    redelivers messages of one group released together out of order (its receive
    skips a visible message while a later one of its group is still marked in
    flight), so group c's order - a redelivery after a release - is asserted on
    LocalStack only; on moto group c must still arrive whole, once."""
    original = await make_queue(sqs, unique_name + ".fifo")
    fallback = await temporary(sqs, original)
    sent = [
        Outgoing(f"{group}{n:02d}", group=group) for n in range(20) for group in ("a", "b", "c")
    ]

    def body(mid: str) -> Callable[[dict[str, Any]], bool]:
        return lambda entry: entry["MessageBody"] == f"body of {mid}"

    proxy.add(Rule("SendMessageBatch", "fail_entries", entries=body("a05"), times=2))
    proxy.add(
        Rule(
            "SendMessageBatch",
            "fail_entries",
            entries=body("b03"),
            code="ServiceUnavailable",
            times=2,
        )
    )
    released = proxy.add(
        Rule(
            "SendMessageBatch",
            "fail_entries",
            entries=body("c10"),
            code="InvalidParameterValue",
            sender_fault=True,
            times=1,
        )
    )
    await send(sqs, original, sent)
    settings = worker_settings(receivers=1)
    async with running(faulty, SqsSplit(original, fallback), settings=settings) as (worker, _t):
        got = await drain(sqs, {FALLBACK: fallback}, expect=len(sent), within=60, quiet=3.0)
        assert released.hits == 1
        assert worker.stats.failed >= 1
    order = [mid_of(m) for m in got[FALLBACK]]
    assert Counter(order) == Counter(m.mid for m in sent), "lost or duplicated"
    for group in "ab" if sqs_endpoint.kind == "moto" else "abc":
        seen = [mid for mid in order if mid[0] == group]
        assert seen == sorted(seen), f"group {group} out of order: {seen}"


async def test_fifo_receives_carry_an_attempt_id_kept_on_the_retry_of_the_same_receive(
    sqs: SqsClient, faulty: SqsClient, proxy: SqsProxy, unique_name: str
) -> None:
    """One receiver on a FIFO original; its first receive fails with 503 more times in
    a row than botocore retries, so the worker retries it itself. Every
    ``ReceiveMessage`` carries a ``ReceiveRequestAttemptId``; the failed attempts and
    the one that finally answers share one id (SQS then returns the same messages,
    not a second set locking the group); the next receive gets a new id. The message
    is forwarded once."""
    original = await make_queue(sqs, unique_name + ".fifo")
    fallback = await temporary(sqs, original)
    await send(sqs, original, [Outgoing("m0", group="g")])
    failing = proxy.add(
        Rule(
            "ReceiveMessage",
            "error",
            queue=name_of(original),
            code="ServiceUnavailable",
            status=503,
            times=BEYOND_BOTOCORE,
        )
    )
    settings = worker_settings(receivers=1)
    async with running(faulty, SqsSplit(original, fallback), settings=settings) as (worker, _t):
        await wait_for("the forward", lambda: worker.stats.deleted >= 1, within=60)
        await wait_for(
            "a receive after the forward",
            lambda: len(proxy.seen("ReceiveMessage", name_of(original))) > BEYOND_BOTOCORE + 1,
            within=60,
        )
        got = await drain(sqs, {FALLBACK: fallback}, expect=1)
    assert failing.hits == BEYOND_BOTOCORE
    ids = [
        c.body.get("ReceiveRequestAttemptId")
        for c in proxy.seen("ReceiveMessage", name_of(original))
    ]
    assert all(ids), f"a FIFO receive without an attempt id: {ids}"
    first = ids[: BEYOND_BOTOCORE + 1]  # the failures and the answer that came
    assert len(set(first)) == 1, ids
    assert ids[BEYOND_BOTOCORE + 1] != ids[0], ids
    assert [mid_of(m) for m in got[FALLBACK]] == ["m0"]


def first_calls(k: int, calls: int) -> Callable[[dict[str, Any]], bool]:
    """Picks every ``k``-th message's entry (by the number in its ``m<n>`` body) in its
    first ``calls`` calls."""
    seen: Counter[str] = Counter()

    def pick(entry: dict[str, Any]) -> bool:
        body = str(entry.get("MessageBody", ""))
        if not body.startswith("body of m") or int(body[9:]) % k:
            return False
        seen[body] += 1
        return seen[body] <= calls

    return pick


def deletes_every(k: int, calls: int) -> Callable[[dict[str, Any]], bool]:
    """Picks every ``k``-th delete entry seen (by arrival) in its first ``calls`` calls."""
    seen: Counter[str] = Counter()
    arrivals: dict[str, int] = {}

    def pick(entry: dict[str, Any]) -> bool:
        handle = str(entry.get("ReceiptHandle"))
        arrivals.setdefault(handle, len(arrivals))
        if arrivals[handle] % k:
            return False
        seen[handle] += 1
        return seen[handle] <= calls

    return pick


def expected_label(message: dict[str, Any]) -> str:
    user = str(message["MessageAttributes"]["user"]["StringValue"])
    return user if user in ("alice", "bob") else FALLBACK


async def test_entry_failures_throttles_delays_and_cuts_lose_and_misroute_nothing(
    sqs: SqsClient, faulty: SqsClient, proxy: SqsProxy, unique_name: str
) -> None:
    """300 messages for alice, bob and others on a standard original, with faults all
    along:

    1. ``SendMessageBatch``: every 7th message's entry fails with ``InternalError``
       (retriable) in its first 2 calls, every 11th in its first call as the sender's
       fault (released, received again later); 3 calls are throttled whole; 2 calls
       reach the server but their connection is cut before the answer (botocore sends
       them again: the standard queue gets those entries twice);
    2. ``DeleteMessageBatch``: every 5th entry fails with ``InternalError`` twice;
    3. ``ReceiveMessage``: 3 calls are delayed by 0.5 s.

    Every message arrives (0 lost), at the destination its ``user`` says (0
    misrouted); the copies beyond one are at most the entries of the cut calls (10
    each)."""
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    queues = {
        "alice": await temporary(sqs, original, "alice"),
        "bob": await temporary(sqs, original, "bob"),
        FALLBACK: fallback,
    }
    routes = [
        route("alice", 1, queues["alice"], {"user": "^alice$"}),
        route("bob", 2, queues["bob"], {"user": "^bob$"}),
    ]
    users = ("alice", "bob", "carol")
    sent = [Outgoing(f"m{n:03d}", {"user": attribute(users[n % 3])}) for n in range(300)]
    proxy.add(Rule("SendMessageBatch", "error", code="ThrottlingException", status=400, times=3))
    cut = proxy.add(Rule("SendMessageBatch", "cut", after_server=True, times=2))
    proxy.add(Rule("SendMessageBatch", "fail_entries", entries=first_calls(7, 2)))
    proxy.add(
        Rule(
            "SendMessageBatch",
            "fail_entries",
            entries=first_calls(11, 1),
            code="InvalidParameterValue",
            sender_fault=True,
        )
    )
    proxy.add(Rule("DeleteMessageBatch", "fail_entries", entries=deletes_every(5, 2)))
    proxy.add(Rule("ReceiveMessage", "delay", queue=name_of(original), delay=0.5, times=3))
    readers = {label: Reader(url) for label, url in queues.items()}
    reading = [asyncio.create_task(r.run(sqs)) for r in readers.values()]

    def distinct() -> int:
        return len({mid for r in readers.values() for mid, _at in r.taken})

    try:
        async with running(faulty, SqsSplit(original, fallback), routes) as (worker, task):
            await send(sqs, original, sent)
            await wait_moving(
                lambda: f"every message to arrive ({distinct()} of {len(sent)})",
                lambda: distinct() >= len(sent) or task.done(),
                lambda: len(proxy.calls),
            )
            assert not task.done(), task.exception()
            await wait_for("the original to empty", lambda: empty(sqs, original), within=60)
    finally:
        for reader in readers.values():
            reader.stop.set()
        await asyncio.wait_for(asyncio.gather(*reading), 30)
    got = {label: r.messages for label, r in readers.items()}
    copies = Counter(mid_of(m) for messages in got.values() for m in messages)
    lost = sorted({m.mid for m in sent} - set(copies))
    misrouted = {
        mid_of(m): label
        for label, messages in got.items()
        for m in messages
        if expected_label(m) != label
    }
    duplicates = sum(copies.values()) - len(copies)
    print(
        f"\nfaults: lost={len(lost)} misrouted={len(misrouted)} duplicates={duplicates} "
        f"cut={cut.hits} failed={worker.stats.failed} delete_failed={worker.stats.delete_failed}"
    )
    assert lost == []
    assert misrouted == {}
    assert cut.hits == 2
    assert worker.stats.failed >= 1
    assert duplicates <= cut.hits * 10


async def test_a_stop_past_its_grace_sends_its_last_deletes_and_releases_at_once(
    sqs: SqsClient, faulty: SqsClient, proxy: SqsProxy, unique_name: str
) -> None:
    """A stop whose grace ends with 10 messages forwarded but not yet deleted and 5 whose
    forward hangs: its last calls, the deletes and the releases, go at once, each within
    the final calls' own bound. The proxy holds every delete until a release has reached
    the server; one after the other (as before), the releases got only what the deletes
    left of that bound, and under throttling their messages stayed in flight until the
    visibility timeout. Here: the 5 are visible again at once, the 10 are gone, and the
    counters say so (released 5, release_failed 0)."""
    source = await make_queue(sqs, f"{unique_name}-src")
    forwarded_to = await make_queue(sqs, f"{unique_name}-ok")
    hangs_at = await make_queue(sqs, f"{unique_name}-hangs")
    await sqs.send_batch(source, [{"Id": str(i), "MessageBody": f"m{i}"} for i in range(10)])
    await sqs.send_batch(source, [{"Id": str(i), "MessageBody": f"h{i}"} for i in range(5)])
    hang, released = asyncio.Event(), asyncio.Event()
    proxy.add(Rule("SendMessageBatch", "delay", queue=name_of(hangs_at), release=hang))
    proxy.add(Rule("DeleteMessageBatch", "delay", queue=name_of(source), release=released))
    stats = SqsWorkerStats()
    try:
        async with asyncio.TaskGroup() as tg:
            forwarding = Forwarding(
                faulty,
                lambda coro, name: tg.create_task(coro, name=name),
                fifo=False,
                stats=stats,
                settings=SqsSettings(linger=0.02),
            )
            got: list[dict[str, Any]] = []
            while len(got) < 15:
                await forwarding.reserve(10)
                batch = await sqs.receive(source, wait_seconds=1, visibility_timeout=300)
                forwarding.unreserve(10 - len(batch))
                got += batch
            by_body = {m["Body"]: m for m in got}
            forwarding.submit(
                source, [by_body[f"m{i}"] for i in range(10)], Router((), forwarded_to)
            )
            forwarding.submit(source, [by_body[f"h{i}"] for i in range(5)], Router((), hangs_at))
            await wait_for("the 10 forwards", lambda: stats.forwarded["fallback"] == 10)

            async def release_the_deletes() -> None:
                await wait_for(
                    "a release", lambda: proxy.seen("ChangeMessageVisibilityBatch", name_of(source))
                )
                released.set()

            watcher = tg.create_task(release_the_deletes())
            async with asyncio.timeout(60):  # one after the other, the calls wait for each other
                await forwarding.close(0.5)
            await watcher
    finally:
        hang.set()
        released.set()
    assert (stats.released, stats.release_failed) == (5, 0)
    assert stats.deleted + stats.delete_failed == 10
    assert await sqs.counts(source) == (5, 0, 0)
    again = await sqs.receive(source, max_messages=10, wait_seconds=1)
    assert sorted(m["Body"] for m in again) == [f"h{i}" for i in range(5)]


async def test_a_delete_batch_waits_for_the_rest_of_its_receive(
    sqs: SqsClient, faulty: SqsClient, proxy: SqsProxy, unique_name: str
) -> None:
    """One receive of 10: 6 for alice's queue, 4 for bob's, whose SendMessageBatch the
    proxy holds. Alice's forwards settle first; their delete waits for bob's (the rest of
    the receive), well past ``linger``, so the 10 go in one DeleteMessageBatch (sent at
    alice's settling, it carried 6 and bob's 4 needed a second call)."""
    source = await make_queue(sqs, f"{unique_name}-src")
    alice = await make_queue(sqs, f"{unique_name}-alice")
    bob = await make_queue(sqs, f"{unique_name}-bob")
    users = ["alice"] * 6 + ["bob"] * 4
    await send(
        sqs, source, [Outgoing(f"m{i}", {"user": attribute(u)}) for i, u in enumerate(users)]
    )
    hold = asyncio.Event()
    proxy.add(Rule("SendMessageBatch", "delay", queue=name_of(bob), release=hold))
    router = Router(
        [
            route("dev/alice", 1, alice, {"user": "^alice$"}),
            route("dev/bob", 2, bob, {"user": "^bob$"}),
        ],
        alice,
    )
    stats = SqsWorkerStats()
    stop = asyncio.Event()
    # A cap far above the test's waits: only bob's settling may let the delete go.
    settings = SqsSettings(linger=0.02, backlog_linger=60.0)
    try:
        async with asyncio.TaskGroup() as tg:
            forwarding = Forwarding(
                faulty,
                lambda coro, name: tg.create_task(coro, name=name),
                fifo=False,
                stats=stats,
                settings=settings,
            )
            flusher = tg.create_task(forwarding.run_flusher(stop))
            got: list[dict[str, Any]] = []
            while len(got) < 10:
                got = await sqs.receive(source, max_messages=10, wait_seconds=1)
                if len(got) < 10:  # a server may split the 10: hand them back, again
                    handles = [(str(i), m["ReceiptHandle"]) for i, m in enumerate(got)]
                    await sqs.change_visibility_batch(source, handles, 0)
            await forwarding.reserve(10)
            forwarding.submit(source, got, router)
            await wait_for("alice's 6 forwards", lambda: stats.forwarded["dev/alice"] == 6)
            await wait_for("bob's held send", lambda: proxy.seen("SendMessageBatch", name_of(bob)))
            for _ in range(10):  # ten lingers and flusher ticks: alice's delete still waits
                await asyncio.sleep(settings.linger)
            assert not proxy.seen("DeleteMessageBatch", name_of(source))
            hold.set()  # (not wait_idle: it flushes the deletes)
            await wait_for("the 10 deletes", lambda: stats.deleted == 10)
            stop.set()
            await flusher
    finally:
        hold.set()
    deletes = proxy.seen("DeleteMessageBatch", name_of(source))
    assert [len(c.body["Entries"]) for c in deletes] == [10]
    assert stats.deleted == 10
    assert sum(await sqs.counts(source)) == 0
