"""What a worker may commit across its partitions' ledgers (bookkeeping, no I/O).

The worker holds one :class:`~splitter.kafka.ledger.PartitionLedger` per
assigned partition. :func:`committable_offsets` advances them: a failed
forward stops its partition's commit at the failed record (sticky, see the
ledger) and is returned as a :class:`Failure` for the worker to send again -
it is never raised, so no failed record can crash the worker or let a later
commit jump past it. :func:`forwards_in_flight` lists what to wait for before
a commit; :func:`mark_committed` records a commit the broker took and returns
how many records it newly covers (the worker counts them).

:class:`Retries` schedules the failed records' next attempts: per partition,
the failed head record, its backoff and whether its new forwards are out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from splitter.backoff import Backoff
from splitter.errors import KafkaForwardError
from splitter.kafka.ledger import PartitionLedger
from splitter.kafka.records import Partition
from splitter.kafka.translating import forward_failure

Ledgers = Mapping[int, PartitionLedger]
"""Partition number -> its ledger (the worker's assigned partitions)."""


@dataclass(frozen=True)
class Failure:
    """The head record of a partition whose forward failed: nothing past it is committed."""

    partition: int
    offset: int
    forwards: Any
    item: Any
    error: KafkaForwardError


def failed(forwards: Any) -> bool:
    """Whether a done forward (one future or a list of them) failed or was cancelled."""
    if type(forwards) is not list:
        return bool(forwards.cancelled() or forwards.exception() is not None)
    return any(f.cancelled() or f.exception() is not None for f in forwards)


def committable_offsets(
    ledgers: Ledgers, topic: str, partitions: Iterable[int]
) -> tuple[dict[Partition, int], list[Failure]]:
    """The offset to commit per partition that moved, and the partitions stuck at a failure."""
    offsets: dict[Partition, int] = {}
    failures: list[Failure] = []
    for partition in partitions:
        ledger = ledgers.get(partition)
        if ledger is None:
            continue
        ledger.advance(failed)
        if ledger.failed_at is not None:
            head = ledger.head()
            assert head is not None
            offset, forwards, item = head
            futures: list[Any] = forwards if type(forwards) is list else [forwards]
            error = next(
                e
                for f in futures
                if (e := forward_failure(f, f"{topic}[{partition}]@{offset}")) is not None
            )
            failures.append(Failure(partition, offset, forwards, item, error))
        offset_to_commit = ledger.to_commit()
        if offset_to_commit is not None:
            offsets[(topic, partition)] = offset_to_commit
    return offsets, failures


def forwards_in_flight(
    ledgers: Ledgers, partitions: Iterable[int], *, oldest: bool = False
) -> list[Any]:
    """The forward futures not yet dropped, or only each partition's oldest record's."""
    pending: list[Any] = []
    for partition in partitions:
        ledger = ledgers.get(partition)
        if ledger is None:
            continue
        if oldest:
            first = ledger.oldest()
            heads = [first] if first is not None else []
        else:
            heads = ledger.pending()
        for forwards in heads:
            pending.extend(forwards if isinstance(forwards, list) else (forwards,))
    return [f for f in pending if not f.done()]


def mark_committed(ledgers: Ledgers, offsets: Mapping[Partition, int]) -> int:
    """Record that ``offsets`` were committed; return how many records that newly commits."""
    newly = 0
    for (_t, partition), offset in offsets.items():
        ledger = ledgers.get(partition)
        if ledger is not None:
            previous = ledger.committed if ledger.committed is not None else ledger.base
            newly += offset - (previous if previous is not None else offset)
            ledger.mark_committed(offset)
    return newly


@dataclass
class Retry:
    """The next attempt at a partition's failed head record."""

    offset: int
    backoff: Backoff
    #: When (monotonic seconds) it may be sent again.
    due: float = 0.0
    #: Sent again and not failed since (its forwards are in flight or done).
    sent: bool = False


class Retries:
    """The partitions stuck at a failed record, and when each is sent again (no I/O)."""

    def __init__(self, backoff: Callable[[], Backoff]) -> None:
        self._backoff = backoff
        self._by_partition: dict[int, Retry] = {}

    def __len__(self) -> int:
        return len(self._by_partition)

    def note(
        self, ledgers: Ledgers, partitions: Iterable[int], failures: Sequence[Failure], now: float
    ) -> list[tuple[Failure, Retry, float]]:
        """Take a commit's failures; return the *new* failed attempts with their retry
        and delay (a failure already noted and not sent again since is not new)."""
        for partition in partitions:
            retry = self._by_partition.get(partition)
            ledger = ledgers.get(partition)
            head = None if ledger is None else ledger.head()
            if retry is not None and (head is None or head[0] != retry.offset):
                del self._by_partition[partition]  # forwarded at last (or revoked)
        new: list[tuple[Failure, Retry, float]] = []
        for failure in failures:
            retry = self._by_partition.get(failure.partition)
            if retry is not None and retry.offset == failure.offset and not retry.sent:
                continue
            if retry is None or retry.offset != failure.offset:
                retry = Retry(failure.offset, self._backoff())
                self._by_partition[failure.partition] = retry
            delay = retry.backoff.next_delay()
            retry.due, retry.sent = now + delay, False
            new.append((failure, retry, delay))
        return new

    def due(self, ledgers: Ledgers, now: float) -> list[int]:
        """Partitions whose failed records may be sent again now (forgets revoked ones)."""
        partitions = []
        for partition, retry in list(self._by_partition.items()):
            ledger = ledgers.get(partition)
            if ledger is None:
                del self._by_partition[partition]
            elif not retry.sent and retry.due <= now and ledger.failed_at == retry.offset:
                partitions.append(partition)
        return partitions

    def sent(self, partition: int) -> None:
        self._by_partition[partition].sent = True
