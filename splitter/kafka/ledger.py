"""Which offset of a source partition is safe to commit (pure bookkeeping).

A :class:`PartitionLedger` holds, in offset order, the forwards of every
record read from one partition and not yet committed. The committable offset
is the offset *after* the longest prefix of records whose forwards all
completed: a record acknowledged early never lets the commit jump over an
earlier record still in flight. A failed forward stops the prefix and is
reported, so nothing past it is ever committed.

Forwards are anything with ``done()`` (asyncio futures in the worker, simple
stubs in unit tests); a record with no forward at all (matched nothing,
impossible with a fallback but allowed) is done at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol


class Pending(Protocol):
    def done(self) -> bool: ...


Forwards = Pending | Sequence[Pending]


def _all_done(forwards: Forwards) -> bool:
    # No ABC isinstance here: it runs once per record and that shows in profiles.
    done = getattr(forwards, "done", None)
    if done is not None:
        return bool(done())
    return all(f.done() for f in forwards)  # type: ignore[union-attr]


class PartitionLedger:
    """Records of one partition read but not yet committed, with their forwards."""

    __slots__ = ("_entries", "base", "committable", "committed", "next_offset")

    def __init__(self, committed: int | None = None) -> None:
        self._entries: deque[tuple[int, Forwards]] = deque()
        #: The offset last committed (the next record to read then), or None.
        self.committed = committed
        #: The offset it is safe to commit now (every record before it forwarded).
        self.committable = committed
        #: The offset after the last record added (None before the first one).
        self.next_offset = committed
        #: Where uncommitted reading started: the committed offset or the first record.
        self.base = committed

    def add(self, offset: int, forwards: Forwards) -> None:
        """Record that ``offset`` was read and its forwards started (offsets ascend)."""
        if self.base is None:
            self.base = offset
        self._entries.append((offset, forwards))
        self.next_offset = offset + 1

    def extend(self, offsets: Sequence[int], forwards: Sequence[Forwards]) -> None:
        """``add`` for a batch of ascending offsets (one call per fetched batch)."""
        if not offsets:
            return
        if self.base is None:
            self.base = offsets[0]
        self._entries.extend(zip(offsets, forwards, strict=True))
        self.next_offset = offsets[-1] + 1

    def __len__(self) -> int:
        return len(self._entries)

    def uncommitted(self) -> int:
        """Records read since the last commit (what a crash now could duplicate)."""
        if self.next_offset is None or self.base is None:
            return 0
        return self.next_offset - (self.committed if self.committed is not None else self.base)

    def advance(self) -> list[Forwards]:
        """Drop the done prefix, move ``committable`` after it; return the forwards dropped.

        The caller checks the returned forwards for failures *before* it
        commits ``committable``.
        """
        entries = self._entries
        done: list[Forwards] = []
        while entries:
            forwards = entries[0][1]
            # Inline fast path for the common one-forward record (a hot loop).
            is_done = getattr(forwards, "done", None)
            if not (is_done() if is_done is not None else _all_done(forwards)):
                break
            done.append(entries.popleft()[1])
        if done:
            self.committable = entries[0][0] if entries else self.next_offset
        return done

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
        return [forwards for _, forwards in self._entries]
