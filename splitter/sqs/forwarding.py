"""The SQS forwarding pipeline: received messages in, batched forwards and deletes out.

A message handed to :meth:`Forwarding.submit` is *in hand* until it is either
deleted from its source queue (every forward succeeded) or released (made
visible again at once, so it is received again later). Nothing else can
happen to it: a forward is never assumed, every ``Failed`` entry of every
batch call is looked at.

- Forwards are buffered per destination and sent with ``SendMessageBatch``
  when 10 entries (or ~256 KiB) are waiting, or when the batching policy
  (:mod:`splitter.sqs.batching`: ``linger``, ``backlog_linger``) says a
  partly-full one is due; full hands (no room to receive more) flush at once.
  A partly-full batch waits at all only in a backlog or when its destination's
  recent rate expects another entry within ``linger``: at a few messages per
  second per queue it goes at once (the wait would save no call).
- A failed entry that SQS calls retriable (throttling, a server fault) is
  sent again with exponential backoff (:class:`~splitter.backoff.Backoff`);
  one that is the sender's fault, or still failing after ``retry_for``
  seconds, makes its message *fail*: it is released (visible again after a
  delay growing with its receive count) and counted, never dropped.
- Deletes are batched per source queue the same way; on a standard queue a
  partly-full one also waits ``delete_linger`` (no latency: the message was
  forwarded), and it waits for the rest of the receives it holds: the forwards of
  one receive settle one send batch at a time, and a delete sent when the first
  settled carried 2-3 entries (72 deletes per 400 messages at 10 sessions, the
  plain receive-send-delete loop's 40). The wait is one send round trip, at most
  ``backlog_linger`` (a throttled straggler), and no latency either. A receipt handle that
  expired (the message stayed in hand past its visibility timeout) cannot be
  deleted: the message will be delivered again - a counted duplicate.
- FIFO: sends to one destination are serialized (one pump task per
  destination), each batch keeps receive order and holds at most one entry
  per ``MessageGroupId``, so a failed entry never has a successor of its group
  in the same call. A failed entry blocks its group: it is retried before any
  later message of that group is sent, and if it finally fails it is released
  together with the later messages of its group still waiting, all visible
  again after the same delay, so SQS redelivers them in order (deduplication: see
  :func:`~splitter.sqs.batching.forward_entry`). The price: a single-group
  FIFO queue forwards one message per call to each destination.

Every bound comes from :class:`~splitter.sqs.settings.SqsSettings`; the pure
parts (entries, when a batch is due, the backlog) are :mod:`splitter.sqs.batching`.
This module is longer than most (~480 lines) for a reason: it is one ledger of
messages in hand, and intake, flushing, send/delete retries, the visibility
keeper and shutdown all update it under the same invariant (a message leaves
it only deleted or released); split apart they would share its internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from splitter.backoff import Backoff, exponential
from splitter.errors import SqsError
from splitter.filters import MessageView
from splitter.routing import Delivery, Router
from splitter.sqs.batching import (
    BATCH_BYTES,
    BATCH_ENTRIES,
    ArrivalRate,
    Outbox,
    ReceivePace,
    due,
    entry_size,
    forward_entry,
    group_of,
    worth_waiting,
)
from splitter.sqs.client import Message, SqsClient
from splitter.sqs.settings import SqsSettings
from splitter.sqs.stats import SqsWorkerStats as SqsWorkerStats  # re-exported: was defined here

log = structlog.get_logger()

#: Retries of a failed batch call: the first after 50 ms, doubling up to 2 s.
_RETRY_FIRST, _RETRY_CEILING = 0.05, 2.0
#: Seconds the deletes and releases at the end of a stop may spend retrying a throttle or
#: 5xx (after the shutdown grace): a bounded stop, and nothing left in flight for long.
_FINAL_CALLS_FOR = 2.0
#: A message whose forward failed is visible again after 2 s, doubling with each
#: receive of it up to 60 s, so a destination that keeps failing is not hammered.
_RELEASE_FIRST, _RELEASE_CEILING = 2.0, 60.0
_RELEASE_FAILED = "sqs release failed; visible after its timeout"
_EXTEND_FAILED = "sqs visibility extension failed"
#: Seconds before a held message's visibility timeout ends at which the keeper stops
#: retrying its extension (the call itself must still reach the server in time).
_EXTEND_MARGIN = 0.5


def release_delay(receive_count: int) -> int:
    """Seconds a message whose forward failed stays invisible, by its receive count."""
    return int(exponential(max(receive_count, 1), _RELEASE_FIRST, _RELEASE_CEILING))


class _Receive:
    """The messages of one receive not yet settled (forwarded everywhere or failed)."""

    __slots__ = ("unsettled",)

    def __init__(self, count: int) -> None:
        self.unsettled = count


class _InHand:
    """One received message until it is deleted or released."""

    __slots__ = ("delay", "failed", "message", "pending", "receive", "since", "source")

    def __init__(
        self, message: Message, source: str, pending: int, since: float, receive: _Receive
    ) -> None:
        self.message = message
        self.source = source
        self.pending = pending
        self.receive = receive
        self.failed = False
        #: Seconds it stays invisible once released, if not by its own receive count:
        #: released behind a failed message of its FIFO group, it gets that one's delay,
        #: so the group comes back at once and in order.
        self.delay: int | None = None
        #: When its visibility timeout last (re)started.
        self.since = since


_Entry = tuple[dict[str, Any], _InHand, str]
#: The event loop's clock is ``time.monotonic``; a timer may run this much early.
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution


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
        settings: SqsSettings,
    ) -> None:
        self.client = client
        self.fifo = fifo
        self.stats = stats
        self.settings = settings
        self.linger = settings.linger
        self._pace = ReceivePace()
        self._spawn_in = spawn
        self._tasks: set[asyncio.Task[None]] = set()
        self._outboxes: dict[str, Outbox] = {}
        self._rates: dict[str, ArrivalRate] = {}
        self._deletes: dict[str, list[_InHand]] = {}
        self._deletes_since: dict[str, float] = {}
        self._in_hand: set[_InHand] = set()
        #: Forwards queued or in flight, per destination.
        self._to: Counter[str] = Counter()
        self._room = asyncio.Semaphore(settings.max_in_hand)
        self._calls = asyncio.Semaphore(settings.batch_calls)
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

    def note_receive(self, count: int, seconds: float, *, waited: bool = True) -> None:
        """A receive returned ``count`` messages after ``seconds``; ``waited``: they were in
        the queue before its poll began (see :class:`~splitter.sqs.batching.ReceivePace`)."""
        self._pace = self._pace.after(count, seconds, time.monotonic(), waited=waited)

    def submit(self, source: str, messages: Sequence[Message], router: Router) -> None:
        """Route ``messages`` (reserved beforehand, one receive's) and queue their forwards."""
        now = time.monotonic()
        started: list[tuple[str, Outbox]] = []
        receive = _Receive(len(messages))
        for message in messages:
            view = MessageView.from_sqs(message.get("MessageAttributes"), message.get("Body"))
            targets = router.route(view)
            if all(t.session_id is None for t in targets):
                self.stats.unmatched += 1
            held = _InHand(message, source, len(targets), now, receive)
            self._in_hand.add(held)
            self._idle.clear()
            for target in targets:
                self._queue(target, held, now, started)
        self._hold_or_send(started, now)
        self._flush_ready(now)

    def _queue(
        self, target: Delivery, held: _InHand, now: float, started: list[tuple[str, Outbox]]
    ) -> None:
        self._entry_ids += 1
        entry = forward_entry(held.message, f"m{self._entry_ids}", fifo=self.fifo)
        size = entry_size(entry)
        destination = target.destination
        outbox = self._outboxes.get(destination)
        if outbox is not None and outbox.entries and outbox.size + size > BATCH_BYTES:
            self._send(destination, outbox)
            outbox = self._outboxes.get(destination)  # dropped once sent (not FIFO)
        if outbox is None:
            outbox = self._outboxes[destination] = Outbox()
        if not outbox.entries:
            outbox.since = now
            started.append((destination, outbox))
        rate = self._rates.get(destination)
        if rate is None:
            rate = self._rates[destination] = ArrivalRate()
        rate.add(now)
        self._to[destination] += 1
        outbox.entries.append((entry, held, target.session_id or "fallback"))
        outbox.size += size
        if len(outbox.entries) >= BATCH_ENTRIES:
            self._send(destination, outbox)

    def _hold_or_send(self, started: list[tuple[str, Outbox]], now: float) -> None:
        """A batch a submit started waits ``linger`` (a timer) only if another entry for its
        destination is expected meanwhile, or in a backlog (the batching policy decides when
        it goes); otherwise it goes now: waiting would add latency and save no call."""
        backlog = self._pace.in_backlog(now, self.linger)
        for destination, outbox in started:
            if self._outboxes.get(destination) is not outbox or not outbox.entries:
                continue  # sent full meanwhile
            if backlog or worth_waiting(self._rates[destination], self.linger):
                self._arm(destination, outbox)
            else:
                self._send(destination, outbox)

    # --- flushing --------------------------------------------------------------

    def _flush_ready(self, now: float, *, everything: bool = False) -> None:
        backlog = self._pace.in_backlog(now, self.linger)
        for destination, outbox in list(self._outboxes.items()):
            if outbox.entries and (
                everything
                or due(
                    now - outbox.since,
                    linger=self.linger,
                    backlog_linger=self.settings.backlog_linger,
                    backlog=backlog,
                )
            ):
                self._send(destination, outbox)
        # Deletes follow the same policy, and on a standard queue a partly-full
        # DeleteMessageBatch waits ``delete_linger`` at least: the message is forwarded
        # already and stays invisible, so waiting adds no latency and saves calls
        # (forwards settle one send batch at a time, a few entries each). On FIFO an
        # undeleted message holds back its group: there deletes go after ``linger``.
        for source, held in list(self._deletes.items()):
            if held and (everything or self._delete_due(source, held, now, backlog)):
                self._delete(source)

    def _delete_due(self, source: str, held: list[_InHand], now: float, backlog: bool) -> bool:
        """Whether the partly-full delete batch of ``source`` goes now: after its linger
        (``delete_linger`` on a standard queue), and there once the receives it holds
        have settled, or after ``backlog_linger`` whatever they do."""
        age = now - self._deletes_since[source]
        if self.fifo:
            linger = self.linger
        else:
            linger = max(self.linger, self.settings.delete_linger)
            if age < self.settings.backlog_linger and any(h.receive.unsettled for h in held):
                return False
        return due(age, linger=linger, backlog_linger=self.settings.backlog_linger, backlog=backlog)

    def _arm(self, destination: str, outbox: Outbox) -> None:
        """Send ``outbox``'s batch, if still partly full, the moment it is ``linger`` old:
        a tick of the flusher would add up to another ``linger`` of latency."""
        when = outbox.since + self.linger + _CLOCK_RESOLUTION  # never a hair early
        asyncio.get_running_loop().call_at(when, self._lingered, destination, outbox)

    def _lingered(self, destination: str, outbox: Outbox) -> None:
        if self._outboxes.get(destination) is not outbox or not outbox.entries:
            return  # sent (full) meanwhile; a newer batch has a timer of its own
        now = time.monotonic()
        if due(
            now - outbox.since,
            linger=self.linger,
            backlog_linger=self.settings.backlog_linger,
            backlog=self._pace.in_backlog(now, self.linger),
        ):
            self._send(destination, outbox)

    def flush(self) -> None:
        """Send everything buffered now, full batches or not."""
        self._flush_ready(time.monotonic(), everything=True)

    async def run_flusher(self, stopped: asyncio.Event) -> None:
        """Flush lingering batches every ``linger`` seconds until ``stopped``; in a backlog,
        where partly-full batches wait ``backlog_linger``, every tenth of that (at least
        ``linger``): fewer wake-ups while the worker is busiest."""
        backlog_tick = max(self.linger, self.settings.backlog_linger / 10)
        while not stopped.is_set():
            now = time.monotonic()
            tick = self.linger
            if self._pace.in_backlog(now, self.linger):
                # Wake when the backlog would end too: what it held goes out at once then.
                ends = self._pace.backlog_ends(self.linger) - now
                tick = min(backlog_tick, max(ends, self.linger))
            await asyncio.sleep(tick)
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
                messages = [h.message for h in group]
                # A throttle or 5xx is tried again until shortly before the oldest handle
                # expires: one failed call would otherwise deliver up to 10 messages again.
                oldest = min(h.since for h in group)
                left = visibility - (time.monotonic() - oldest) - _EXTEND_MARGIN
                extended = await self._set_visibility(
                    source, messages, visibility, _EXTEND_FAILED, retry_for=max(left, 0.0)
                )
                for i in extended:
                    group[i].since = now
                self.stats.extended += len(extended)

    async def _set_visibility(
        self,
        source: str,
        messages: Sequence[Message],
        seconds: int,
        failure: str,
        *,
        retry_for: float = 0.0,
    ) -> list[int]:
        """Restart the visibility timeout of ``messages`` (received from ``source``) at
        ``seconds``, 10 per call, the calls at once; the indexes of those changed. Best
        effort: a call or an entry that failed with a retriable error is tried again for
        ``retry_for`` seconds (0: not at all), then logged as ``failure`` (its messages
        become visible when their timeout ends)."""
        chunks = [
            [
                (str(start + i), m["ReceiptHandle"])
                for i, m in enumerate(messages[start : start + BATCH_ENTRIES])
            ]
            for start in range(0, len(messages), BATCH_ENTRIES)
        ]
        results = await asyncio.gather(
            *(self._set_chunk_visibility(source, c, seconds, failure, retry_for) for c in chunks)
        )
        return [i for changed in results for i in changed]

    async def _set_chunk_visibility(
        self,
        source: str,
        entries: list[tuple[str, str]],
        seconds: int,
        failure: str,
        retry_for: float,
    ) -> list[int]:
        changed: list[int] = []
        backoff = Backoff(_RETRY_FIRST, _RETRY_CEILING, deadline=retry_for)
        while entries:
            try:
                async with self._calls:
                    result = await self.client.change_visibility_batch(source, entries, seconds)
            except SqsError as e:
                if not e.retriable or backoff.expired:
                    log.warning(failure, queue=source, error=str(e))
                    break
                await backoff.sleep()
                continue
            changed += [int(entry_id) for entry_id in result.ok]
            retry = {
                entry_id
                for entry_id, (_code, _message, sender_fault) in result.failed.items()
                if not sender_fault
            }
            entries = [e for e in entries if e[0] in retry]
            if entries and backoff.expired:
                log.warning(failure, queue=source, failed=len(entries))
                break
            if entries:
                await backoff.sleep()
        return changed

    def _backoff(self) -> Backoff:
        """The retry policy of one batch call: give up after ``retry_for`` seconds."""
        return Backoff(_RETRY_FIRST, _RETRY_CEILING, deadline=self.settings.retry_for)

    def _send(self, destination: str, outbox: Outbox) -> None:
        if self.fifo:
            if not outbox.pumping:
                outbox.pumping = True
                self._spawn(self._pump(destination, outbox), f"send->{destination}")
            return
        batch = outbox.entries
        outbox.entries, outbox.size = [], 0
        # An empty outbox is dropped: the flusher walks only destinations with entries
        # waiting (100 sessions are 100 outboxes, most of them empty between batches).
        if self._outboxes.get(destination) is outbox:
            del self._outboxes[destination]
        self._spawn(self._send_plain(destination, batch), f"send->{destination}")

    async def _send_plain(self, destination: str, batch: list[_Entry]) -> None:
        await self._send_with_retries(destination, batch)

    async def _pump(self, destination: str, outbox: Outbox) -> None:
        """FIFO: send ``destination``'s entries one batch at a time until none wait; a group
        whose entry finally failed is released with its waiting successors."""
        try:
            while outbox.entries:
                failed = await self._send_with_retries(destination, outbox.take_fifo())
                for group, delay in failed.items():
                    later = outbox.take_group(group)
                    if later:
                        log.warning(
                            "sqs releasing later messages of a failed FIFO group",
                            destination=destination,
                            count=len(later),
                        )
                    for _entry, held, _label in later:
                        self._to[destination] -= 1
                        held.delay = delay
                        self._settle(held, ok=False)
        finally:
            outbox.pumping = False

    async def _send_with_retries(
        self, destination: str, batch: list[_Entry]
    ) -> dict[str | None, int]:
        """Send ``batch``, retrying what fails retriably; the groups of the entries that
        finally failed (their messages are released), each with its release delay."""
        pending = {entry["Id"]: (entry, held, label) for entry, held, label in batch}
        failed_groups: dict[str | None, int] = {}
        backoff = self._backoff()
        while pending:
            entries = [entry for entry, _h, _l in pending.values()]
            try:
                async with self._calls:
                    result = await self.client.send_batch(destination, entries)
            except SqsError as e:
                if not e.retriable or backoff.expired:
                    log.warning("sqs forward failed", destination=destination, error=str(e))
                    for entry, held, _label in pending.values():
                        failed_groups[group_of(entry)] = self._release_delay(held)
                        self._to[destination] -= 1
                        self._settle(held, ok=False)
                    return failed_groups
                self.stats.throttled += 1
                await backoff.sleep()
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
                if sender_fault or backoff.expired:
                    entry, held, _label = pending.pop(entry_id)
                    failed_groups[group_of(entry)] = self._release_delay(held)
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
                await backoff.sleep()
        return failed_groups

    def _settle(self, held: _InHand, *, ok: bool) -> None:
        if not ok and not held.failed:
            held.failed = True
            self.stats.failed += 1
        held.pending -= 1
        if held.pending:
            return
        held.receive.unsettled -= 1
        if held.failed:
            # Visible again after a backoff that grows with its receive count, so a
            # destination that keeps failing is not hammered in a hot loop.
            self._spawn(self._release([held], self._release_delay(held)), "release")
        else:
            queue = self._deletes.setdefault(held.source, [])
            if not queue:
                self._deletes_since[held.source] = time.monotonic()
            queue.append(held)
            if len(queue) >= BATCH_ENTRIES:
                self._delete(held.source)
                return
        if not held.receive.unsettled and not self.fifo:
            self._receive_settled(held.source)

    def _receive_settled(self, source: str) -> None:
        """The last message of a receive from ``source`` settled: a delete batch that
        waited only for it goes now."""
        queue = self._deletes.get(source)
        if queue:
            now = time.monotonic()
            if self._delete_due(source, queue, now, self._pace.in_backlog(now, self.linger)):
                self._delete(source)

    @staticmethod
    def _release_delay(held: _InHand) -> int:
        if held.delay is not None:
            return held.delay
        receives = int(held.message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        return release_delay(receives)

    # --- deleting and releasing ----------------------------------------------------

    def _delete(self, source: str) -> None:
        held = self._deletes.pop(source)
        self._spawn(self._delete_batch(source, held), f"delete<-{source}")

    async def _delete_batch(
        self, source: str, held: list[_InHand], *, retry_for: float | None = None
    ) -> None:
        """Delete ``held`` (forwarded everywhere); retriable failures are tried again for
        ``retry_for`` seconds (default: ``settings.retry_for``)."""
        entries = [(str(i), h.message["ReceiptHandle"]) for i, h in enumerate(held)]
        backoff = (
            self._backoff()
            if retry_for is None
            else Backoff(_RETRY_FIRST, _RETRY_CEILING, deadline=retry_for)
        )
        while entries:
            try:
                async with self._calls:
                    result = await self.client.delete_batch(source, entries)
            except SqsError as e:
                if not e.retriable or backoff.expired:
                    log.warning("sqs delete failed", queue=source, error=str(e))
                    self.stats.delete_failed += len(entries)
                    break
                await backoff.sleep()
                continue
            self.stats.deleted += len(result.ok)
            retry = []
            for entry_id, (code, _message, sender_fault) in result.failed.items():
                if sender_fault or backoff.expired:
                    # Typically ReceiptHandleIsInvalid: held past its visibility timeout.
                    log.warning("sqs delete entry failed; it will be delivered again", code=code)
                    self.stats.delete_failed += 1
                else:
                    retry.append(entry_id)
            entries = [e for e in entries if e[0] in retry]
            if entries:
                await backoff.sleep()
        self._done(held)

    async def _release(
        self, held: list[_InHand], visibility: int = 0, *, retry_for: float = 0.0
    ) -> None:
        """Make ``held`` visible again after ``visibility`` s (best effort: else its timeout;
        retriable failures tried again for ``retry_for`` s)."""
        by_source: dict[str, list[_InHand]] = {}
        for h in held:
            by_source.setdefault(h.source, []).append(h)
        for source, group in by_source.items():
            messages = [h.message for h in group]
            changed = await self._set_visibility(
                source, messages, visibility, _RELEASE_FAILED, retry_for=retry_for
            )
            self._count_release(len(changed), len(messages))
        self._done(held)

    async def give_back(self, source: str, messages: Sequence[Message]) -> None:
        """Make messages received from ``source`` but never submitted visible at once."""
        changed = await self._set_visibility(
            source, messages, 0, _RELEASE_FAILED, retry_for=_FINAL_CALLS_FOR
        )
        self._count_release(len(changed), len(messages))

    def _count_release(self, changed: int, tried: int) -> None:
        """Count what a release made visible, and apart what stays in flight until its
        visibility timeout ends (received again then, later than asked)."""
        self.stats.released += changed
        self.stats.release_failed += tried - changed

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
        self._rates.pop(destination, None)  # its session is ending: no more forwards

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
        # The last calls, deletes and releases at once, each ride out a transient throttle
        # or 5xx within the same bound: one after the other, the releases got what the
        # deletes left of it (nothing, under throttling), and their messages stayed in
        # flight until their visibility timeout.
        forwarded = [h for h in self._in_hand if not h.pending and not h.failed]
        rest = [h for h in self._in_hand if h.pending or h.failed]
        by_source: dict[str, list[_InHand]] = {}
        for h in forwarded:
            by_source.setdefault(h.source, []).append(h)
        calls = [
            self._delete_batch(
                source, group[start : start + BATCH_ENTRIES], retry_for=_FINAL_CALLS_FOR
            )
            for source, group in by_source.items()
            for start in range(0, len(group), BATCH_ENTRIES)
        ]
        if rest:
            log.info("sqs releasing messages not forwarded in time", count=len(rest))
            calls.append(self._release(rest, retry_for=_FINAL_CALLS_FOR))
        await asyncio.gather(*calls)
