"""The SQS split worker end to end on real servers (moto and LocalStack).

Routing for every routing rule (docs/how-it-works.md), what a forward carries, FIFO order and
deduplication, sessions changing while messages flow, the hand-back after the
last session, and bad input refused by ``pymirror worker sqs`` before anything
happens. Destinations are temporary queues made by ``create_temporary_queue``.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from splitter.errors import NameFormatError
from splitter.filters import Mode
from splitter.naming import DEFAULT_SQS_QUEUE_FORMAT, NameFormat
from splitter.sqs.batching import forward_entry
from splitter.sqs.client import Message, SqsClient
from splitter.sqs.queue_names import queue_name
from splitter.sqs.queues import create_temporary_queue
from splitter.sqs.split import SqsSplit
from tests.integration.sqs.support import (
    FALLBACK,
    Outgoing,
    Reader,
    attribute,
    client_for,
    drain,
    drained,
    gone,
    make_queue,
    mid_of,
    process_env,
    receive_some,
    route,
    running,
    send,
    start_worker,
    temporary,
    wait_for,
    where,
    worker_command,
    worker_settings,
    write_sessions,
)
from tests.servers.process import REPO
from tests.servers.sqs import SqsEndpoint as ServerEndpoint

pytestmark = pytest.mark.integration

FORMAT = NameFormat(DEFAULT_SQS_QUEUE_FORMAT, "sqs")


@pytest.fixture
async def sqs(sqs_endpoint: ServerEndpoint) -> AsyncIterator[SqsClient]:
    async with client_for(sqs_endpoint) as client:
        yield client


# --- routing: one case per routing rule ----------------------------------------


@dataclass(frozen=True)
class S:
    """A session of a routing case."""

    id: str
    sequence: int
    message_filter: dict[str, str] = field(default_factory=dict)
    jq: str | None = None
    mode: Mode = "steal"


@dataclass(frozen=True)
class M:
    """A message of a routing case and where it must land (session ids / "fallback")."""

    mid: str
    to: tuple[str, ...]
    attributes: dict[str, Any] = field(default_factory=dict)
    body: str | None = None


def a(**values: str | int | bytes) -> dict[str, Any]:
    return {name.replace("_", "-"): attribute(value) for name, value in values.items()}


FB = (FALLBACK,)
ROUTING_CASES: dict[str, tuple[list[S], list[M]]] = {
    "every pair must match": (
        [S("s", 1, {"user": "^alice$", "tier": "gold"})],
        [
            M("both", ("s",), a(user="alice", tier="gold")),
            M("user-only", FB, a(user="alice")),
            M("wrong-tier", FB, a(user="alice", tier="silver")),
            M("no-attributes", FB),
        ],
    ),
    "attribute names and (unless (?-i)) values compare case-insensitively": (
        [S("s", 1, {"User-Name": "^alice$"}), S("exact", 2, {"team": "(?-i)^Core$"})],
        [
            M("upper", ("s",), a(USER_NAME="alice")),
            M("lower", ("s",), a(user_name="alice")),
            M("other-name", FB, a(username="alice")),
            M("value-case-ignored", ("s",), a(user_name="ALICE")),
            M("exact-case", ("exact",), a(team="Core")),
            M("exact-case-differs", FB, a(team="core")),
        ],
    ),
    "a regex searches the value": (
        [S("s", 1, {"user": "lic"}), S("anchored", 2, {"team": "^eam"})],
        [
            M("inside", ("s",), a(user="alice")),
            M("anchor-misses", FB, a(team="team-a")),
            M("anchor-hits", ("anchored",), a(team="eam-x")),
        ],
    ),
    "Number values match as text": (
        [S("s", 1, {"count": r"^4\d$"})],
        [
            M("forty-two", ("s",), {"count": attribute(42)}),
            M("custom-number-type", ("s",), {"count": attribute(41, "Number.int")}),
            M("seven", FB, {"count": attribute(7)}),
        ],
    ),
    "Binary values never match": (
        [S("s", 1, {"blob": "."})],
        [
            M("binary", FB, {"blob": attribute(b"abc")}),
            M("custom-binary-type", FB, {"blob": attribute(b"abc", "Binary.gz")}),
            M("string", ("s",), {"blob": attribute("abc")}),
        ],
    ),
    "an empty filter matches nothing": (
        [S("empty", 1, {})],
        [M("with-attributes", FB, a(user="alice")), M("bare", FB)],
    ),
    "jq_filter and message_filter must both match; a jq error is no match": (
        [
            S("both", 1, {"kind": "^order$"}, jq='.user == "alice"'),
            S("jq-only", 2, jq="(.n | tonumber) > 1"),
        ],
        [
            M("both-match", ("both",), a(kind="order"), json.dumps({"user": "alice"})),
            M("jq-misses", FB, a(kind="order"), json.dumps({"user": "bob"})),
            M("attribute-misses", FB, a(kind="refund"), json.dumps({"user": "alice"})),
            M("body-not-json", FB, a(kind="order"), "user=alice"),
            M("jq-only-match", ("jq-only",), {}, json.dumps({"n": "5"})),
            M("jq-false", FB, {}, json.dumps({"n": "0"})),
            M("jq-error", FB, {}, json.dumps({"n": "not a number"})),
        ],
    ),
    "a lookahead works": (
        [S("s", 1, {"user-agent": "^(?!kube-probe)"})],
        [
            M("curl", ("s",), a(user_agent="curl/8.5.0")),
            M("probe", FB, a(user_agent="kube-probe/1.29")),
            M("no-agent", FB),
        ],
    ),
    "the first matching session in sequence order wins": (
        # Listed out of order on purpose: the sequence decides, not the list.
        [
            S("late", 30, {"user": "alice"}),
            S("early", 10, {"user": "^ali"}),
            S("middle", 20, {"tier": "gold"}),
        ],
        [
            M("alice-gold", ("early",), a(user="alice", tier="gold")),
            M("bob-gold", ("middle",), a(user="bob", tier="gold")),
            M("malice", ("late",), a(user="malice")),
            M("nobody", FB, a(user="bob")),
        ],
    ),
    "a mirror session gets a copy and matching goes on": (
        [S("watch", 1, {"user": "^(alice|bob)$"}, mode="mirror"), S("owner", 2, {"user": "alice"})],
        [
            M("alice", ("owner", "watch"), a(user="alice")),
            M("bob", (FALLBACK, "watch"), a(user="bob")),
            M("carol", FB, a(user="carol")),
        ],
    ),
}


@pytest.mark.parametrize("rule", list(ROUTING_CASES))
async def test_each_design_rule_routes_messages_to_the_sessions_it_names(
    sqs: SqsClient, unique_name: str, rule: str
) -> None:
    """Real queues, temporary destinations, one worker: every message lands exactly
    in the queues the rule names, once each."""
    sessions, messages = ROUTING_CASES[rule]
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    queues = {FALLBACK: fallback}
    for s in sessions:
        queues[s.id] = await temporary(sqs, original, s.id)
    routes = [
        route(s.id, s.sequence, queues[s.id], s.message_filter, jq=s.jq, mode=s.mode)
        for s in sessions
    ]
    async with running(sqs, SqsSplit(original, fallback), routes):
        await send(sqs, original, [Outgoing(m.mid, m.attributes, m.body) for m in messages])
        got = await drain(sqs, queues, expect=sum(len(m.to) for m in messages))
    assert where(got) == {m.mid: sorted(m.to) for m in messages}


# --- what a forward carries ---------------------------------------------------------


def attributes_of(message: Message) -> dict[str, tuple[str, Any]]:
    return {
        name: (value["DataType"], value.get("StringValue", value.get("BinaryValue")))
        for name, value in message.get("MessageAttributes", {}).items()
    }


async def server_keeps_trace_header(sqs: SqsClient, url: str) -> bool:
    """Whether this server returns an ``AWSTraceHeader`` sent with a message."""
    await send(sqs, url, [Outgoing("probe", trace="Root=1-5759e988-bd862e3fe1be46a994272793")])
    [probe] = await receive_some(sqs, url)
    return "AWSTraceHeader" in probe.get("Attributes", {})


async def test_a_forwarded_message_keeps_body_attributes_and_trace_header(
    sqs: SqsClient, unique_name: str
) -> None:
    """String, Number and Binary attributes (custom types too), a non-ASCII body and
    the X-Ray trace header arrive unchanged, at a session and at the fallback."""
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    session = await temporary(sqs, original, "alice")
    traced = await server_keeps_trace_header(sqs, await make_queue(sqs, unique_name + "-probe"))
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    rich = {
        "text": attribute("héllo, wörld ✓"),
        "json": attribute('{"a": [1, 2]}', "String.json"),
        "int": attribute(-17),
        "float": attribute("3.14159", "Number.float"),
        "blob": attribute(bytes(range(256))),
        "png": attribute(b"\x89PNG\r\n\x1a\n", "Binary.png"),
    }
    body = json.dumps({"ünïcode": "✓", "lines": "a\nb\tc"}, ensure_ascii=False)
    sent = [
        Outgoing("to-alice", {**rich, "user": attribute("alice")}, body, trace=trace),
        Outgoing("to-fallback", {**rich, "user": attribute("bob")}, body, trace=trace),
    ]
    async with running(
        sqs, SqsSplit(original, fallback), [route("alice", 1, session, {"user": "alice"})]
    ):
        await send(sqs, original, sent)
        got = await drain(sqs, {"alice": session, FALLBACK: fallback}, expect=2)
    assert where(got) == {"to-alice": ["alice"], "to-fallback": [FALLBACK]}
    for message, outgoing in ((got["alice"][0], sent[0]), (got[FALLBACK][0], sent[1])):
        assert message["Body"] == body
        assert attributes_of(message) == attributes_of(
            {"MessageAttributes": outgoing.entry("x")["MessageAttributes"]}
        )
        if traced:
            assert message["Attributes"].get("AWSTraceHeader") == trace
    print(f"AWSTraceHeader kept by the server and carried by the worker: {traced}")


async def test_messages_near_the_size_limit_are_forwarded_in_batches_under_the_limit(
    sqs: SqsClient, unique_name: str
) -> None:
    """Bodies of 120-250 KiB mixed with small messages, all to one destination:
    every message arrives intact (a SendMessageBatch over 256 KiB would be
    refused, and the message released again and again)."""
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    sizes = [250, 1, 120, 130, 1, 200, 60, 1, 1, 240, 125, 125]
    sent = [
        Outgoing(f"k{n:02d}", {"blob": attribute(b"x" * 512)}, "b" * (kib * 1024 - 600))
        for n, kib in enumerate(sizes)
    ]
    async with running(sqs, SqsSplit(original, fallback)) as (worker, _task):
        for message in sent:  # one by one: a batch of them would exceed the limit itself
            await send(sqs, original, [message])
        got = await drain(sqs, {FALLBACK: fallback}, expect=len(sent))
    assert where(got) == {m.mid: [FALLBACK] for m in sent}
    assert {mid_of(m): m["Body"] for m in got[FALLBACK]} == {m.mid: m.body for m in sent}
    assert worker.stats.failed == 0


# --- FIFO -------------------------------------------------------------------------------


async def test_a_fifo_split_keeps_order_per_message_group_in_every_destination(
    sqs: SqsClient, sqs_endpoint: ServerEndpoint, unique_name: str
) -> None:
    """FIFO original -> FIFO temporaries; five groups interleaved, each group's
    messages spread over two sessions and the fallback: every destination sees
    each group's messages in the order they were sent, none lost or doubled."""
    original = await make_queue(sqs, unique_name + ".fifo")
    fallback = await temporary(sqs, original)
    queues = {FALLBACK: fallback}
    for session in ("alice", "bob"):
        queues[session] = await temporary(sqs, original, session)
        assert queues[session].endswith(".fifo")
    assert fallback.endswith(".fifo")
    users = ["alice", "bob", "carol"]
    groups = [f"g{g}" for g in range(5)]
    sent = [
        Outgoing(f"{group}-{n:03d}", {"user": attribute(users[(n + g) % 3])}, group=group)
        for n in range(12)
        for g, group in enumerate(groups)
    ]
    routes = [
        route("alice", 1, queues["alice"], {"user": "^alice$"}),
        route("bob", 2, queues["bob"], {"user": "^bob$"}),
    ]
    # moto computes the FIFO groups in flight once per ReceiveMessage, before its
    # long-poll wait, so a poll that started while a group was free can return
    # that group's later messages while another poll holds its earlier ones (SQS
    # and LocalStack lock the group). One receiver on moto keeps the server honest.
    receivers = 1 if sqs_endpoint.kind == "moto" else 4
    async with running(
        sqs, SqsSplit(original, fallback), routes, worker_settings(receivers=receivers)
    ):
        await send(sqs, original, sent)
        got = await drain(sqs, queues, expect=len(sent))
    assert Counter(mid for mid, labels in where(got).items() for _ in labels) == Counter(
        m.mid for m in sent
    )
    for label, messages in got.items():
        assert messages, f"{label} got nothing"
        for group in groups:
            mids = [mid_of(m) for m in messages if mid_of(m).startswith(group + "-")]
            assert mids == sorted(mids), f"{label}: group {group} out of order: {mids}"
            for message in messages:
                if mid_of(message) in mids:
                    assert message["Attributes"]["MessageGroupId"] == group
    expected = {
        m.mid: ["alice" if u == "alice" else "bob" if u == "bob" else FALLBACK]
        for m in sent
        for u in [m.attributes["user"]["StringValue"]]
    }
    assert where(got) == expected


