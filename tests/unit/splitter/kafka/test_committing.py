"""What may be committed across a worker's ledgers (splitter/kafka/committing.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from splitter.errors import KafkaForwardError
from splitter.kafka.committing import committable_offsets, forwards_in_flight, mark_committed
from splitter.kafka.ledger import PartitionLedger

pytestmark = pytest.mark.unit


def futures(n: int) -> list[asyncio.Future[Any]]:
    loop = asyncio.get_running_loop()
    return [loop.create_future() for _ in range(n)]


async def test_each_partition_commits_its_acknowledged_prefix_only() -> None:
    f0, f1 = futures(3), futures(2)
    ledgers = {0: PartitionLedger(), 1: PartitionLedger()}
    ledgers[0].extend([10, 11, 12], f0)
    ledgers[1].extend([5, 6], f1)
    f0[0].set_result(None)
    f0[2].set_result(None)  # 11 still in flight: 12 must wait
    assert committable_offsets(ledgers, "views", [0, 1]) == {("views", 0): 11}
    f0[1].set_result(None)
    f1[0].set_result(None)
    f1[1].set_result(None)
    assert committable_offsets(ledgers, "views", [0, 1, 7]) == {("views", 0): 13, ("views", 1): 7}


async def test_a_failed_forward_stops_the_commit_and_names_the_partition() -> None:
    fs = futures(2)
    ledgers = {3: PartitionLedger()}
    ledgers[3].extend([0, 1], fs)
    fs[0].set_exception(OSError("broken pipe"))
    fs[1].set_result(None)
    with pytest.raises(KafkaForwardError, match=r"views\[3\]"):
        committable_offsets(ledgers, "views", [3])


async def test_a_mirrored_record_commits_once_all_its_copies_are_acknowledged() -> None:
    single, copy_a, copy_b = futures(3)
    ledgers = {0: PartitionLedger()}
    ledgers[0].extend([0, 1], [single, [copy_a, copy_b]])
    single.set_result(None)
    copy_a.set_result(None)
    assert committable_offsets(ledgers, "t", [0]) == {("t", 0): 1}
    copy_b.set_exception(RuntimeError("not acknowledged"))
    with pytest.raises(KafkaForwardError):
        committable_offsets(ledgers, "t", [0])


async def test_forwards_in_flight_lists_every_pending_copy_or_only_the_oldest() -> None:
    a, b, c = futures(3)
    ledgers = {0: PartitionLedger(), 1: PartitionLedger()}
    ledgers[0].extend([0, 1], [a, [b, c]])
    assert forwards_in_flight(ledgers, [0, 1]) == [a, b, c]
    assert forwards_in_flight(ledgers, [0], oldest=True) == [a]
    assert forwards_in_flight(ledgers, [1, 9], oldest=True) == []


async def test_mark_committed_counts_each_record_once() -> None:
    fs = futures(4)
    ledgers = {0: PartitionLedger(committed=100)}
    ledgers[0].extend([100, 101, 102, 103], fs)
    assert mark_committed(ledgers, {("t", 0): 102}) == 2
    assert mark_committed(ledgers, {("t", 0): 104, ("t", 5): 9}) == 2  # 5: revoked meanwhile
    assert ledgers[0].committed == 104
    fresh = {1: PartitionLedger()}
    fresh[1].extend([40, 41], futures(2))
    assert mark_committed(fresh, {("t", 1): 42}) == 2  # counted from the first record read
