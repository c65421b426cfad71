"""Crash safety of ``pymirror worker sqs`` as a process, on moto and LocalStack.

Messages carry a unique id and a ``user`` attribute that decides their one
right destination (alice's queue, bob's queue, else the fallback). A sender
streams them into the original while worker processes are killed and
restarted, and readers consume every destination all along (as developers and
the workload do; it also keeps moto fast, whose calls slow down with queue
length). Each id is then checked: found (not lost), where its attribute says
(not misrouted), and how often (duplicates). The figures are printed (run
with ``-s``) and recorded as JUnit properties.

No step has a wall-clock budget a busy machine can miss: each waits for as
long as messages keep moving (sent, or taken from a destination) and fails
only after :data:`~tests.integration.sqs.support.QUIET` seconds in which none
did, naming the counts seen so far. The pytest timeouts are hang guards only.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from splitter.sqs.client import SqsClient
from tests.faults.sqs_proxy import Rule, SqsProxy
from tests.integration.sqs.support import (
    FALLBACK,
    Outgoing,
    Reader,
    attribute,
    client_for,
    empty,
    make_queue,
    mid_of,
    process_env,
    send,
    start_worker,
    temporary,
    wait_moving,
    write_sessions,
)
from tests.servers.sqs import SqsEndpoint as ServerEndpoint

pytestmark = pytest.mark.integration

USERS = ("alice", "bob", "carol", "dave")
#: Messages a worker may hold at once (``sqs.max_in_hand``): the duplicate bound per kill.
MAX_IN_HAND = 100
#: ``sqs.shutdown_grace`` for these workers; SIGTERM must end the process within it.
SHUTDOWN_GRACE = 5.0
#: Pytest timeout of each test: a hang guard far beyond any run that keeps moving (every
#: wait fails by itself after QUIET seconds without progress).
HANG_GUARD = 1200
#: The SIGTERM test's workers' visibility timeout.
VISIBILITY_TIMEOUT = 30
#: Seconds of no progress that fail the SIGTERM test's finish: below the 30 s visibility
#: timeout its workers use, so a message left in flight (not released) shows as a stall.
STALL_BELOW_VISIBILITY = 20.0
#: Messages of the SIGTERM test per server (the kill test sends twice as many). moto
#: serves every call in Python, several times slower than LocalStack, and behind the
#: fault proxy a slow call lets the 4 s visibility timeout lapse and the server deliver
#: again; a few hundred messages are enough to be mid-stream at every kill and SIGTERM.
#: (Before pymirror.local_sqs made moto's receive linear, 2,000 took 10 minutes there.)
MESSAGES = {"localstack": 1000, "moto": 500}
#: Send batches the fault run cuts after the server stored them.
CUT_BATCHES = 5
#: What a worker logs when a visibility extension finally failed.
_EXTEND_GAVE_UP = "sqs visibility extension failed"


def lost_receive_replies(split: Split) -> int:
    """Receives whose reply the server cut, as the fault proxy saw them (0 without one)."""
    if split.proxy is None:
        return 0
    return sum(1 for call in split.proxy.lost_replies if call.action == "ReceiveMessage")


def destination(user: str) -> str:
    return user if user in ("alice", "bob") else FALLBACK


@dataclass
class Split:
    """An original, its fallback, alice's and bob's queues, and a sessions file."""

    original: str
    queues: dict[str, str]
    sessions: Path
    log: Path
    server: ServerEndpoint
    #: Where the worker processes send their calls (a fault proxy), if not to ``server``.
    worker_server: ServerEndpoint | None = None
    #: That proxy, when the test reads what the server delivered to the workers.
    proxy: SqsProxy | None = None
    sent: dict[str, str] = field(default_factory=dict)  # mid -> user
    readers: dict[str, Reader] = field(default_factory=dict)
    reading: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        server = self.worker_server or self.server
        env = process_env(
            server,
            PYMIRROR_SQS__MAX_IN_HAND=str(MAX_IN_HAND),
            PYMIRROR_SQS__SHUTDOWN_GRACE=str(SHUTDOWN_GRACE),
        )
        return start_worker(
            server,
            self.original,
            self.queues[FALLBACK],
            self.sessions,
            self.log,
            "--wait-seconds",
            "1",
            *extra,
            env=env,
        )

    async def stream(
        self,
        sqs: SqsClient,
        count: int,
        per_second: float,
        *,
        hold: int = 0,
        until: asyncio.Event | None = None,
    ) -> None:
        """Send ``count`` messages in batches of 10 at about ``per_second``; the last
        ``hold`` only once ``until`` is set, so the stream is still under way when the test
        acts on it (kills, SIGTERM), however slowly the workers start."""
        started, paced_from = time.monotonic(), 0
        for start in range(0, count, 10):
            if until is not None and start >= count - hold and not until.is_set():
                await until.wait()
                started, paced_from = time.monotonic(), start
            batch = []
            for n in range(start, min(start + 10, count)):
                mid, user = f"m{n:05d}", USERS[n % len(USERS)]
                self.sent[mid] = user
                batch.append(Outgoing(mid, {"user": attribute(user)}))
            await send(sqs, self.original, batch)
            ahead = started + (start + 10 - paced_from) / per_second - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)

    def read(self, sqs: SqsClient) -> None:
        """Start a reader on every destination."""
        self.readers = {label: Reader(url) for label, url in self.queues.items()}
        self.reading = [asyncio.create_task(r.run(sqs)) for r in self.readers.values()]

    def taken(self) -> int:
        return sum(len(r.taken) for r in self.readers.values())

    def moved(self) -> int:
        """Messages sent to the original plus copies taken from destinations: grows while
        anything is moving."""
        return len(self.sent) + self.taken()

    def distinct(self) -> int:
        return len({mid for r in self.readers.values() for mid, _at in r.taken})

    async def forwarded(self, more_than: int, process: subprocess.Popen[bytes]) -> None:
        """Wait until more than ``more_than`` copies were taken, while messages move."""
        await wait_moving(
            lambda: (
                f"the worker to forward more than {more_than} (taken {self.taken()}, "
                f"sent {len(self.sent)}; worker exit code {process.poll()})"
            ),
            lambda: self.taken() > more_than or process.poll() is not None,
            self.moved,
        )
        assert process.poll() is None, self.log.read_text()[-3000:]

    async def streamed(self, streaming: asyncio.Task[None]) -> None:
        """Wait for the stream to end, while it keeps sending."""
        await wait_moving(
            lambda: f"the stream to end ({len(self.sent)} sent so far)", streaming.done, self.moved
        )
        await streaming  # its exception, if any

    async def read_to_the_end(self) -> tuple[Counter[str], dict[str, str]]:
        """Wait until every id was taken (while copies keep coming), then until 2 s brought
        no copy more; stop the readers: (copies per mid, mid -> the wrong destination it was
        found in)."""
        with contextlib.suppress(AssertionError):  # stalled: the assertions name what is missing
            await wait_moving(
                lambda: f"every id to be taken ({self.distinct()} of {len(self.sent)})",
                lambda: self.distinct() >= len(self.sent),
                self.taken,
                every=0.2,
            )
        last = -1
        while last != self.taken():  # stray copies: until 2 s brought none
            last = self.taken()
            await asyncio.sleep(2.0)
        for reader in self.readers.values():
            reader.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.reading), 60)  # each ends after its poll
        copies = Counter(mid for r in self.readers.values() for mid, _at in r.taken)
        misrouted = {
            mid: label
            for label, r in self.readers.items()
            for mid, _at in r.taken
            if destination(self.sent.get(mid, "?")) != label
        }
        return copies, misrouted

    def summaries(self) -> list[dict[str, Any]]:
        """The ``summary()`` each worker that exited normally printed."""
        prefix = "pymirror worker sqs: "
        return [
            ast.literal_eval(line.removeprefix(prefix))
            for line in self.log.read_text().splitlines()
            if line.startswith(prefix)
        ]


@pytest.fixture
async def sqs(sqs_endpoint: ServerEndpoint) -> AsyncIterator[SqsClient]:
    async with client_for(sqs_endpoint) as client:
        yield client


@pytest.fixture
async def split(
    sqs: SqsClient, sqs_endpoint: ServerEndpoint, unique_name: str, tmp_path: Path
) -> Split:
    original = await make_queue(sqs, unique_name)
    queues = {label: await temporary(sqs, original, label) for label in USERS[:2]}
    queues[FALLBACK] = await temporary(sqs, original)
    sessions = tmp_path / "sessions.json"
    write_sessions(
        sessions,
        [
            {
                "id": user,
                "sequence": n,
                "queue": queues[user],
                "message_filter": {"user": f"^{user}$"},
            }
            for n, user in enumerate(("alice", "bob"), start=1)
        ],
    )
    return Split(original, queues, sessions, tmp_path / "worker.log", sqs_endpoint)


async def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM ``process`` and wait for it (bounded), off the event loop: a fault proxy
    in this loop must keep relaying the worker's last calls while it shuts down."""
    process.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(process.wait, SHUTDOWN_GRACE + 20)


