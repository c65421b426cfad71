"""The SQS forwarding pipeline: received messages in, batched forwards and deletes out.

A message handed to :meth:`Forwarding.submit` is *in hand* until it is either
deleted from its source queue (every forward succeeded) or released (made
visible again at once, so it is received again later). Nothing else can
happen to it: a forward is never assumed, every ``Failed`` entry of every
batch call is looked at.

- Forwards are buffered per destination and sent with ``SendMessageBatch``
  when 10 entries (or ~256 KiB) are waiting, or when the oldest waited
  ``linger`` seconds, so batches stay full at load and latency stays low
  when idle. While receives come back full (a backlog: the messages waited
  in the queue anyway) a partly-full batch waits longer, as long as it fills
  fast enough to be full within ``backlog_linger``; a short receive, polls
  that find the queue empty, or full hands (no room to receive more) end
  that.
- A failed entry that SQS calls retriable (throttling, a server fault) is
  sent again with exponential backoff; one that is the sender's fault, or
  still failing after ``retry_for`` seconds, makes its message *fail*: it is
  released and counted, never dropped.
- Deletes are batched per source queue the same way. A receipt handle that
  expired (the message stayed in hand past its visibility timeout) cannot be
  deleted: the message will be delivered again - a counted duplicate.
- FIFO: sends to one destination are serialized and each batch keeps
  receive order, so order per ``MessageGroupId`` holds; the deduplication id
  is derived from the original message id, so a retried forward (also after
  a crash, within SQS's 5-minute window) is deduplicated by SQS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from splitter.errors import SqsError
from splitter.filters import MessageView
from splitter.routing import Router, Target
from splitter.sqs.client import Message, SqsClient

log = structlog.get_logger()

BATCH_ENTRIES = 10
#: SendMessageBatch payload limit we keep under (SQS allows 256 KiB per batch).
BATCH_BYTES = 250 * 1024
_ATTRIBUTE_KEYS = ("DataType", "StringValue", "BinaryValue")


@dataclass
class SqsWorkerStats:
    """Counters of one worker (exported as Prometheus metrics by the process form)."""

    received: int = 0
    forwarded: Counter[str] = field(default_factory=Counter)  # session id or "fallback"
    failed: int = 0  # messages whose forward failed: released, delivered again later
    released: int = 0  # messages made visible again (shutdown or failure)
    deleted: int = 0
    delete_failed: int = 0  # receipt handle expired: the message comes again (duplicate)
    rerouted: int = 0  # leftovers of ended sessions routed again
    returned: int = 0  # fallback leftovers moved back to the original
    send_batches: int = 0
    send_entries: int = 0
    throttled: int = 0
    extended: int = 0  # visibility timeouts restarted for messages held long

    def entries_per_batch(self) -> float:
        return self.send_entries / self.send_batches if self.send_batches else 0.0


def forward_entry(message: Message, entry_id: str, *, fifo: bool) -> dict[str, Any]:
    """A ``SendMessageBatch`` entry carrying ``message`` unchanged."""
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message.get("Body", "")}
    attributes = message.get("MessageAttributes")
    if attributes:
        entry["MessageAttributes"] = {
            name: {k: value[k] for k in _ATTRIBUTE_KEYS if k in value}
            for name, value in attributes.items()
        }
    system = message.get("Attributes", {})
    trace = system.get("AWSTraceHeader")
    if trace:
        entry["MessageSystemAttributes"] = {
            "AWSTraceHeader": {"DataType": "String", "StringValue": trace}
        }
    if fifo:
        entry["MessageGroupId"] = system.get("MessageGroupId", "pymirror")
        # Stable across redeliveries of the same original message: SQS drops a resend.
        entry["MessageDeduplicationId"] = message["MessageId"]
    return entry


def _entry_size(entry: dict[str, Any]) -> int:
    size = len(entry["MessageBody"].encode())
    for name, value in entry.get("MessageAttributes", {}).items():
        size += len(name) + len(value["DataType"])
        size += len(value.get("StringValue", "")) + len(value.get("BinaryValue", b""))
    return size


class _InHand:
    """One received message until it is deleted or released."""

    __slots__ = ("failed", "message", "pending", "since", "source")

    def __init__(self, message: Message, source: str, pending: int, since: float) -> None:
        self.message = message
        self.source = source
        self.pending = pending
        self.failed = False
        #: When its visibility timeout last (re)started.
        self.since = since


@dataclass
class _Outbox:
    entries: list[tuple[dict[str, Any], _InHand, str]] = field(default_factory=list)
    size: int = 0
    since: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Forwarding:
    """Batches forwards and deletes for one worker; see the module docstring.

    ``spawn`` runs a coroutine as an owned task (the worker's TaskGroup).
    """

    def __init__(
        self,
        client: SqsClient,
        spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]],
        *,
        fifo: bool,
        stats: SqsWorkerStats,
        linger: float = 0.02,
        backlog_linger: float = 1.0,
        retry_for: float = 30.0,
        max_in_hand: int = 1000,
        concurrency: int = 16,
    ) -> None:
        self.client = client
        self.fifo = fifo
        self.stats = stats
        self.linger = linger
        self.backlog_linger = max(backlog_linger, linger)
        self._backlog = False
        #: When the last receive returned, and how long a full one takes (moving average).
        self._received_at = 0.0
        self._full_receive = 0.0
        self.retry_for = retry_for
        self._spawn_in = spawn
        self._tasks: set[asyncio.Task[None]] = set()
        self._outboxes: dict[str, _Outbox] = {}
        self._deletes: dict[str, list[_InHand]] = {}
        self._deletes_since: dict[str, float] = {}
        self._in_hand: set[_InHand] = set()
        #: Forwards queued or in flight, per destination.
        self._to: Counter[str] = Counter()
        self._room = asyncio.Semaphore(max_in_hand)
        self._calls = asyncio.Semaphore(concurrency)
        self._idle = asyncio.Event()
        self._idle.set()
        self._entry_ids = 0

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = self._spawn_in(coro, name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- intake ----------------------------------------------------------------

    async def reserve(self, count: int) -> None:
        """Wait until ``count`` more messages may be held (call before receiving them)."""
        for _ in range(count):
            if self._room.locked():
                self.flush()  # hands full: partly-full batches must not stall intake
            await self._room.acquire()

    def unreserve(self, count: int) -> None:
        for _ in range(count):
            self._room.release()

    def note_receive(self, count: int, seconds: float) -> None:
        """A receive returned ``count`` messages after ``seconds``: full means a backlog
        (see the docstring)."""
        self._received_at = time.monotonic()
        self._backlog = count >= BATCH_ENTRIES
        if self._backlog:
            self._full_receive += (seconds - self._full_receive) / 8

    def _in_backlog(self, now: float) -> bool:
        """The last receive was full, and another one came back since, as receives do while
        messages wait: polls out for several times that long find the queue empty."""
        quiet = max(2 * self._full_receive, 3 * self.linger)
        return self._backlog and now - self._received_at < quiet

    def submit(self, source: str, messages: Iterable[Message], router: Router) -> None:
        """Route ``messages`` (reserved beforehand) and queue their forwards."""
        now = time.monotonic()
        for message in messages:
            view = MessageView.from_sqs(message.get("MessageAttributes"), message.get("Body"))
            targets = router.route(view)
            held = _InHand(message, source, len(targets), now)
            self._in_hand.add(held)
            self._idle.clear()
            for target in targets:
                self._queue(target, held, now)
        self._flush_ready(now)

    def _queue(self, target: Target, held: _InHand, now: float) -> None:
        outbox = self._outboxes.get(target.destination)
        if outbox is None:
            outbox = self._outboxes[target.destination] = _Outbox()
        self._entry_ids += 1
        entry = forward_entry(held.message, f"m{self._entry_ids}", fifo=self.fifo)
        size = _entry_size(entry)
        if outbox.entries and outbox.size + size > BATCH_BYTES:
            self._send(target.destination, outbox)
        if not outbox.entries:
            outbox.since = now
        self._to[target.destination] += 1
        outbox.entries.append((entry, held, target.session_id or "fallback"))
        outbox.size += size
        if len(outbox.entries) >= BATCH_ENTRIES:
            self._send(target.destination, outbox)

    # --- flushing --------------------------------------------------------------

    def _flush_ready(self, now: float, *, everything: bool = False) -> None:
        backlog = self._in_backlog(now)
        for destination, outbox in list(self._outboxes.items()):
            if outbox.entries and (
                everything or self._due(len(outbox.entries), now - outbox.since, backlog)
            ):
                self._send(destination, outbox)
        # Deletes never wait for a backlog: a forwarded message still held only keeps its
        # receipt handle busy (and makes some servers' receives slower), it saves no call.
        for source, held in list(self._deletes.items()):
            if held and (everything or now - self._deletes_since[source] >= self.linger):
                self._delete(source)

    def _due(self, count: int, age: float, backlog: bool) -> bool:
        """A partly-full batch of ``count`` entries, the oldest ``age`` s old, goes after
        ``linger``; in a backlog only once it is not filling fast enough to be full within
        ``backlog_linger`` (a quiet destination does not hold its messages for nothing)."""
        if age < self.linger:
            return False
        return not backlog or count * self.backlog_linger < BATCH_ENTRIES * age

    def flush(self) -> None:
        """Send everything buffered now, full batches or not."""
        self._flush_ready(time.monotonic(), everything=True)

    async def run_flusher(self, stopped: asyncio.Event) -> None:
        """Flush lingering batches every ``linger`` seconds until ``stopped``."""
        while not stopped.is_set():
            await asyncio.sleep(self.linger)
            self._flush_ready(time.monotonic())

    async def run_keeper(self, stopped: asyncio.Event, visibility: int) -> None:
        """Keep in-hand messages invisible: any held for half of ``visibility`` seconds gets
        its timeout restarted, so a slow or throttled forward cannot let its receipt handle
        expire (which would deliver the message again: a duplicate)."""
        period = max(visibility / 4, 0.5)
        while not stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), period)
                return
            now = time.monotonic()
            stale: dict[str, list[_InHand]] = {}
            for held in self._in_hand:
                if now - held.since >= visibility / 2:
                    stale.setdefault(held.source, []).append(held)
            for source, group in stale.items():
                for start in range(0, len(group), BATCH_ENTRIES):
                    chunk = group[start : start + BATCH_ENTRIES]
                    entries = [(str(i), h.message["ReceiptHandle"]) for i, h in enumerate(chunk)]
                    try:
                        async with self._calls:
                            result = await self.client.change_visibility_batch(
                                source, entries, visibility
                            )
                    except SqsError as e:
                        log.warning("sqs visibility extension failed", queue=source, error=str(e))
                        continue
                    for entry_id in result.ok:
                        chunk[int(entry_id)].since = now
                    self.stats.extended += len(result.ok)

    def _send(self, destination: str, outbox: _Outbox) -> None:
        batch = outbox.entries
        outbox.entries, outbox.size = [], 0
        self._spawn(self._send_batch(destination, outbox, batch), f"send->{destination}")

    async def _send_batch(
        self, destination: str, outbox: _Outbox, batch: list[tuple[dict[str, Any], _InHand, str]]
    ) -> None:
        if self.fifo:
            async with outbox.lock:  # one batch at a time keeps group order
                await self._send_with_retries(destination, batch)
        else:
            await self._send_with_retries(destination, batch)

    async def _send_with_retries(
        self, destination: str, batch: list[tuple[dict[str, Any], _InHand, str]]
    ) -> None:
        pending = {entry["Id"]: (entry, held, label) for entry, held, label in batch}
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        while pending:
            entries = [entry for entry, _h, _l in pending.values()]
            try:
                async with self._calls:
                    result = await self.client.send_batch(destination, entries)
            except SqsError as e:
                if not e.retriable or time.monotonic() > deadline:
                    log.warning("sqs forward failed", destination=destination, error=str(e))
                    for _entry, held, _label in pending.values():
                        self._to[destination] -= 1
                        self._settle(held, ok=False)
                    return
                self.stats.throttled += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.stats.send_batches += 1
            self.stats.send_entries += len(entries)
            for entry_id in result.ok:
                _entry, held, label = pending.pop(entry_id)
                self.stats.forwarded[label] += 1
                self._to[destination] -= 1
                self._settle(held, ok=True)
            retry = False
            for entry_id, (code, message, sender_fault) in result.failed.items():
                if sender_fault or time.monotonic() > deadline:
                    _entry, held, _label = pending.pop(entry_id)
                    self._to[destination] -= 1
                    log.warning(
                        "sqs forward entry failed",
                        destination=destination,
                        code=code,
                        error=message,
                        message_id=held.message.get("MessageId"),
                    )
                    self._settle(held, ok=False)
                else:
                    retry = True
            if retry:
                self.stats.throttled += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _settle(self, held: _InHand, *, ok: bool) -> None:
        if not ok and not held.failed:
            held.failed = True
            self.stats.failed += 1
        held.pending -= 1
        if held.pending:
            return
        if held.failed:
            # Visible again after a backoff that grows with its receive count, so a
            # destination that keeps failing is not hammered in a hot loop.
            receives = int(held.message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
            self._spawn(self._release([held], min(2**receives, 60)), "release")
            return
        queue = self._deletes.setdefault(held.source, [])
        if not queue:
            self._deletes_since[held.source] = time.monotonic()
        queue.append(held)
        if len(queue) >= BATCH_ENTRIES:
            self._delete(held.source)

    # --- deleting and releasing ----------------------------------------------------

    def _delete(self, source: str) -> None:
        held = self._deletes.pop(source)
        self._spawn(self._delete_batch(source, held), f"delete<-{source}")

    async def _delete_batch(self, source: str, held: list[_InHand]) -> None:
        entries = [(str(i), h.message["ReceiptHandle"]) for i, h in enumerate(held)]
        delay = 0.05
        deadline = time.monotonic() + self.retry_for
        while entries:
            try:
                async with self._calls:
                    result = await self.client.delete_batch(source, entries)
            except SqsError as e:
                if not e.retriable or time.monotonic() > deadline:
                    log.warning("sqs delete failed", queue=source, error=str(e))
                    self.stats.delete_failed += len(entries)
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.stats.deleted += len(result.ok)
            retry = []
            for entry_id, (code, _message, sender_fault) in result.failed.items():
                if sender_fault or time.monotonic() > deadline:
                    # Typically ReceiptHandleIsInvalid: held past its visibility timeout.
                    log.warning("sqs delete entry failed; it will be delivered again", code=code)
                    self.stats.delete_failed += 1
                else:
                    retry.append(entry_id)
            entries = [e for e in entries if e[0] in retry]
            if entries:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self._done(held)

    async def _release(self, held: list[_InHand], visibility: int = 0) -> None:
        """Make ``held`` visible again after ``visibility`` s (best effort: else its timeout)."""
        by_source: dict[str, list[_InHand]] = {}
        for h in held:
            by_source.setdefault(h.source, []).append(h)
        for source, group in by_source.items():
            for start in range(0, len(group), BATCH_ENTRIES):
                chunk = group[start : start + BATCH_ENTRIES]
                entries = [(str(i), h.message["ReceiptHandle"]) for i, h in enumerate(chunk)]
                try:
                    async with self._calls:
                        await self.client.change_visibility_batch(source, entries, visibility)
                except SqsError as e:
                    log.warning("sqs release failed; visible after its timeout", error=str(e))
        self.stats.released += len(held)
        self._done(held)

    def _done(self, held: list[_InHand]) -> None:
        for h in held:
            if h in self._in_hand:
                self._in_hand.discard(h)
                self._room.release()
        if not self._in_hand:
            self._idle.set()

    # --- shutdown --------------------------------------------------------------

    def holding(self, source: str | None = None) -> int:
        """Messages in hand (from ``source`` only, if given)."""
        if source is None:
            return len(self._in_hand)
        return sum(1 for h in self._in_hand if h.source == source)

    async def wait_destination(self, destination: str) -> None:
        """Flush, then wait until no forward to ``destination`` is queued or in flight."""
        while self._to[destination] > 0:
            self.flush()
            await asyncio.sleep(self.linger)

    async def wait_source(self, source: str) -> None:
        """Flush, then wait until nothing received from ``source`` is in hand."""
        while self.holding(source):
            self.flush()
            await asyncio.sleep(self.linger)

    async def wait_idle(self, within: float | None = None) -> bool:
        """Flush (again every 50 ms at most) until nothing is in hand; False after ``within`` s."""
        deadline = None if within is None else time.monotonic() + within
        step = min(self.linger, 0.05)
        while not self._idle.is_set():
            self.flush()
            wait = step if deadline is None else min(step, deadline - time.monotonic())
            if wait <= 0:
                return False
            try:
                await asyncio.wait_for(self._idle.wait(), max(wait, 0.001))
            except TimeoutError:
                continue
        return True

    async def close(self, grace: float) -> None:
        """Finish what is in hand within ``grace`` s; then release what was not forwarded.

        Messages forwarded everywhere are deleted; the others are made visible at
        once, so nothing waits out a visibility timeout and nothing is lost.
        """
        if await self.wait_idle(grace):
            return
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        forwarded = [h for h in self._in_hand if not h.pending and not h.failed]
        by_source: dict[str, list[_InHand]] = {}
        for h in forwarded:
            by_source.setdefault(h.source, []).append(h)
        for source, group in by_source.items():
            for start in range(0, len(group), BATCH_ENTRIES):
                await self._delete_batch(source, group[start : start + BATCH_ENTRIES])
        rest = list(self._in_hand)
        if rest:
            log.info("sqs releasing messages not forwarded in time", count=len(rest))
            await self._release(rest)
