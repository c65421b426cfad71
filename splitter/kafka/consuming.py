"""Consuming a topic as a member of the workload's consumer group (adapter side).

:class:`GroupConsumer` joins the group with auto-commit off, fetches, commits
explicit offsets and reports partition revocation/assignment to async
:class:`RebalanceCallbacks`. It also keeps the member id across a commit
refused by a rebalance (see :meth:`GroupConsumer._keep_member_id`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.structs import OffsetAndMetadata

from splitter.errors import KafkaUnavailableError
from splitter.kafka.records import KafkaRecord, Partition
from splitter.kafka.translating import translating

log = structlog.get_logger()


class RebalanceCallbacks(Protocol):
    async def partitions_revoked(self, partitions: set[Partition]) -> None: ...

    async def partitions_assigned(self, partitions: set[Partition]) -> None: ...


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, callbacks: RebalanceCallbacks) -> None:
        self._callbacks = callbacks

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._callbacks.partitions_revoked({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._callbacks.partitions_assigned({(tp.topic, tp.partition) for tp in assigned})


class GroupConsumer:
    """Consumes one topic as a member of a consumer group; auto-commit is off."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topic: str,
        group_id: str,
        callbacks: RebalanceCallbacks,
    ) -> None:
        self._consumer = consumer
        self.topic = topic
        self.group_id = group_id
        self._listener = _Listener(callbacks)

    async def start(self) -> None:
        self._consumer.subscribe([self.topic], listener=self._listener)
        async with translating(f"joining group {self.group_id!r} on {self.topic!r}"):
            await self._consumer.start()

    async def stop(self) -> None:
        """Leave the group (revocation callbacks run first) and close."""
        async with translating(f"leaving group {self.group_id!r}"):
            await self._consumer.stop()

    async def fetch(self, timeout_ms: int, max_records: int) -> dict[Partition, list[KafkaRecord]]:
        async with translating(f"fetching from {self.topic!r}"):
            batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return {(tp.topic, tp.partition): records for tp, records in batch.items()}

    def assignment(self) -> set[Partition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    @property
    def member_id(self) -> str | None:
        """This member's id in the group once joined (aiokafka keeps it on its coordinator)."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        member = getattr(coordinator, "member_id", "")
        return str(member) if member else None

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit the next offset to read per partition."""
        if not offsets:
            return
        payload = {TopicPartition(t, p): OffsetAndMetadata(o, "") for (t, p), o in offsets.items()}
        member = self.member_id
        try:
            async with translating(f"committing offsets of group {self.group_id!r}"):
                await self._consumer.commit(payload)
        except KafkaUnavailableError:
            self._keep_member_id(member)
            raise

    def _keep_member_id(self, member: str | None) -> None:
        """Rejoin under our member id after a commit refused with ILLEGAL_GENERATION.

        aiokafka answers a refused commit by forgetting its member id and
        joining again as a *new* member; the old id stays in the group until
        the broker expires it (a session timeout on Apache Kafka; never on
        noida-db 0.2, whose group then waits for it forever - and noida bumps
        the generation as soon as a member joins, so every commit racing a
        join, the revocation commit included, is refused there). Rejoining
        under the same id, as the Java client does since Kafka 2.x, is a plain
        rejoin; if the broker no longer knows the id, the join says so and
        aiokafka starts afresh. Runs before the rejoin: no await since the reset.
        """
        coordinator = getattr(self._consumer, "_coordinator", None)
        if member is None or coordinator is None or coordinator.member_id:
            return
        coordinator.member_id = member
        log.info("kafka rejoining under the same member id", group=self.group_id, member=member)
