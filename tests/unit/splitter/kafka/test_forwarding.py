"""Forwards held behind a failed record (splitter/kafka/forwarding.py ``held``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from splitter.kafka.committing import committable_offsets, failed
from splitter.kafka.forwarding import held
from splitter.kafka.ledger import PartitionLedger
from splitter.routing import Delivery

pytestmark = pytest.mark.unit


def dest(topic: str) -> Delivery:
    return Delivery(topic, None)


async def test_held_forwards_are_shaped_like_sent_ones_one_per_destination_never_sent() -> None:
    routes = [[dest("fb")], [dest("alice"), dest("fb")], []]
    one, two, none = held(routes)
    assert isinstance(one, asyncio.Future)
    assert one.cancelled()
    assert isinstance(two, list)
    assert len(two) == 2
    assert all(f.cancelled() for f in two)
    assert none == []
    assert failed(one)
    assert failed(two)


async def test_records_held_behind_a_failed_one_are_failed_too_so_they_go_out_behind_it() -> None:
    loop = asyncio.get_running_loop()
    sent: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(2)]
    sent[0].set_result(None)
    sent[1].set_exception(OSError("reset"))
    ledger = PartitionLedger()
    ledger.extend([0, 1], sent, ["r0", "r1"])
    ledger.extend([2, 3], held([[dest("fb")], [dest("fb")]]), ["r2", "r3"])
    offsets, failures = committable_offsets({0: ledger}, "views", [0])
    assert offsets == {("views", 0): 1}  # nothing at or after the failed record
    assert [f.offset for f in failures] == [1]  # the held ones are not failures of their own
    # Sent again together, in offset order: the failed record first.
    assert [offset for _pos, offset, _f, _item in ledger.failed(failed)] == [1, 2, 3]