async def test_a_fifo_forward_retried_after_a_crash_is_deduplicated_by_the_original_message_id(
    sqs: SqsClient, unique_name: str
) -> None:
    """A worker that dies after forwarding but before deleting:

    1. receive a message from the FIFO original and forward it to the session's
       queue exactly as the worker does (``forward_entry``), then do not delete it;
    2. make it visible again (what the crash's visibility timeout does);
    3. run the real worker: it receives the message again and forwards it again
       with the same deduplication id (the original MessageId);
    4. the session's queue holds one copy, and the original is empty.
    """
    original = await make_queue(sqs, unique_name + ".fifo")
    fallback = await temporary(sqs, original)
    session = await temporary(sqs, original, "alice")
    await send(sqs, original, [Outgoing("once", {"user": attribute("alice")}, group="g")])
    [first] = await sqs.receive(original, max_messages=1, wait_seconds=1)
    result = await sqs.send_batch(session, [forward_entry(first, "0", fifo=True)])
    assert result.ok == ["0"]
    released = await sqs.change_visibility_batch(original, [("0", first["ReceiptHandle"])], 0)
    assert released.ok == ["0"]
    async with running(
        sqs, SqsSplit(original, fallback), [route("alice", 1, session, {"user": "alice"})]
    ) as (worker, _task):
        await drained(sqs, original, worker)
        await wait_for("the delete", lambda: worker.stats.deleted == 1)
    assert worker.stats.received == 1
    assert worker.stats.forwarded == {"alice": 1}
    got = await drain(sqs, {"alice": session, FALLBACK: fallback}, expect=1, quiet=1.5)
    assert where(got) == {"once": ["alice"]}
    [copy] = got["alice"]
    assert copy["Attributes"]["MessageDeduplicationId"] == first["MessageId"]
    assert copy["Attributes"]["MessageGroupId"] == "g"


