"""What may be committed across a worker's ledgers (splitter/kafka/committing.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from splitter.errors import KafkaForwardError
from splitter.kafka.committing import (
    committable_offsets,
    failed,
    forwards_in_flight,
    mark_committed,
)
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
    assert committable_offsets(ledgers, "views", [0, 1]) == ({("views", 0): 11}, [])
    f0[1].set_result(None)
    f1[0].set_result(None)
    f1[1].set_result(None)
    offsets, failures = committable_offsets(ledgers, "views", [0, 1, 7])
    assert (offsets, failures) == ({("views", 0): 13, ("views", 1): 7}, [])


async def test_a_failed_forward_stops_the_commit_at_it_and_is_returned_naming_the_partition() -> (
    None
):
    fs = futures(3)
    ledgers = {3: PartitionLedger()}
    ledgers[3].extend([0, 1, 2], fs, ["r0", "r1", "r2"])
    fs[0].set_result(None)
    fs[1].set_exception(OSError("broken pipe"))
    fs[2].set_result(None)
    offsets, failures = committable_offsets(ledgers, "views", [3])
    assert offsets == {("views", 3): 1}
    assert [(f.partition, f.offset, f.item) for f in failures] == [(3, 1, "r1")]
    assert isinstance(failures[0].error, KafkaForwardError)
    assert "views[3]" in str(failures[0].error)
    assert "broken pipe" in str(failures[0].error)


async def test_a_failure_is_sticky_so_a_later_commit_never_jumps_past_it() -> None:
    """The data-loss bug: the failed record was dropped by the first look, so the next
    commit (a revocation's) committed past it. Now every later look still stops at it."""
    fs = futures(3)
    ledgers = {0: PartitionLedger()}
    ledgers[0].extend([6, 7, 8], fs)
    fs[0].set_result(None)
    fs[1].set_exception(OSError("timed out"))
    fs[2].set_result(None)
    offsets, failures = committable_offsets(ledgers, "t", [0])
    assert offsets == {("t", 0): 7}
    mark_committed(ledgers, offsets)
    for _look in range(3):  # the commit loop, the fetch bound, the revocation commit
        offsets, failures = committable_offsets(ledgers, "t", [0])
        assert offsets == {}
        assert [f.offset for f in failures] == [7]
    assert ledgers[0].committed == 7
    (retried,) = futures(1)
    ledgers[0].retry_head(retried)
    retried.set_result(None)
    offsets, failures = committable_offsets(ledgers, "t", [0])
    assert (offsets, failures) == ({("t", 0): 9}, [])


async def test_a_mirrored_record_commits_once_all_its_copies_are_acknowledged() -> None:
    single, copy_a, copy_b = futures(3)
    ledgers = {0: PartitionLedger()}
    ledgers[0].extend([0, 1], [single, [copy_a, copy_b]])
    single.set_result(None)
    copy_a.set_result(None)
    assert committable_offsets(ledgers, "t", [0]) == ({("t", 0): 1}, [])
    copy_b.set_exception(RuntimeError("not acknowledged"))
    offsets, failures = committable_offsets(ledgers, "t", [0])
    assert offsets == {("t", 0): 1}
    assert [f.offset for f in failures] == [1]


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


async def test_retries_count_each_failed_attempt_once_and_back_off_between_attempts() -> None:
    from splitter.backoff import Backoff
    from splitter.kafka.committing import Retries

    fs = futures(2)
    ledgers = {0: PartitionLedger()}
    ledgers[0].extend([0, 1], fs, ["r0", "r1"])
    fs[0].set_exception(OSError("timed out"))
    fs[1].set_exception(OSError("timed out"))
    retries = Retries(lambda: Backoff(first=1.0, ceiling=4.0))
    _offsets, failures = committable_offsets(ledgers, "t", [0])
    (new,) = retries.note(ledgers, [0], failures, now=100.0)
    assert new[2] == 1.0  # the first delay
    assert retries.note(ledgers, [0], failures, now=100.5) == []  # counted already
    assert retries.due(ledgers, now=100.5) == []
    assert retries.due(ledgers, now=101.0) == [0]
    assert [entry[1] for entry in ledgers[0].failed(failed)] == [0, 1]  # all sent again
    (again,) = futures(1)
    ledgers[0].replace(0, again)
    retries.sent(0)
    assert retries.due(ledgers, now=200.0) == []  # in flight
    again.set_exception(OSError("still down"))
    _offsets, failures = committable_offsets(ledgers, "t", [0])
    (new,) = retries.note(ledgers, [0], failures, now=201.0)
    assert new[2] == 2.0  # the same record's second failure waits longer
    (ok,) = futures(1)
    ledgers[0].replace(0, ok)
    ok.set_result(None)
    retries.sent(0)
    offsets, failures = committable_offsets(ledgers, "t", [0])
    assert offsets == {("t", 0): 1}
    (new,) = retries.note(ledgers, [0], failures, now=202.0)
    assert (new[0].offset, new[2]) == (1, 1.0)  # record 1 is the head now: its own backoff
    assert len(retries) == 1
