"""The batching policy of SQS forwarding: what goes into a batch entry and when a batch goes.

Pure: data in, data out, no I/O and no clock of its own (callers pass ``now``).

- :func:`forward_entry` is the ``SendMessageBatch`` entry that carries a received
  message unchanged (body, message attributes, trace header, its
  ``MessageGroupId`` - on a standard queue that is a fair queue's tenant; on
  FIFO the group and a deduplication id derived from the original message id, so
  a retried forward - also after a crash, within SQS's 5-minute window - is
  dropped by SQS). On a standard queue it sets ``DelaySeconds=0``: the message
  was delayed once already, by the original, and the temporary queue's copied
  ``DelaySeconds`` must not delay it again. FIFO queues refuse a per-message
  delay; there the temporary queue itself gets ``DelaySeconds=0``
  (:mod:`splitter.sqs.attributes`), and a hand-back's move to a FIFO original
  is delayed once more by the original's own ``DelaySeconds`` (unavoidable).
  :func:`entry_size` is what it counts against :data:`BATCH_BYTES`, in UTF-8
  bytes as SQS counts them.
- :func:`due` decides when a partly-full batch is sent: after ``linger``, or -
  in a backlog, when the messages waited in the queue anyway - after
  ``backlog_linger`` (the forwarding applies it to deletes too).
  :func:`worth_waiting` decides whether a new batch waits at all: only when
  its destination's recent rate (:class:`ArrivalRate`) expects another entry
  within ``linger``; else the wait is latency that saves no call.
- :class:`Outbox` holds one destination's waiting entries and cuts FIFO batches
  that keep per-group order (one entry per group per call).
- :class:`ReceivePace` tells a backlog from what the receives return: a receive
  at least half full (:data:`BACKLOG_RECEIVE`) of messages that were waiting in
  the queue when its poll began (:func:`waited_in_queue`) means one, a shorter
  receive ends it, and so do polls out for several times as long as such a
  receive takes (they find the queue empty). Half, not full: SQS may return
  fewer messages than asked for while many wait (it samples its servers), and
  one such receive must not end a backlog. A full receive of messages sent
  while the poll waited is steady load, not a backlog (a producer sending
  batches of 10): nothing is held.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

#: Entries per batch call (the SQS maximum).
BATCH_ENTRIES = 10
#: Messages a receive returns, at least, while a backlog lasts (see :class:`ReceivePace`).
BACKLOG_RECEIVE = BATCH_ENTRIES // 2
#: SendMessageBatch payload limit we keep under (SQS allows 256 KiB per batch).
BATCH_BYTES = 250 * 1024
_ATTRIBUTE_KEYS = ("DataType", "StringValue", "BinaryValue")


def forward_entry(message: dict[str, Any], entry_id: str, *, fifo: bool) -> dict[str, Any]:
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
    else:
        entry["DelaySeconds"] = 0
        if system.get("MessageGroupId"):  # a fair queue's tenant: keep it
            entry["MessageGroupId"] = system["MessageGroupId"]
    return entry


def group_of(entry: dict[str, Any]) -> str | None:
    """The ``MessageGroupId`` of a forward entry (None: none)."""
    group = entry.get("MessageGroupId")
    return str(group) if group is not None else None


def _bytes(value: str | bytes) -> int:
    return len(value.encode()) if isinstance(value, str) else len(value)


def entry_size(entry: dict[str, Any]) -> int:
    """UTF-8 bytes of ``entry`` that count against the batch payload limit: the body,
    every message attribute's name, type and value, and the system attributes."""
    size = _bytes(entry["MessageBody"])
    for key in ("MessageAttributes", "MessageSystemAttributes"):
        for name, value in entry.get(key, {}).items():
            size += _bytes(name) + _bytes(value["DataType"])
            size += _bytes(value.get("StringValue", "")) + _bytes(value.get("BinaryValue", b""))
    return size


def due(age: float, *, linger: float, backlog_linger: float, backlog: bool) -> bool:
    """Whether a partly-full batch, its oldest entry ``age`` s old, goes now.

    Never before ``linger``; after it at once, unless in a backlog, where it waits
    until ``backlog_linger`` (at least ``linger``) to fill: the messages waited in the
    queue anyway, and every call saved is one the server does not answer (at 10
    sessions a receive of 10 is about one entry per destination, so a batch that went
    when it stopped filling fast would carry 2-3 entries). A full batch goes at once.
    """
    if age < linger:
        return False
    return not backlog or age >= max(backlog_linger, linger)