def report(record_property: Any, figures: dict[str, Any]) -> None:
    for key, value in figures.items():
        record_property(key, value)
    print("\n" + ", ".join(f"{key}={value}" for key, value in figures.items()))


def inject_faults(proxy: SqsProxy, *, cuts: bool = True, throttles: int = 30) -> list[Rule]:
    """Faults of every kind the worker must ride out, for the whole run: a retriable
    failure of every 7th send entry (up to 300), throttled deletes and visibility changes
    (``throttles`` each), 503s on receives (20), and 5 send batches cut after the server stored them
    (the worker never learns they were sent: up to 10 duplicates each; unless not
    ``cuts``)."""
    seen = Counter[str]()

    def every_7th(entry: dict[str, Any]) -> bool:
        seen["send"] += 1
        return seen["send"] % 7 == 0

    rules = [
        Rule("SendMessageBatch", "fail_entries", entries=every_7th, times=300),
        Rule(
            "DeleteMessageBatch", "error", status=400, code="ThrottlingException", times=throttles
        ),
        Rule(
            "ChangeMessageVisibilityBatch",
            "error",
            status=400,
            code="ThrottlingException",
            times=throttles,
        ),
        Rule("ReceiveMessage", "error", status=503, code="ServiceUnavailable", times=20),
    ]
    if cuts:
        rules.append(Rule("SendMessageBatch", "cut", after_server=True, times=CUT_BATCHES))
    proxy.rules.extend(rules)
    return rules


