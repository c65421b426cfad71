"""What the Kafka modules pass around: partitions, headers, consumed records, destinations.

Plain types, no aiokafka: records are aiokafka's ``ConsumerRecord`` objects,
typed here by the :class:`KafkaRecord` protocol, so the hot path copies
nothing and the worker side never names the library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

Partition = tuple[str, int]
"""(topic, partition number)."""

Headers = Sequence[tuple[str, bytes]]


class KafkaRecord(Protocol):
    """What the worker reads of a consumed record (aiokafka's ``ConsumerRecord``)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers


class Destination(Protocol):
    """Where a record is forwarded (``splitter.routing.Delivery``)."""

    @property
    def destination(self) -> str: ...