# --- sessions changing while messages flow ----------------------------------------


@dataclass
class Stream:
    """Messages sent at a steady pace: mid -> (user, monotonic time its send began)."""

    sent: dict[str, tuple[str, float]] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, sqs: SqsClient, url: str) -> None:
        n = 0
        while not self.stop.is_set():
            batch = []
            began = time.monotonic()
            for _ in range(10):
                user = ("alice", "bob")[n % 2]
                mid = f"{user}-{n:05d}"
                self.sent[mid] = (user, began)
                batch.append(Outgoing(mid, {"user": attribute(user)}))
                n += 1
            await send(sqs, url, batch)
            await asyncio.sleep(0.05)


async def test_sessions_added_and_removed_mid_stream_switch_routing_at_a_message_boundary(
    sqs: SqsClient, unique_name: str
) -> None:
    """alice and bob messages flow all along; readers take each queue as it fills:

    1. only bob's session: bob -> bob, alice -> fallback;
    2. alice's session is added: alice -> alice from then on;
    3. bob stops reading, so his queue fills, then his session is removed:
       bob -> fallback, and his unread leftovers are routed again (to the
       fallback, no one else wants them) before his queue is deleted.

    Every message arrives exactly once. A message sent after a switch goes by
    the new rules; one taken from a queue before a switch went by the old
    rules; only messages in flight at a switch may go either way.
    """
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, "alice")
    bob_q = await temporary(sqs, original, "bob")
    bob = route("bob", 1, bob_q, {"user": "^bob$"})
    alice = route("alice", 2, alice_q, {"user": "^alice$"})
    readers = {FALLBACK: Reader(fallback), "alice": Reader(alice_q), "bob": Reader(bob_q)}
    stream = Stream()
    async with running(sqs, SqsSplit(original, fallback), [bob]) as (worker, _task):
        tasks = [asyncio.create_task(r.run(sqs)) for r in readers.values()]
        tasks.append(asyncio.create_task(stream.run(sqs, original)))
        await asyncio.sleep(1.5)
        added = time.monotonic()
        worker.set_routes([bob, alice])
        await asyncio.sleep(1.5)
        readers["bob"].stop.set()
        await asyncio.sleep(1.2)  # bob's queue fills: leftovers for the session end
        removed = time.monotonic()
        worker.set_routes([alice])
        await asyncio.sleep(1.5)
        stream.stop.set()
        await tasks[-1]
        await wait_for("bob's queue to be deleted", lambda: gone(sqs, bob_q))
        await drained(sqs, original, worker)
        deadline = time.monotonic() + 20
        while sum(len(r.taken) for r in readers.values()) < len(stream.sent):
            assert time.monotonic() < deadline, "not every message arrived within 20 s"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # anything more would be a duplicate
        for reader in readers.values():
            reader.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)

    taken = Counter(mid for r in readers.values() for mid, _at in r.taken)
    assert set(taken) == set(stream.sent), "lost or unknown messages"
    # A standard queue may itself deliver a message twice (moto's unlocked receive
    # can, rarely): the worker must add no copy of its own beyond those.
    redelivered = worker.stats.received - len(stream.sent)
    duplicates = sum(taken.values()) - len(taken)
    assert duplicates <= redelivered, (
        f"{duplicates} duplicates, {redelivered} deliveries beyond the messages sent"
    )
    landed = {mid: (label, at) for label, r in readers.items() for mid, at in r.taken}
    either_way = Counter[str]()
    for mid, (user, began) in stream.sent.items():
        label, at = landed[mid]
        if user == "alice":
            old, new, switch = FALLBACK, "alice", added
        else:
            old, new, switch = "bob", FALLBACK, removed
        if began >= switch:
            assert label == new, f"{mid}, sent after the switch, went to {label}"
        elif at < switch:
            assert label == old, f"{mid}, taken before the switch, went to {label}"
        else:
            assert label in (old, new), f"{mid} went to {label}"
            either_way[user] += 1
    by_label = Counter((stream.sent[mid][0], label) for mid, (label, _at) in landed.items())
    for user, label in (("alice", FALLBACK), ("alice", "alice"), ("bob", "bob"), ("bob", FALLBACK)):
        assert by_label[(user, label)] > 0, f"no {user} message went to {label}"
    assert worker.stats.rerouted > 0, "bob's queue had no leftovers to route again"
    print(
        f"mid-stream: {len(stream.sent)} messages, routed {dict(by_label)}, "
        f"in flight at a switch {dict(either_way)}, leftovers re-routed {worker.stats.rerouted}"
    )


