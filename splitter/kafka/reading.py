"""Reading partitions to their real end without joining a group (adapter side).

:class:`TopicReader` serves session end and hand-back: read a topic from
given offsets to its end, or just find its end. "Real end": Tansu 0.6
under-reports ``ListOffsets`` end offsets after a batched produce, so the
listed end is trusted only once fetches there stay empty for ``idle_ms``
(``KafkaSettings.end_probe_ms``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from splitter.kafka.records import KafkaRecord, Partition
from splitter.kafka.translating import translating

#: Milliseconds one fetch of :meth:`TopicReader.read_to_end` waits (its step, not a bound).
_FETCH_STEP_MS = 100


class TopicReader:
    """Reads assigned partitions without joining a group; use as an async context manager."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer

    async def __aenter__(self) -> TopicReader:
        async with translating("connecting a Kafka reader"):
            await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    def assign(self, partitions: Iterable[Partition]) -> None:
        self._consumer.assign([TopicPartition(t, p) for t, p in partitions])

    def seek(self, partition: Partition, offset: int) -> None:
        self._consumer.seek(TopicPartition(*partition), offset)

    async def position(self, partition: Partition) -> int:
        async with translating(f"reading the position on {partition}"):
            position: int = await self._consumer.position(TopicPartition(*partition))
        return position

    async def fetch(self, timeout_ms: int) -> dict[Partition, list[KafkaRecord]]:
        async with translating("reading"):
            batch = await self._consumer.getmany(timeout_ms=timeout_ms)
        return {(tp.topic, tp.partition): records for tp, records in batch.items()}

    async def listed_end_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        tps = [TopicPartition(t, p) for t, p in partitions]
        async with translating("listing end offsets"):
            ends = await self._consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    async def listed_start_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The first offset still in each partition (after retention)."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        async with translating("listing start offsets"):
            starts = await self._consumer.beginning_offsets(tps)
        return {(tp.topic, tp.partition): offset for tp, offset in starts.items()}

    async def read_to_end(
        self,
        starts: Mapping[Partition, int | None],
        on_records: Callable[[Partition, list[KafkaRecord]], Awaitable[None]],
        *,
        idle_ms: int,
    ) -> dict[Partition, int]:
        """Read each partition from its start (None: earliest) to its real end.

        The end is the listed end offset, or further if a fetch there still
        returns records within ``idle_ms`` (Tansu under-reports end offsets).
        Returns the offset after the last record seen per partition.
        """
        self.assign(starts)
        for partition, start in starts.items():
            if start is not None:
                self.seek(partition, start)
        ends = await self.listed_end_offsets(starts)
        positions = {p: await self.position(p) for p in starts}
        pending = {p for p in starts if positions[p] < ends[p]}
        idle = 0
        while pending or idle < idle_ms:
            batch = await self.fetch(timeout_ms=_FETCH_STEP_MS)
            if not batch:
                idle += _FETCH_STEP_MS
                continue
            idle = 0
            for partition, records in batch.items():
                await on_records(partition, records)
                positions[partition] = records[-1].offset + 1
                if positions[partition] >= ends[partition]:
                    pending.discard(partition)
        return positions

    async def end_offsets(
        self, partitions: Iterable[Partition], *, idle_ms: int
    ) -> dict[Partition, int]:
        """Real end offsets: listed ends, moved past any record a fetch still finds there."""
        listed = await self.listed_end_offsets(partitions)

        async def ignore(_p: Partition, _r: list[KafkaRecord]) -> None:
            return None

        return await self.read_to_end(dict(listed), ignore, idle_ms=idle_ms)
