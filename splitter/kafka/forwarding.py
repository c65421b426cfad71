"""Forwarding records to destination topics: a pipelined producer (adapter side).

:class:`Forwarder` wraps an ``acks=all`` aiokafka producer: ``send`` and
``send_routed`` return futures that resolve when the broker acknowledged the
record (``send_routed``: its producer batch, a future shared by the batch's
records) and never wait for the acknowledgement themselves (the worker's
ledgers do, per partition).
Failures of those futures are translated by
:func:`~splitter.kafka.translating.forward_failure`.

No record is a crash: a record the producer refuses at once (larger than
``max_request_size``, a partition the destination lacks, ...) gets a *failed
future* like a record the broker refused, so the worker's ledger holds the
commit at it and the worker sends it again with backoff. A record with a
null key *and* a null value is forwarded as such (aiokafka's ``send``
refuses one; :class:`NullableProducer` does not).

Records read while their partition waits to send a failed record again are
not sent at all: :func:`held` gives them *cancelled* futures, which the ledger
treats as failed, so they are sent behind the failed record, never ahead of it.

A destination with fewer partitions than the source partition number (a
session topic made with one partition, an original that grew before its
temporary topics did) gets source partition ``p`` on ``p % count``: every
record of a source partition still lands on one destination partition, so
per-partition order holds. The counts come from the producer's metadata
(:meth:`Forwarder.learn_partitions`, called by the worker when its routes or
its assignment change).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from splitter.kafka.records import Destination, Headers, KafkaRecord, Partition
from splitter.kafka.translating import AIOKAFKA_ERRORS, translating


class NullableProducer(AIOKafkaProducer):  # type: ignore[misc]
    """aiokafka's producer, taking a record with a null key and a null value too."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        if key is not None or value is not None:
            return await super().send(topic, value, key, partition, timestamp_ms, headers)
        # What AIOKafkaProducer.send does (0.11-0.14), without its "key or value" assertion.
        await self.client._wait_on_metadata(topic)
        headers = headers or []
        key_bytes, value_bytes = self._serialize(key, value, headers)
        partition = self._partition(topic, partition, key, value, key_bytes, value_bytes)
        return await self._message_accumulator.add_message(
            TopicPartition(topic, partition),
            key_bytes,
            value_bytes,
            self._request_timeout_ms / 1000,
            timestamp_ms=timestamp_ms,
            headers=headers,
        )


#: What aiokafka's ``send`` raises for one record it refuses (its partition check is an
#: assertion), besides its own errors: each becomes that record's failed forward.
_REFUSALS: tuple[type[Exception], ...] = (*AIOKAFKA_ERRORS, AssertionError, ValueError, TypeError)


def _failed(error: BaseException) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future


def held(
    routes: Sequence[Sequence[Destination]],
) -> list[asyncio.Future[Any] | list[asyncio.Future[Any]]]:
    """Forwards *not sent*, shaped like :meth:`Forwarder.send_routed`'s answer: one
    cancelled future per destination of each record. The worker gives them to records
    read while their partition waits to send a failed record again; the ledger counts
    them as failed, so they go out behind it, in offset order (never ahead of it)."""
    loop = asyncio.get_running_loop()
    out: list[asyncio.Future[Any] | list[asyncio.Future[Any]]] = []
    for targets in routes:
        futures = []
        for _target in targets:
            future: asyncio.Future[Any] = loop.create_future()
            future.cancel()
            futures.append(future)
        out.append(futures[0] if len(futures) == 1 else futures)
    return out