@dataclass(frozen=True)
class ReceivePace:
    """What the last receives from the original say about a backlog."""

    #: The last receive came back at least :data:`BACKLOG_RECEIVE` messages that waited.
    full: bool = False
    #: When it returned (monotonic seconds).
    at: float = 0.0
    #: How long a full receive takes (moving average over about 8), seconds.
    full_seconds: float = 0.0

    def after(self, count: int, seconds: float, now: float, *, waited: bool = True) -> ReceivePace:
        """The pace once a receive returned ``count`` messages after ``seconds``, at ``now``;
        ``waited``: they were in the queue before the poll began (:func:`waited_in_queue`)."""
        if count < BACKLOG_RECEIVE or not waited:
            return replace(self, full=False, at=now)
        return ReceivePace(True, now, self.full_seconds + (seconds - self.full_seconds) / 8)

    def in_backlog(self, now: float, linger: float) -> bool:
        """The last receive was (half) full and another one came back since, as they do while
        messages wait: polls out for several times that long find the queue empty."""
        return self.full and now < self.backlog_ends(linger)

    def backlog_ends(self, linger: float) -> float:
        """When the backlog is over unless another full receive comes back first."""
        return self.at + max(2 * self.full_seconds, 3 * linger)


#: Seconds a message must have been sent before a poll began to count as waiting in the
#: queue: room for the clock difference between this host and SQS (SentTimestamp is the
#: server's clock). A host whose clock is off by more only sees backlogs later or sooner.
WAITED_MARGIN = 0.1


def waited_in_queue(messages: Sequence[Mapping[str, Any]], polled_at: float) -> bool:
    """Whether the messages of one receive were all in the queue before its poll began at
    ``polled_at`` (wall clock, seconds): their newest ``SentTimestamp`` (ms) is older by
    :data:`WAITED_MARGIN`. A message without one counts as waiting."""
    newest = 0.0
    for message in messages:
        sent = message.get("Attributes", {}).get("SentTimestamp")
        if sent is None:
            continue
        newest = max(newest, int(sent) / 1000)
    return newest < polled_at - WAITED_MARGIN


#: Seconds over which :class:`ArrivalRate` averages a destination's forwards.
RATE_WINDOW = 1.0


class ArrivalRate:
    """Forwards queued to one destination lately: a count that decays by e every
    :data:`RATE_WINDOW` seconds, so ``score / RATE_WINDOW`` is the recent rate per second."""

    __slots__ = ("at", "score")

    def __init__(self) -> None:
        self.score = 0.0
        self.at = 0.0

    def add(self, now: float, count: int = 1) -> None:
        if now != self.at:
            self.score *= math.exp((self.at - now) / RATE_WINDOW)
            self.at = now
        self.score += count

    def expected(self, seconds: float) -> float:
        """Forwards expected in the next ``seconds`` at the recent rate."""
        return self.score * seconds / RATE_WINDOW


def worth_waiting(rate: ArrivalRate, linger: float) -> bool:
    """Whether a partly-full batch should wait ``linger`` for more entries: only if at least
    one more is expected meanwhile. Otherwise waiting adds ``linger`` of latency and, most
    likely, saves no call (at 100 messages/s over 11 queues a batch gains 0.2 entries in
    20 ms)."""
    return rate.expected(linger) >= 1.0


#: One waiting forward: (entry, what the caller holds for it, a label) - opaque here.
OutboxEntry = tuple[dict[str, Any], Any, str]


@dataclass
class Outbox:
    """The entries waiting for one destination, in arrival order."""

    entries: list[OutboxEntry] = field(default_factory=list)
    size: int = 0
    since: float = 0.0
    #: FIFO: a pump task is sending this destination's entries.
    pumping: bool = False

    def take_fifo(self) -> list[OutboxEntry]:
        """The next FIFO batch: in order, at most one entry per group and no entry whose
        group has an earlier entry left behind; within the entry and byte limits."""
        batch: list[OutboxEntry] = []
        kept: list[OutboxEntry] = []
        seen: set[str | None] = set()
        size = 0
        for item in self.entries:
            group = group_of(item[0])
            item_size = entry_size(item[0])
            if (
                group not in seen
                and len(batch) < BATCH_ENTRIES
                and (not batch or size + item_size <= BATCH_BYTES)
            ):
                batch.append(item)
                size += item_size
            else:
                kept.append(item)
            seen.add(group)
        self.entries = kept
        self.size -= size
        return batch

    def take_group(self, group: str | None) -> list[OutboxEntry]:
        """Remove and return every waiting entry of ``group``."""
        taken = [item for item in self.entries if group_of(item[0]) == group]
        if taken:
            self.entries = [item for item in self.entries if group_of(item[0]) != group]
            self.size -= sum(entry_size(item[0]) for item in taken)
        return taken