@pytest.mark.timeout(HANG_GUARD)
@pytest.mark.parametrize("faults", ["no-faults", "faults"])
async def test_kill_9_three_times_mid_stream_loses_and_misroutes_nothing(
    sqs: SqsClient, split: Split, record_property: Any, faults: str
) -> None:
    """2,000 messages (1,000 on moto) with unique ids stream into the original while:

    1. a worker process starts and forwards (progress seen in the destinations);
    2. it is killed with SIGKILL while it holds messages - no release, no delete;
    3. a new worker starts at once; steps 1-3 happen three times;
    4. a last worker runs until the stream ended and the original is empty,
       the killed workers' in-hand messages having come back after their 4 s
       visibility timeout; then it is stopped with SIGTERM;
    5. every destination is read to the end: every id is there (0 lost), at
       the destination its ``user`` says (0 misrouted), and the copies beyond
       one are at most ``max_in_hand`` per kill.

    With ``faults``, the workers' calls go through a fault proxy for the whole run
    (:func:`inject_faults`): 0 lost and 0 misrouted again, and, the proxy seeing every
    message the server delivered, no message has more copies than deliveries except
    the batches cut after the server stored them (10 each). The duplicates themselves
    are not bounded there: behind the proxy (a Python hop in the test's own event loop)
    on a busy machine the server delivers many messages again (measured: 1,172
    deliveries beyond the 2,000 messages, 1,091 duplicates, none beyond a delivery;
    not pinned: calls delayed past the 4 s visibility timeout, or moto's unlocked
    receive).
    """
    total, kills = MESSAGES[split.server.kind] * 2, 3
    async with contextlib.AsyncExitStack() as stack:
        rules: list[Rule] = []
        if faults == "faults":
            proxy = await stack.enter_async_context(SqsProxy(split.server.url))
            split.worker_server = ServerEndpoint(split.server.kind, proxy.url, split.server.region)
            rules = inject_faults(proxy)
            split.proxy = proxy
        await kill_three_times(sqs, split, record_property, total, kills, rules)


