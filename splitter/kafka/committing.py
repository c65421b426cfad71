"""What a worker may commit across its partitions' ledgers (bookkeeping, no I/O).

The worker holds one :class:`~splitter.kafka.ledger.PartitionLedger` per
assigned partition. :func:`committable_offsets` advances them and checks the
forwards they drop: a failed forward raises ``KafkaForwardError``, so no
offset past it is ever committed. :func:`forwards_in_flight` lists what to
wait for before a commit; :func:`mark_committed` records a commit the broker
took and returns how many records it newly covers (the worker counts them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from splitter.kafka.ledger import PartitionLedger
from splitter.kafka.records import Partition
from splitter.kafka.translating import forward_failure

Ledgers = Mapping[int, PartitionLedger]
"""Partition number -> its ledger (the worker's assigned partitions)."""


def committable_offsets(
    ledgers: Ledgers, topic: str, partitions: Iterable[int]
) -> dict[Partition, int]:
    """The offset to commit per partition that moved; ``KafkaForwardError`` on a failure."""
    offsets: dict[Partition, int] = {}
    for partition in partitions:
        ledger = ledgers.get(partition)
        if ledger is None:
            continue
        for forwards in ledger.advance():
            futures: Any = forwards
            if type(futures) is not list:
                if not (futures.cancelled() or futures.exception() is not None):
                    continue  # the common case: one forward, acknowledged
                futures = [futures]
            for future in futures:
                error = forward_failure(future, f"{topic}[{partition}]")
                if error is not None:
                    raise error
        offset = ledger.to_commit()
        if offset is not None:
            offsets[(topic, partition)] = offset
    return offsets


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
    return pending


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