async def test_stop_during_a_session_end_leaves_nothing_in_flight_and_loses_nothing(
    sqs: SqsClient, unique_name: str
) -> None:
    """A stop (SIGTERM) while an ended session's leftovers are being routed again:

    1. 400 messages wait unread in alice's queue;
    2. alice's session ends: her leftovers start moving to the fallback;
    3. the worker is stopped while they move; ``run`` returns in time;
    4. nothing is left in flight in her queue or the fallback (a restarted
       worker or the workload sees every message at once), and every message is
       in exactly one of the two.
    """
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, "alice")
    bob_q = await temporary(sqs, original, "bob")
    alice = route("alice", 1, alice_q, {"user": "alice"})
    sent = [Outgoing(f"m{n:03d}", {"user": attribute("alice")}) for n in range(400)]
    settings = worker_settings()
    async with running(sqs, SqsSplit(original, fallback), [alice], settings) as (worker, task):
        await send(sqs, original, sent)
        await wait_for("every forward", lambda: worker.stats.deleted >= len(sent), within=60)
        worker.set_routes([route("bob", 2, bob_q, {"user": "bob"})])
        await wait_for("the move to start", partial(waiting, sqs, fallback))
        stopped = time.monotonic()
        worker.stop()
        await asyncio.wait_for(task, settings.shutdown_grace + 10)
        took = time.monotonic() - stopped
    assert took < settings.shutdown_grace + 2
    assert (await sqs.counts(alice_q))[1] == 0, "messages left in flight in alice's queue"
    assert (await sqs.counts(fallback))[1] == 0, "messages left in flight in the fallback"
    queues = {FALLBACK: fallback}
    if not await gone(sqs, alice_q):
        queues["alice"] = alice_q
    got = await drain(sqs, queues, expect=len(sent))
    copies = Counter(mid_of(m) for messages in got.values() for m in messages)
    assert set(copies) == {m.mid for m in sent}
    assert sum(copies.values()) - len(copies) <= worker.stats.received - len(sent)