async def kill_three_times(
    sqs: SqsClient,
    split: Split,
    record_property: Any,
    total: int,
    kills: int,
    rules: list[Rule],
) -> None:
    split.read(sqs)
    killed = asyncio.Event()
    streaming = asyncio.create_task(
        split.stream(sqs, total, per_second=100, hold=200, until=killed)
    )
    held_at_kill = []
    process = split.start("--visibility-timeout", "4")
    try:
        for _ in range(kills):
            await split.forwarded(split.taken() + 100, process)
            await asyncio.sleep(0.2)
            assert process.poll() is None, split.log.read_text()[-3000:]
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait, 10)
            held_at_kill.append((await sqs.counts(split.original))[1])
            process = split.start("--visibility-timeout", "4")
        assert not streaming.done(), "the stream ended before the last kill"
        killed.set()
        await split.streamed(streaming)
        await wait_moving(
            lambda: f"the original to empty ({split.taken()} taken, {len(split.sent)} sent)",
            partial(empty, sqs, split.original),
            split.moved,
        )
        assert await stop(process) == 0, split.log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        streaming.cancel()
    copies, misrouted = await split.read_to_the_end()
    lost = sorted(set(split.sent) - set(copies))
    duplicates = sum(copies.values()) - len(copies)
    cut = sum(r.hits for r in rules if r.kind == "cut")
    # A visibility extension still throttled when its messages' handles were about to
    # expire (the keeper retries until then) lets up to 10 of them come again.
    gave_up = split.log.read_text().count(_EXTEND_GAVE_UP)
    bound = kills * MAX_IN_HAND + cut * 10 + gave_up * 10
    # Through the proxy the server's deliveries are seen: each is forwarded at most once,
    # plus the batches cut after the server stored them (a worker's retry resends those).
    received = Counter(
        mid_of(m) for call in (split.proxy.calls if split.proxy else []) for m in call.received
    )
    beyond = sorted(m for m in copies if copies[m] > received[m]) if split.proxy else []
    redelivered = sum(received.values()) - len(received)
    report(
        record_property,
        {
            "messages": total,
            "kills": kills,
            "held_at_kill": held_at_kill,
            "lost": len(lost),
            "misrouted": len(misrouted),
            "duplicates": duplicates,
            "duplicate_bound": bound,
            "extensions_given_up": gave_up,
            "redelivered_by_server": redelivered,
            "fault_hits": [rule.hits for rule in rules],
        },
    )
    assert lost == []
    assert misrouted == {}
    assert set(copies) == set(split.sent)
    if split.proxy is None:
        assert duplicates <= bound
    else:
        # Behind the proxy (a Python hop in the test's own event loop) a busy machine
        # delays calls past the 4 s visibility timeout and the server delivers messages
        # again; what the worker must not do is add copies of its own.
        extra = sum(copies[m] - received[m] for m in beyond)
        assert extra <= cut * 10, (beyond[:20], extra)
    for rule in rules:
        if rule.action == "ChangeMessageVisibilityBatch":
            continue  # only made when a message is held 2 s: a fast server may never need one
        assert rule.hits > 0, f"the {rule.kind} fault on {rule.action} never hit"


@pytest.mark.timeout(HANG_GUARD)
@pytest.mark.parametrize("faults", ["no-faults", "faults"])
async def test_sigterm_mid_stream_exits_0_in_time_losing_and_duplicating_nothing(
    sqs: SqsClient, split: Split, record_property: Any, faults: str
) -> None:
    """1,000 messages (500 on moto) stream into the original; the worker's visibility timeout is
    30 s, so a message left in flight would show as a 30 s stall:

    1. a worker process forwards part of the stream;
    2. SIGTERM: it stops receiving, forwards or releases what it holds and exits
       0 within the shutdown grace; nothing is left in flight at the original;
    3. a second worker finishes the stream without a stall as long as the 30 s
       visibility timeout (nothing was left in flight), then is stopped with SIGTERM too;
    4. every id is at its destination exactly once: 0 lost, 0 misrouted, no
       duplicate beyond a delivery the server itself repeated.

    With ``faults``, the workers' calls go through a fault proxy for the whole run
    (:func:`inject_faults` without the cut sends, whose duplicates the worker cannot
    count, and with bursts of 3 throttles: what the last calls of a stop ride out
    within their own 2 s bound): the same bounds hold.
    """
    async with contextlib.AsyncExitStack() as stack:
        if faults == "faults":
            proxy = await stack.enter_async_context(SqsProxy(split.server.url))
            split.worker_server = ServerEndpoint(split.server.kind, proxy.url, split.server.region)
            inject_faults(proxy, cuts=False, throttles=3)
        await sigterm_mid_stream(sqs, split, record_property)


