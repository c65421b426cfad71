"""Forwarding records to destination topics: a pipelined producer (adapter side).

:class:`Forwarder` wraps an ``acks=all`` aiokafka producer: ``send`` and
``send_routed`` return futures of the written offsets and never wait for the
acknowledgement themselves (the worker's ledgers do, per partition).
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

from splitter.kafka.records import Destination, Headers, KafkaRecord
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
        exception). One coroutine for the whole batch: this is the worker's
        hot path (one ``try`` per send, no context manager per record).
        """
        send = self._producer.send
        counts = self.partition_counts
        forwards: list[asyncio.Future[Any] | list[asyncio.Future[Any]]] = []
        for record, targets in zip(records, routes, strict=True):
            headers = list(record.headers)
            sent = []
            for target in targets:
                topic = target.destination
                count = counts.get(topic)
                try:
                    sent.append(
                        await send(
                            topic,
                            record.value,
                            key=record.key,
                            partition=partition
                            if count is None or partition < count
                            else partition % count,
                            timestamp_ms=record.timestamp,
                            headers=headers,
                        )
                    )
                except _REFUSALS as e:
                    sent.append(_failed(e))
            forwards.append(sent[0] if len(sent) == 1 else sent)
        return forwards

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