# --- the last session's end: hand-back ---------------------------------------------


async def test_the_last_session_end_waits_for_the_workload_to_drain_then_deletes_the_fallback(
    sqs: SqsClient, unique_name: str
) -> None:
    """The workload keeps reading the fallback while the last session ends:

    1. 40 messages are split: alice's 20 wait unread in her queue, bob's 20 go
       to the fallback, where the workload reads them;
    2. alice's session ends: her 20 leftovers are routed again (to the fallback),
       her queue is deleted; the worker stops receiving from the original;
    3. the workload drains the fallback, so nothing is moved back; the worker
       deletes the fallback and returns;
    4. a message sent to the original afterwards stays there for the workload.
    """
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, "alice")
    workload = Reader(fallback)
    sent = [Outgoing(f"m{n:02d}", {"user": attribute(("alice", "bob")[n % 2])}) for n in range(40)]
    settings = worker_settings()
    alice = route("alice", 1, alice_q, {"user": "alice"})
    async with running(sqs, SqsSplit(original, fallback), [alice], settings) as (worker, task):
        reading = asyncio.create_task(workload.run(sqs))
        await send(sqs, original, sent)
        await drained(sqs, original, worker)
        await wait_for("every forward", lambda: worker.stats.deleted >= 40)
        worker.set_routes([])
        await asyncio.wait_for(task, 30)
        assert worker.handed_back.is_set()
        await asyncio.wait_for(reading, 10)  # ends when the fallback is deleted
    assert await gone(sqs, fallback)
    assert await gone(sqs, alice_q)
    taken = Counter(mid for mid, _at in workload.taken)
    assert set(taken) == {m.mid for m in sent}
    # Copies only for deliveries the server itself repeated (see the mid-stream test).
    assert sum(taken.values()) - len(taken) <= worker.stats.received - len(sent)
    assert worker.stats.rerouted == 20
    assert worker.stats.returned == 0
    await send(sqs, original, [Outgoing("after")])
    await asyncio.sleep(1.5)
    assert [mid_of(m) for m in await receive_some(sqs, original)] == ["after"]


