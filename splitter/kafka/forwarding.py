"""Forwarding records to destination topics: a pipelined producer (adapter side).

:class:`Forwarder` wraps an ``acks=all`` aiokafka producer: ``send`` and
``send_routed`` return futures of the written offsets and never wait for the
acknowledgement themselves (the worker's ledgers do, per partition).
Failures of those futures are translated by
:func:`~splitter.kafka.translating.forward_failure`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from splitter.kafka.records import Destination, Headers, KafkaRecord
from splitter.kafka.translating import AIOKAFKA_ERRORS, translate_error, translating


class Forwarder:
    """A pipelined ``acks=all`` producer; use as an async context manager."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def __aenter__(self) -> Forwarder:
        async with translating("connecting the Kafka producer"):
            await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

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
                partition=partition,
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
        record, the future of its one forward or the list of its futures.
        One coroutine for the whole batch: this is the worker's hot path
        (one ``try`` around the loop, not a context manager per record).
        """
        send = self._producer.send
        forwards: list[asyncio.Future[Any] | list[asyncio.Future[Any]]] = []
        topic = ""
        try:
            for record, targets in zip(records, routes, strict=True):
                headers = list(record.headers)
                sent = []
                for target in targets:
                    topic = target.destination
                    sent.append(
                        await send(
                            topic,
                            record.value,
                            key=record.key,
                            partition=partition,
                            timestamp_ms=record.timestamp,
                            headers=headers,
                        )
                    )
                forwards.append(sent[0] if len(sent) == 1 else sent)
        except AIOKAFKA_ERRORS as e:
            raise translate_error(e, f"forwarding to {topic!r}[{partition}]") from e
        return forwards

    async def flush(self) -> None:
        async with translating("flushing the Kafka producer"):
            await self._producer.flush()
