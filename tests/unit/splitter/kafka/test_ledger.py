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
    assert ledger.advance() == []
    assert ledger.to_commit() is None
    forwards[0].finished = True
    assert len(ledger.advance()) == 3
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
    assert ledger.advance() == []
    steal.finished = True
    assert ledger.advance() == [[mirror, steal]]
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