@pytest.mark.parametrize("drain_timeout", [0, 1.5], ids=["skip-drain", "drain-times-out"])
async def test_the_last_session_end_moves_what_the_workload_left_back_to_the_original(
    sqs: SqsClient, unique_name: str, drain_timeout: float
) -> None:
    """No one reads the fallback while the last session ends:

    1. 30 messages are split: alice's 15 wait in her queue, 15 in the fallback;
    2. alice's session ends: her leftovers go to the fallback, her queue is deleted;
    3. the drain is skipped (0) or times out: the fallback's 30 messages are moved
       back to the original, with their attributes, and the fallback is deleted.
    """
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, "alice")
    sent = [Outgoing(f"m{n:02d}", {"user": attribute(("alice", "bob")[n % 2])}) for n in range(30)]
    settings = worker_settings(drain_timeout=drain_timeout)
    alice = route("alice", 1, alice_q, {"user": "alice"})
    async with running(sqs, SqsSplit(original, fallback), [alice], settings) as (worker, task):
        await send(sqs, original, sent)
        await wait_for("every forward", lambda: worker.stats.deleted >= 30)
        started = time.monotonic()
        worker.set_routes([])
        await asyncio.wait_for(task, 30)
        took = time.monotonic() - started
    assert worker.handed_back.is_set()
    assert took >= drain_timeout
    assert await gone(sqs, fallback)
    assert await gone(sqs, alice_q)
    back = await drain(sqs, {"original": original}, expect=30)
    returned = Counter(mid_of(m) for m in back["original"])
    assert set(returned) == {m.mid for m in sent}
    # Copies only for deliveries the server itself repeated (see the mid-stream test).
    redelivered = worker.stats.received - len(sent)
    assert sum(returned.values()) - len(returned) <= redelivered
    assert worker.stats.rerouted == worker.stats.forwarded["alice"] >= 15
    assert worker.stats.returned == sum(returned.values())
    for message in back["original"]:
        n = int(mid_of(message)[1:])
        assert message["MessageAttributes"]["user"]["StringValue"] == ("alice", "bob")[n % 2]


async def waiting(sqs: SqsClient, url: str) -> bool:
    """Whether a message waits (visible) in ``url``."""
    return (await sqs.counts(url))[0] > 0


async def test_stop_during_the_hand_back_keeps_the_fallback_and_its_messages(
    sqs: SqsClient, unique_name: str
) -> None:
    """The last session ends while the workload holds fallback messages in hand:

    1. 20 messages go to the fallback; the "workload" receives 5 of them (in
       flight) and leaves the other 15 visible;
    2. alice's session ends: the worker waits for the fallback to drain
       (``drain_timeout`` unset);
    3. the worker is stopped mid-drain: ``run`` returns, the fallback is kept
       with all 20 messages (none moved, none deleted), nothing in flight
       from the worker.
    """
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, "alice")
    sent = [Outgoing(f"m{n:02d}", {"user": attribute("bob")}) for n in range(20)]
    settings = worker_settings()
    alice = route("alice", 1, alice_q, {"user": "alice"})
    async with running(sqs, SqsSplit(original, fallback), [alice], settings) as (worker, task):
        await send(sqs, original, sent)
        await wait_for("every forward", lambda: worker.stats.deleted >= len(sent))
        held = await sqs.receive(fallback, max_messages=5, wait_seconds=1, visibility_timeout=60)
        worker.set_routes([])
        await asyncio.sleep(1.0)  # waiting for the drain
        worker.stop()
        await asyncio.wait_for(task, settings.shutdown_grace + 10)
    assert not worker.handed_back.is_set()
    assert await sqs.exists(fallback)
    assert await sqs.counts(fallback) == (20 - len(held), len(held), 0)
    assert worker.stats.returned == 0