class _Appender:
    """Appends records straight to the producer's open batch of their partition.

    aiokafka's ``send`` costs more per record than routing it: it waits for the
    topic's metadata, checks the partition (twice), checks the size, finds the
    open batch and makes one future per record. Here a destination partition is
    checked once (``checked``: aiokafka's ``send`` took a record for it), the size
    once per record (not per destination), and a record that fits in the
    partition's open batch - the one ``send`` would append it to - is appended
    there and gets that *batch's* future: it resolves when the broker
    acknowledged the batch, or fails with it (one future per batch, not per
    record). The batch then lingers, fills and goes out exactly as if ``send``
    had appended the record, so per-partition order and the requests are the
    same. A record that does not fit (no open batch, a full one, a closed
    producer) is left to ``send``.

    Every open batch was made by ``send`` for a record of its own, so aiokafka
    retrieves a failed batch's error as it does for ``send``'s batches. Uses
    aiokafka internals (the accumulator's open batches, a batch's builder), as
    :class:`NullableProducer` does; the integration tests run it on both brokers.
    """

    __slots__ = ("_accumulator", "_checked", "_limit", "_open")

    def __init__(self, producer: AIOKafkaProducer, checked: set[Partition]) -> None:
        self._accumulator = producer._message_accumulator
        self._open = self._accumulator._batches
        self._checked = checked
        self._limit: int = producer._max_request_size

    def fits(
        self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> bool:
        """Whether the record is within the producer's request size (``send``'s check)."""
        size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
        return size <= self._limit

    def append(
        self,
        tp: Partition,
        key: bytes | None,
        value: bytes | None,
        timestamp: int | None,
        headers: list[tuple[str, bytes]],
    ) -> asyncio.Future[Any] | None:
        """The future of the open batch of ``tp`` the record went into, or None."""
        if tp not in self._checked:
            return None
        pending = self._open.get(tp)  # a TopicPartition is a tuple: (topic, partition) finds it
        accumulator = self._accumulator
        if not pending or accumulator._closed or accumulator._exception is not None:
            return None
        batch = pending[-1]
        if (
            batch._builder.append(timestamp=timestamp, key=key, value=value, headers=headers)
            is None
        ):
            return None  # full (or taken by the sender): ``send`` opens the next one
        future: asyncio.Future[Any] = batch.future
        return future


def destination_partition(partition: int, count: int | None) -> int:
    """Where source ``partition`` goes on a destination of ``count`` partitions."""
    if count is None or partition < count:
        return partition
    return partition % count


class Forwarder:
    """A pipelined ``acks=all`` producer; use as an async context manager."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        #: Destination topic -> its partition count, as last learnt.
        self.partition_counts: dict[str, int] = {}
        #: Destination partitions aiokafka's ``send`` took a record for since the partition
        #: counts were last learnt: the ones :class:`_Appender` may append to directly.
        self._checked: set[Partition] = set()

    async def __aenter__(self) -> Forwarder:
        async with translating("connecting the Kafka producer"):
            await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def learn_partitions(self, topics: Iterable[str], *, refresh: bool = False) -> None:
        """Look up the partition counts of ``topics`` (``refresh``: fresh metadata first)."""
        async with translating("reading topic metadata"):
            if refresh:
                await self._producer.client.force_metadata_update()
            self._checked.clear()
            for topic in topics:
                partitions = await self._producer.partitions_for(topic)
                if partitions:
                    self.partition_counts[topic] = len(partitions)

    async def send(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        timestamp_ms: int | None,
    ) -> asyncio.Future[Any]:
        """Queue one record; the future resolves when the broker acknowledged it."""
        async with translating(f"forwarding to {topic!r}[{partition}]"):
            return await self._producer.send(  # type: ignore[no-any-return]
                topic,
                value,
                key=key,
                partition=destination_partition(partition, self.partition_counts.get(topic)),
                timestamp_ms=timestamp_ms,
                headers=list(headers),
            )

    async def send_routed(
        self,
        partition: int,
        records: Sequence[KafkaRecord],
        routes: Sequence[Sequence[Destination]],
    ) -> list[asyncio.Future[Any] | list[asyncio.Future[Any]]]:
        """Queue each record to each of its destinations, same partition, unchanged.

        ``routes[i]`` are the destinations of ``records[i]``. Returns, per
        record, the future of its one forward or the list of its futures; a
        record the producer refuses at once gets a failed future (never an
        exception). This is the worker's hot path: a record goes straight into
        the producer's open batch for its destination partition (see
        :class:`_Appender`); only a record that finds no room there (or a
        destination partition not yet checked) takes aiokafka's ``send``.
        """
        appender = _Appender(self._producer, self._checked)
        counts = self.partition_counts
        #: Destination topic -> its partition key for this source partition.
        keys: dict[str, Partition] = {}
        forwards: list[asyncio.Future[Any] | list[asyncio.Future[Any]]] = []
        for record, targets in zip(records, routes, strict=True):
            headers = list(record.headers)
            key, value, timestamp = record.key, record.value, record.timestamp
            fits = appender.fits(key, value, headers)
            sent = []
            for target in targets:
                topic = target.destination
                tp = keys.get(topic)
                if tp is None:
                    tp = keys[topic] = (topic, destination_partition(partition, counts.get(topic)))
                future = appender.append(tp, key, value, timestamp, headers) if fits else None
                if future is None:
                    future = await self._send_one(tp, key, value, timestamp, headers)
                sent.append(future)
            forwards.append(sent[0] if len(sent) == 1 else sent)
        return forwards

    async def _send_one(
        self,
        tp: Partition,
        key: bytes | None,
        value: bytes | None,
        timestamp: int | None,
        headers: list[tuple[str, bytes]],
    ) -> asyncio.Future[Any]:
        """aiokafka's own ``send`` (metadata, partition and size checks, a full batch's
        wait); a refusal is a failed future. A partition it takes is marked checked."""
        topic, partition = tp
        try:
            future: asyncio.Future[Any] = await self._producer.send(
                topic, value, key=key, partition=partition, timestamp_ms=timestamp, headers=headers
            )
        except _REFUSALS as e:
            return _failed(e)
        self._checked.add(tp)
        return future

    async def resend(
        self,
        partition: int,
        record: KafkaRecord,
        targets: Sequence[Destination],
        forwards: asyncio.Future[Any] | list[asyncio.Future[Any]],
    ) -> asyncio.Future[Any] | list[asyncio.Future[Any]]:
        """Send ``record`` again to the targets whose forward failed; keep the others."""
        old = forwards if isinstance(forwards, list) else [forwards]
        again = []
        for target, future in zip(targets, old, strict=True):
            if future.cancelled() or future.exception() is not None:
                (sent,) = await self.send_routed(partition, [record], [[target]])
                future = sent if not isinstance(sent, list) else sent[0]
            again.append(future)
        return again[0] if len(again) == 1 else again

    async def flush(self) -> None:
        async with translating("flushing the Kafka producer"):
            await self._producer.flush()