async def sigterm_mid_stream(sqs: SqsClient, split: Split, record_property: Any) -> None:
    total = MESSAGES[split.server.kind]
    split.read(sqs)
    restarted = asyncio.Event()
    streaming = asyncio.create_task(
        split.stream(sqs, total, per_second=100, hold=total * 3 // 10, until=restarted)
    )
    process = split.start("--visibility-timeout", str(VISIBILITY_TIMEOUT))
    try:
        await split.forwarded(150, process)
        terminated = time.monotonic()
        code = await stop(process)
        exit_seconds = time.monotonic() - terminated
        assert code == 0, split.log.read_text()[-3000:]
        in_flight = (await sqs.counts(split.original))[1]
        assert not streaming.done(), "the stream ended before SIGTERM"
        process = split.start("--visibility-timeout", str(VISIBILITY_TIMEOUT))
        restarted.set()
        finish_started = time.monotonic()
        await split.streamed(streaming)
        # A message the first worker left in flight would come back only after its 30 s
        # visibility timeout: at the end of the stream nothing would move meanwhile, so
        # this wait fails after STALL_BELOW_VISIBILITY s of no progress instead.
        emptied = partial(
            wait_moving,
            lambda: f"the original to empty ({split.taken()} taken, {len(split.sent)} sent)",
            partial(empty, sqs, split.original),
            split.moved,
        )
        try:
            await emptied(quiet=STALL_BELOW_VISIBILITY)
        except AssertionError as stalled:
            # A receive whose reply the server cut (the proxy saw it) may have left
            # messages in flight that no worker ever held: they come back after the
            # visibility timeout. Only then is a stall no proof against the worker.
            if not lost_receive_replies(split):
                raise AssertionError(
                    f"{stalled}; original (visible, in flight, delayed) "
                    f"{await sqs.counts(split.original)}, {split.distinct()} distinct ids "
                    f"taken, in flight after the SIGTERM {in_flight}; worker log:\n"
                    + split.log.read_text()[-4000:]
                ) from stalled
            await emptied(quiet=VISIBILITY_TIMEOUT + STALL_BELOW_VISIBILITY)
        finish_seconds = time.monotonic() - finish_started
        assert await stop(process) == 0, split.log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        streaming.cancel()
    copies, misrouted = await split.read_to_the_end()
    summaries = split.summaries()
    assert len(summaries) == 2, split.log.read_text()[-3000:]
    released = sum(s["released"] for s in summaries)
    # Deliveries beyond one per message that are not releases: the server repeated them.
    server_repeats = sum(s["received"] for s in summaries) - total - released
    lost = sorted(set(split.sent) - set(copies))
    duplicates = sum(copies.values()) - len(copies)
    report(
        record_property,
        {
            "messages": total,
            "exit_seconds": round(exit_seconds, 2),
            "shutdown_grace": SHUTDOWN_GRACE,
            "released_on_sigterm": summaries[0]["released"],
            "in_flight_after_exit": in_flight,
            "finish_seconds": round(finish_seconds, 2),
            "lost": len(lost),
            "misrouted": len(misrouted),
            "duplicates": duplicates,
            "server_repeats": server_repeats,
        },
    )
    # Bound: max(wait_seconds=1, shutdown_grace) plus a call, and process teardown.
    assert exit_seconds < SHUTDOWN_GRACE + 3
    assert in_flight == 0
    assert lost == []
    assert misrouted == {}
    assert duplicates <= max(server_repeats, 0)
