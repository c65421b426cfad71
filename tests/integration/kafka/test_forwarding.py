"""The forwarder's hot path on real brokers (noida-db and Tansu): records appended
straight to the producer's open batches (splitter/kafka/forwarding.py ``_Appender``).

What ``send`` would do must still hold: per destination partition the records
arrive in the order given, key (null included), value (null included),
headers and timestamp unchanged; a record over the request size is refused
with a failed future while the records around it go out; and a batch's
records share one future, the reason the path is cheaper than ``send``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from splitter.kafka.committing import failed
from splitter.kafka.forwarding import Forwarder
from splitter.routing import Delivery
from tests.integration.kafka.support import clients_for, create_topics, read_all
from tests.servers.kafka import KafkaBroker

pytestmark = pytest.mark.integration

#: Records per ``send_routed`` call, as a fetch hands them over.
FETCH = 250
#: The forwarder's request size here: small, so one record can be over it.
MAX_REQUEST = 64 * 1024
#: Record timestamps (ms): recent, or the broker's retention may delete the records.
START_MS = int(time.time() * 1000)


def record(offset: int, key: bytes | None, value: bytes | None, headers: Any) -> Any:
    """A consumed record as the worker gets it from aiokafka."""
    size = len(value) if value is not None else -1
    return ConsumerRecord(
        "src", 1, offset, START_MS + offset, 0, key, value, None, -1, size, headers
    )


def records(count: int) -> list[Any]:
    out = []
    for i in range(count):
        key = None if i % 7 == 0 else f"k{i % 13}".encode()
        value = None if i % 11 == 0 else b"v" * (100 + i % 300)
        headers = (("id", str(i).encode()), ("user", b"alice" if i % 3 else b"bob"))
        out.append(record(i, key, value, headers))
    return out


def flat(forwards: list[Any]) -> list[asyncio.Future[Any]]:
    return [f for entry in forwards for f in (entry if isinstance(entry, list) else [entry])]


async def test_records_go_out_in_order_unchanged_and_a_batch_shares_one_future(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    one, two = f"{unique_name}-a", f"{unique_name}-b"
    await create_topics(kafka_broker, 2, one, two)
    sent = records(2_000)
    # Every third record also goes to the second topic (a mirror copy's shape).
    routes = [
        [Delivery(one, None)] + ([Delivery(two, "m")] if r.offset % 3 == 0 else []) for r in sent
    ]
    forwards: list[Any] = []
    async with clients_for(kafka_broker).forwarder() as forwarder:
        await forwarder.learn_partitions([one, two])
        for i in range(0, len(sent), FETCH):
            forwards += await forwarder.send_routed(1, sent[i : i + FETCH], routes[i : i + FETCH])
        futures = flat(forwards)
        await asyncio.wait(futures, timeout=60)
    assert all(f.done() for f in futures)
    assert not any(failed(f) for f in futures)
    # A future per batch, not per record (each batch's first record has its own).
    assert len({id(f) for f in futures}) < len(futures) / 5

    for topic, expected in ((one, sent), (two, [r for r in sent if r.offset % 3 == 0])):
        got = await read_all(kafka_broker, topic, 2, expect=len(expected))
        assert {g.partition for g in got} == {1}
        assert [(g.key, g.value, g.headers, g.timestamp_ms) for g in got] == [
            (r.key, r.value, r.headers, r.timestamp) for r in expected
        ]


async def test_a_record_over_the_request_size_fails_alone_and_the_others_go_out(
    kafka_broker: KafkaBroker, unique_name: str
) -> None:
    topic = f"{unique_name}-a"
    await create_topics(kafka_broker, 1, topic)
    sent = records(300)
    big = 150
    sent[big] = record(big, b"big", b"x" * (MAX_REQUEST + 1), ())
    forwarder: Forwarder = clients_for(kafka_broker).forwarder(max_request_size=MAX_REQUEST)
    async with forwarder:
        await forwarder.learn_partitions([topic])
        forwards = await forwarder.send_routed(0, sent, [[Delivery(topic, None)]] * len(sent))
        await asyncio.wait(flat(forwards), timeout=60)
    assert [i for i, f in enumerate(forwards) if failed(f)] == [big]
    got = await read_all(kafka_broker, topic, 1, expect=len(sent) - 1)
    assert [g.headers for g in got] == [r.headers for r in sent if r.offset != big]