async def test_with_await_release_the_fallback_is_deleted_only_after_release_fallback(
    sqs: SqsClient, unique_name: str
) -> None:
    """The operator confirms the hand-back (``await_release``):

    1. 10 messages go to the fallback and the workload reads them all;
    2. alice's session ends: the fallback drains, yet the worker keeps it and
       waits - ``run`` has not returned, the fallback exists;
    3. ``release_fallback()``: the fallback is deleted and ``run`` returns, handed back.
    """
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, "alice")
    sent = [Outgoing(f"m{n:02d}", {"user": attribute("bob")}) for n in range(10)]
    alice = route("alice", 1, alice_q, {"user": "alice"})
    split = SqsSplit(original, fallback, await_release=True)
    async with running(sqs, split, [alice]) as (worker, task):
        await send(sqs, original, sent)
        got = await drain(sqs, {FALLBACK: fallback}, expect=len(sent))
        worker.set_routes([])
        await asyncio.wait_for(worker.awaiting_release.wait(), 60)
        assert not task.done()
        assert not worker.handed_back.is_set()
        assert await sqs.exists(fallback)
        worker.release_fallback()
        await asyncio.wait_for(task, 60)
    assert worker.handed_back.is_set()
    assert await gone(sqs, fallback)
    assert await gone(sqs, alice_q)
    assert sorted(where(got)) == [m.mid for m in sent]
    assert worker.stats.returned == 0


# --- the process form: the sessions file drives it ----------------------------------


