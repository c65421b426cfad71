"""Commit bookkeeping per source partition (splitter/kafka/ledger.py)."""

from __future__ import annotations

import pytest

from splitter.kafka.ledger import PartitionLedger

pytestmark = pytest.mark.unit


class Forward:
    def __init__(self) -> None:
        self.finished = False

    def done(self) -> bool:
        return self.finished


def test_commit_never_jumps_over_an_unacknowledged_earlier_record() -> None:
    ledger = PartitionLedger()
    forwards = [Forward() for _ in range(4)]
    for offset, forward in zip(range(10, 14), forwards, strict=True):
        ledger.add(offset, forward)
    forwards[1].finished = forwards[2].finished = True
    assert ledger.advance() == 0
    assert ledger.to_commit() is None
    forwards[0].finished = True
    assert ledger.advance() == 3
    assert ledger.to_commit() == 13
    forwards[3].finished = True
    ledger.advance()
    assert ledger.to_commit() == 14
    ledger.mark_committed(14)
    assert ledger.to_commit() is None
    assert ledger.uncommitted() == 0


def test_a_record_with_several_forwards_waits_for_all_of_them() -> None:
    ledger = PartitionLedger(committed=5)
    mirror, steal = Forward(), Forward()
    ledger.add(5, [mirror, steal])
    mirror.finished = True
    assert ledger.advance() == 0
    steal.finished = True
    assert ledger.advance() == 1
    assert ledger.to_commit() == 6


def test_uncommitted_counts_records_read_since_the_last_commit() -> None:
    ledger = PartitionLedger()
    assert ledger.uncommitted() == 0
    for offset in range(100, 110):
        forward = Forward()
        forward.finished = True
        ledger.add(offset, forward)
    assert ledger.uncommitted() == 10
    ledger.advance()
    ledger.mark_committed(110)
    assert ledger.uncommitted() == 0
    assert ledger.pending() == []


def test_a_failed_forward_stays_at_the_head_until_retried_and_holds_the_commit_at_it() -> None:
    ledger = PartitionLedger()
    forwards = [Forward() for _ in range(3)]
    ledger.extend([20, 21, 22], forwards, ["a", "b", "c"])
    for forward in forwards:
        forward.finished = True
    failing = {id(forwards[1])}

    def failed(f: object) -> bool:
        return id(f) in failing

    assert ledger.advance(failed) == 1
    assert ledger.failed_at == 21
    assert ledger.head() == (21, forwards[1], "b")
    assert ledger.to_commit() == 21
    assert ledger.advance(failed) == 0  # sticky: a second look does not drop it
    assert ledger.to_commit() == 21
    again = Forward()
    ledger.retry_head(again)
    assert ledger.failed_at is None
    assert ledger.advance(failed) == 0  # the retry is in flight
    again.finished = True
    assert ledger.advance(failed) == 2
    assert ledger.to_commit() == 23


class CountedForward(Forward):
    """A forward that counts how often the ledger asks whether it is done."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def done(self) -> bool:
        self.asked += 1
        return self.finished


def test_records_sharing_one_batch_future_are_checked_once_and_committed_together() -> None:
    ledger = PartitionLedger()
    batch, next_batch = CountedForward(), CountedForward()
    ledger.extend(list(range(100)), [batch] * 60 + [next_batch] * 40)
    batch.finished = True
    failures: list[object] = []

    def failed(forwards: object) -> bool:
        failures.append(forwards)
        return False

    assert ledger.advance(failed) == 60
    assert batch.asked == 1  # not once per record
    assert failures == [batch]
    assert ledger.to_commit() == 60


def test_a_failed_batch_future_holds_the_commit_at_its_first_record() -> None:
    ledger = PartitionLedger()
    good, bad = Forward(), Forward()
    ledger.extend(list(range(10)), [good] * 4 + [bad] * 6)
    good.finished = bad.finished = True
    assert ledger.advance(lambda forwards: forwards is bad) == 4
    assert ledger.failed_at == 4
    assert ledger.to_commit() == 4
    assert [offset for _p, offset, _f, _i in ledger.failed(lambda f: f is bad)] == list(
        range(4, 10)
    )
