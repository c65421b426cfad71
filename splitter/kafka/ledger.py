"""Which offset of a source partition is safe to commit (pure bookkeeping).

A :class:`PartitionLedger` holds, in offset order, the forwards of every
record read from one partition and not yet committed, with what the worker
needs to send the record again (its ``item``). The committable offset is the
offset *after* the longest prefix of records whose forwards all completed
*successfully*: a record acknowledged early never lets the commit jump over
an earlier record still in flight, and a failed forward is *sticky* - it
stays at the head of the ledger, the committable offset stays at it, and
nothing at or after it is committed until :meth:`PartitionLedger.retry_head`
gave it new forwards that succeeded. A revocation or shutdown commit then
commits up to the failed record, never past it: its next owner reads it
again.

Forwards are anything with ``done()`` (asyncio futures in the worker, simple
stubs in unit tests); whether a done forward failed is the caller's
``failed`` predicate (the ledger never looks inside). A record with no
forward at all (matched nothing, impossible with a fallback but allowed) is
done at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol


class Pending(Protocol):
    def done(self) -> bool: ...


Forwards = Pending | Sequence[Pending]
Failed = Callable[[Any], bool]


def _all_done(forwards: Forwards) -> bool:
    # No ABC isinstance here: it runs once per record and that shows in profiles.
    done = getattr(forwards, "done", None)
    if done is not None:
        return bool(done())
    return all(f.done() for f in forwards)  # type: ignore[union-attr]


class PartitionLedger:
    """Records of one partition read but not yet committed, with their forwards."""

    __slots__ = ("_entries", "base", "committable", "committed", "failed_at", "next_offset")

    def __init__(self, committed: int | None = None) -> None:
        self._entries: deque[tuple[int, Forwards, Any]] = deque()
        #: The offset last committed (the next record to read then), or None.
        self.committed = committed
        #: The offset it is safe to commit now (every record before it forwarded).
        self.committable = committed
        #: The offset after the last record added (None before the first one).
        self.next_offset = committed
        #: Where uncommitted reading started: the committed offset or the first record.
        self.base = committed
        #: The offset of the record at the head whose forward failed, or None.
        self.failed_at: int | None = None

    def add(self, offset: int, forwards: Forwards, item: Any = None) -> None:
        """Record that ``offset`` was read and its forwards started (offsets ascend)."""
        if self.base is None:
            self.base = offset
        self._entries.append((offset, forwards, item))
        self.next_offset = offset + 1

    def extend(
        self,
        offsets: Sequence[int],
        forwards: Sequence[Forwards],
        items: Iterable[Any] | None = None,
    ) -> None:
        """``add`` for a batch of ascending offsets (one call per fetched batch)."""
        if not offsets:
            return
        if self.base is None:
            self.base = offsets[0]
        if items is None:
            items = [None] * len(offsets)
        self._entries.extend(zip(offsets, forwards, items, strict=True))
        self.next_offset = offsets[-1] + 1

    def __len__(self) -> int:
        return len(self._entries)

    def uncommitted(self) -> int:
        """Records read since the last commit (what a crash now could duplicate)."""
        if self.next_offset is None or self.base is None:
            return 0
        return self.next_offset - (self.committed if self.committed is not None else self.base)

    def advance(self, failed: Failed | None = None) -> int:
        """Drop the done, successful prefix and move ``committable`` after it.

        Stops at the first done record whose forwards ``failed`` (sticky: it
        stays, ``failed_at`` names it). Returns how many records were dropped.
        """
        entries = self._entries
        dropped = 0
        self.failed_at = None
        succeeded = None  # the last forwards found done and not failed
        while entries:
            offset, forwards, _item = entries[0]
            # Records of one producer batch share its future: checked once, not per record.
            if forwards is not succeeded:
                # Inline fast path for the common one-forward record (a hot loop).
                is_done = getattr(forwards, "done", None)
                if not (is_done() if is_done is not None else _all_done(forwards)):
                    break
                if failed is not None and failed(forwards):
                    self.failed_at = offset
                    break
                succeeded = forwards
            entries.popleft()
            dropped += 1
        if dropped:
            self.committable = entries[0][0] if entries else self.next_offset
        return dropped

    def head(self) -> tuple[int, Forwards, Any] | None:
        """The oldest record not yet dropped: (offset, forwards, item), or None."""
        return self._entries[0] if self._entries else None

    def retry_head(self, forwards: Forwards) -> None:
        """Replace the forwards of the head record (a failed one sent again)."""
        self.replace(0, forwards)

    def failed(self, failed: Failed) -> list[tuple[int, int, Any, Any]]:
        """Every done record whose forwards ``failed``, in offset order: (position,
        offset, forwards, item) - a stall fails a whole run of records, all sent again."""
        return [
            (position, offset, forwards, item)
            for position, (offset, forwards, item) in enumerate(self._entries)
            if _all_done(forwards) and failed(forwards)
        ]

    def replace(self, position: int, forwards: Forwards) -> None:
        """Give the record at ``position`` (see :meth:`failed`) new forwards."""
        offset, _old, item = self._entries[position]
        self._entries[position] = (offset, forwards, item)
        if position == 0:
            self.failed_at = None

    def to_commit(self) -> int | None:
        """``committable`` if it moved past ``committed``, else None."""
        if self.committable is None or self.committable == self.committed:
            return None
        return self.committable

    def mark_committed(self, offset: int) -> None:
        self.committed = offset

    def oldest(self) -> Forwards | None:
        """The forwards of the oldest record not yet dropped, if any."""
        return self._entries[0][1] if self._entries else None

    def pending(self) -> list[Forwards]:
        """Forwards not yet dropped (to wait on before a revocation commit)."""
        return [forwards for _, forwards, _ in self._entries]