async def test_the_worker_process_follows_its_sessions_file_and_exits_0_after_the_hand_back(
    sqs: SqsClient, sqs_endpoint: ServerEndpoint, unique_name: str, tmp_path: Path
) -> None:
    """``pymirror worker sqs`` with alice's session in its sessions file:

    1. alice's message goes to her queue, bob's to the fallback;
    2. the file is rewritten with a bad regex: the worker keeps alice's session
       (another alice message still reaches her queue);
    3. bob's next message waits unread in the fallback; the file is rewritten
       empty: the last session ended, the drain is skipped (``--drain-timeout 0``),
       bob's message goes back to the original, both temporary queues are
       deleted and the process exits 0, printing its summary.
    """
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, "alice")
    sessions = tmp_path / "sessions.json"
    alice = {"id": "alice", "sequence": 1, "queue": alice_q, "message_filter": {"user": "^alice$"}}
    write_sessions(sessions, [alice])
    log = tmp_path / "worker.log"
    args = ("--wait-seconds", "1", "--drain-timeout", "0")
    process = start_worker(sqs_endpoint, original, fallback, sessions, log, *args)
    try:
        both = {"alice": alice_q, FALLBACK: fallback}
        await send(sqs, original, [Outgoing("a1", a(user="alice")), Outgoing("b1", a(user="bob"))])
        assert where(await drain(sqs, both, expect=2, within=60)) == {
            "a1": ["alice"],
            "b1": [FALLBACK],
        }
        write_sessions(sessions, [{**alice, "message_filter": {"user": "(alice"}}])
        await asyncio.sleep(1.0)  # the file is looked at every 0.25 s
        await send(sqs, original, [Outgoing("a2", a(user="alice"))])
        assert where(await drain(sqs, both, expect=1)) == {"a2": ["alice"]}
        await send(sqs, original, [Outgoing("b2", a(user="bob"))])
        await wait_for("b2 in the fallback", partial(waiting, sqs, fallback))
        write_sessions(sessions, [])
        code = await asyncio.to_thread(process.wait, 60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "sessions file unusable, keeping the current sessions" in output
    assert "pymirror worker sqs: {" in output
    assert await gone(sqs, fallback)
    assert await gone(sqs, alice_q)
    back = await drain(sqs, {"original": original}, expect=1)
    assert where(back) == {"b2": ["original"]}


# --- bad input: refused before anything happens -----------------------------------


@dataclass(frozen=True)
class Bad:
    """A bad ``pymirror worker sqs`` start: what is wrong and the error it must print."""

    message_filter: dict[str, str] = field(default_factory=lambda: {"user": "alice"})
    jq: str | None = None
    queue: str = "original"  # or "missing"
    fallback: str = "fallback"  # or "missing", "plain" (a queue pymirror did not make)
    session_queue: str = "session"
    error: str = ""


BAD_STARTS = {
    "invalid regex": Bad(
        {"user": "(alice"},
        error=r"FilterError: session 'alice' message_filter\.user: '\(alice' is not a valid regex",
    ),
    "invalid jq program": Bad(
        jq=".user ==",
        error=r"FilterError: session 'alice' message_filter: jq_filter '\.user ==' does not "
        r"compile",
    ),
    "unknown original queue": Bad(
        queue="missing",
        error=r"SqsQueueMissingError: queue '[^']*-missing': the queue does not exist",
    ),
    "unknown fallback queue": Bad(
        fallback="missing",
        error=r"SqsQueueMissingError: queue '[^']*-missing': the queue does not exist",
    ),
    "unknown session queue": Bad(
        session_queue="missing",
        error=r"SqsQueueMissingError: queue '[^']*-missing': the queue does not exist",
    ),
    "a fallback pymirror did not make": Bad(
        fallback="plain",
        error=r"NotOursError: refusing the fallback \S*-plain: pymirror drains and deletes it "
        r".*lacks the tag pymirror.dev/created-by=pymirror.*Check the queue name",
    ),
    "a session queue pymirror did not make": Bad(
        session_queue="plain",
        error=r"NotOursError: refusing session 'alice': \S*-plain: pymirror drains and deletes",
    ),
}


@pytest.mark.parametrize("case", list(BAD_STARTS))
async def test_a_bad_start_exits_1_naming_the_problem_before_anything_happens(
    sqs: SqsClient, sqs_endpoint: ServerEndpoint, unique_name: str, tmp_path: Path, case: str
) -> None:
    """``pymirror worker sqs`` with one bad input: exit 1, ``ErrorName: message`` on
    stderr, no queue created or deleted, and the message waiting in the original
    neither received nor moved (a queue pymirror did not make is neither read nor
    deleted)."""
    bad = BAD_STARTS[case]
    urls = {"original": await make_queue(sqs, unique_name)}
    urls["fallback"] = await temporary(sqs, urls["original"])
    urls["session"] = await temporary(sqs, urls["original"], "alice")
    urls["plain"] = await make_queue(sqs, unique_name + "-plain")
    await send(sqs, urls["plain"], [Outgoing("not-ours", {"user": attribute("alice")})])
    names = {key: queue_name(url) for key, url in urls.items()}
    names["missing"] = unique_name + "-missing"
    await send(sqs, urls["original"], [Outgoing("waiting", {"user": attribute("alice")})])
    sessions = tmp_path / "sessions.json"
    entry: dict[str, Any] = {
        "id": "alice",
        "sequence": 1,
        "queue": names[bad.session_queue],
        "message_filter": bad.message_filter,
    }
    if bad.jq is not None:
        entry["jq_filter"] = bad.jq
    write_sessions(sessions, [entry])
    before = sorted(await sqs.list_queues(""))
    command = worker_command(
        sqs_endpoint, names[bad.queue], names[bad.fallback], sessions, "--wait-seconds", "1"
    )
    done = await asyncio.to_thread(
        subprocess.run,
        command,
        cwd=REPO,
        env=process_env(sqs_endpoint),
        capture_output=True,
        timeout=60,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert re.fullmatch(bad.error + r".*", stderr.strip().splitlines()[-1]), stderr
    assert "Traceback" not in stderr
    assert sorted(await sqs.list_queues("")) == before
    assert await sqs.counts(urls["original"]) == (1, 0, 0)
    assert await sqs.counts(urls["plain"]) == (1, 0, 0)


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
async def test_a_queue_name_that_cannot_fit_the_format_is_refused_before_a_queue_is_created(
    sqs: SqsClient, unique_name: str, fifo: bool
) -> None:
    """A format whose fixed text leaves room for a standard name's first 5
    characters but none for a FIFO name (``.fifo`` takes 5 more): the FIFO
    original is refused with ``NameFormatError`` and nothing is created; the
    standard one fits (truncated)."""
    tight = NameFormat("p" * 55 + "{{RANDOM}}{{FALLBACK}}{{ORIGINAL_QUEUE}}", "sqs")
    original = await make_queue(sqs, unique_name + (".fifo" if fifo else ""))
    before = sorted(await sqs.list_queues(""))
    if fifo:
        with pytest.raises(NameFormatError, match="cannot fit 80 characters"):
            await create_temporary_queue(sqs, original, tight, fallback=True, session=None)
        assert sorted(await sqs.list_queues("")) == before
    else:
        made = await create_temporary_queue(sqs, original, tight, fallback=True, session=None)
        assert len(made.name) == 80
        assert made.name.endswith(unique_name[:5])


def test_a_malformed_queue_format_setting_exits_2_before_connecting(
    sqs_endpoint: ServerEndpoint, tmp_path: Path
) -> None:
    """``OPERATOR_SQS_SPLITTING_QUEUE_FORMAT`` without ``{{RANDOM}}``: the worker
    refuses its settings (``ConfigError``, exit 2, the usage/config code) before it
    touches any queue."""
    sessions = tmp_path / "sessions.json"
    write_sessions(sessions, [])
    env = process_env(
        sqs_endpoint, OPERATOR_SQS_SPLITTING_QUEUE_FORMAT="tmp{{FALLBACK}}{{ORIGINAL_QUEUE}}"
    )
    done = subprocess.run(
        worker_command(sqs_endpoint, "q", "fb", sessions),
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert stderr.strip().splitlines()[-1].startswith("ConfigError: "), stderr
    assert "{{RANDOM}}" in stderr
