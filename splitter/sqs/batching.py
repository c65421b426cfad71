"""The batching policy of SQS forwarding: what goes into a batch entry and when a batch goes.

Pure: data in, data out, no I/O and no clock of its own (callers pass ``now``).

- :func:`forward_entry` is the ``SendMessageBatch`` entry that carries a received
  message unchanged (body, message attributes, trace header; on FIFO the group
  and a deduplication id derived from the original message id, so a retried
  forward - also after a crash, within SQS's 5-minute window - is dropped by SQS);
  :func:`entry_size` is what it counts against :data:`BATCH_BYTES`.
- :func:`due` decides when a partly-full batch is sent: after ``linger``, or -
  in a backlog, when the messages waited in the queue anyway - only once it is
  not filling fast enough to be full within ``backlog_linger``.
- :class:`ReceivePace` tells a backlog from what the receives return: a full
  receive means one, a short receive ends it, and so do polls out for several
  times as long as a full receive takes (they find the queue empty).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

#: Entries per batch call (the SQS maximum).
BATCH_ENTRIES = 10
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
    return entry


def entry_size(entry: dict[str, Any]) -> int:
    """Bytes of ``entry`` that count against the batch payload limit."""
    size = len(entry["MessageBody"].encode())
    for name, value in entry.get("MessageAttributes", {}).items():
        size += len(name) + len(value["DataType"])
        size += len(value.get("StringValue", "")) + len(value.get("BinaryValue", b""))
    return size


def due(count: int, age: float, *, linger: float, backlog_linger: float, backlog: bool) -> bool:
    """Whether a partly-full batch of ``count`` entries, the oldest ``age`` s old, goes now.

    Never before ``linger``; after it at once, unless in a backlog, where it waits
    while it fills fast enough to be full within ``backlog_linger`` (at least
    ``linger``) - a quiet destination does not hold its messages for nothing.
    """
    if age < linger:
        return False
    return not backlog or count * max(backlog_linger, linger) < BATCH_ENTRIES * age


@dataclass(frozen=True)
class ReceivePace:
    """What the last receives from the original say about a backlog."""

    #: The last receive came back full.
    full: bool = False
    #: When it returned (monotonic seconds).
    at: float = 0.0
    #: How long a full receive takes (moving average over about 8), seconds.
    full_seconds: float = 0.0

    def after(self, count: int, seconds: float, now: float) -> ReceivePace:
        """The pace once a receive returned ``count`` messages after ``seconds``, at ``now``."""
        if count < BATCH_ENTRIES:
            return replace(self, full=False, at=now)
        return ReceivePace(True, now, self.full_seconds + (seconds - self.full_seconds) / 8)

    def in_backlog(self, now: float, linger: float) -> bool:
        """The last receive was full and another one came back since, as receives do while
        messages wait: polls out for several times that long find the queue empty."""
        quiet = max(2 * self.full_seconds, 3 * linger)
        return self.full and now - self.at < quiet
