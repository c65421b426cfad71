"""The split worker for one original Kafka topic.

It consumes the original with the workload's own consumer group id (so the
takeover and the hand-back resume at committed offsets), routes each record
through the current :class:`~splitter.routing.Router` and forwards key,
value, headers and timestamp unchanged to the same partition number of the
destination topic (temporary topics have the original's partition count), so
per-partition order holds. Forwards are pipelined (``acks=all`` futures, never
one ``send_and_wait`` per record); a committer task commits, per partition,
only the offset after the longest prefix of acknowledged records
(:class:`~splitter.kafka_offsets.PartitionLedger`). On revocation the
partition's forwards are awaited and committed before it is given up.
Fetching pauses while more than ``max_uncommitted`` records are read but not
committed, which bounds the duplicates a crash can cause.

A worker given a ``member_file`` records its group member id there after
every join; a worker restarted after a crash (SIGKILL, OOM) finds its dead
predecessor's id in that file and makes it leave the group before joining,
so the partitions move at once instead of after a session timeout (and on
noida-db 0.2, which never expires a dead member once another joins, at all).
The file must belong to one replica only (a pod's ``emptyDir``): a live
member named in it would be removed too.

Session changes arrive through :meth:`KafkaSplitWorker.set_routes`. A session
that disappears is *ended* (:mod:`splitter.kafka_draining`): its topic is read
to the end, the leftovers routed again, the topic deleted. When the last
session ends the worker hands the topic back: it stops consuming (offsets
committed), waits for the workload to drain the fallback, moves what is left
back to the original, deletes the fallback (after :meth:`release_fallback`
when ``await_release``), and :meth:`run` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from splitter.errors import KafkaError
from splitter.filters import MessageView
from splitter.kafka import KafkaClients, Partition, forward_failure
from splitter.kafka_draining import delete_topic, end_session, hand_back
from splitter.kafka_offsets import Forwards, PartitionLedger
from splitter.routing import Router, SessionRoute

log = structlog.get_logger()


@dataclass(frozen=True)
class KafkaWorkerConfig:
    """What one split worker does and its bounds."""

    topic: str
    group_id: str
    fallback_topic: str
    fetch_max_records: int = 500
    fetch_timeout_ms: int = 200
    #: Seconds between offset commits (the acknowledged prefix of every partition).
    commit_interval: float = 0.2
    #: Records read but not committed before fetching pauses (bounds crash duplicates).
    max_uncommitted: int = 10_000
    #: Seconds to wait for the workload to drain the fallback; None = wait, 0 = skip.
    drain_timeout: float | None = None
    #: Seconds to wait for in-flight forwards on shutdown or revocation.
    flush_timeout: float = 20.0
    #: Extra aiokafka consumer arguments (tests: group timeouts).
    consumer_overrides: dict[str, Any] = field(default_factory=dict)
    #: After the drain, wait for :meth:`KafkaSplitWorker.release_fallback` before
    #: deleting the fallback (the operator restores the workload's env first).
    await_release: bool = False
    #: Where this replica records its group member id (see the module docstring).
    member_file: Path | None = None


@dataclass
class KafkaWorkerStats:
    """Counters the process form exports as metrics."""

    read: int = 0
    #: Records whose offsets this worker committed (each counted once).
    committed: int = 0
    forwarded: Counter[str] = field(default_factory=Counter)  # session id or "fallback"
    commits: int = 0
    rerouted: int = 0
    returned: int = 0
    lag: int = 0


class KafkaSplitWorker:
    """Splits one original topic between sessions and the fallback."""

    def __init__(
        self,
        clients: KafkaClients,
        config: KafkaWorkerConfig,
        routes: Sequence[SessionRoute] = (),
    ) -> None:
        self.clients = clients
        self.config = config
        self.stats = KafkaWorkerStats()
        self._router = Router(routes, config.fallback_topic)
        self._had_sessions = bool(routes)
        self._ledgers: dict[int, PartitionLedger] = {}
        self._batch_lock = asyncio.Lock()
        self._ended: asyncio.Queue[SessionRoute] = asyncio.Queue()
        self._progress = asyncio.Event()
        self._stop = asyncio.Event()
        self._hand_back = asyncio.Event()
        self._released = asyncio.Event()
        #: Set once the fallback is drained (leftovers moved back to the original).
        self.drained = asyncio.Event()
        self._log = log.bind(topic=config.topic, group=config.group_id)

    # --- control -----------------------------------------------------------

    @property
    def router(self) -> Router:
        return self._router

    def set_routes(self, routes: Sequence[SessionRoute]) -> None:
        """Route the next record by these sessions; sessions no longer listed end."""
        remaining = {r.session_id for r in routes}
        ended = [r for r in self._router.sessions if r.session_id not in remaining]
        self._router = Router(routes, self.config.fallback_topic)
        for route in ended:
            self._ended.put_nowait(route)
        if routes:
            self._had_sessions = True
        elif self._had_sessions:
            self._hand_back.set()

    def release_fallback(self) -> None:
        """The workload no longer reads the fallback: the worker may delete it."""
        self._released.set()

    def stop(self) -> None:
        """Stop consuming, commit what was forwarded, keep every topic (SIGTERM)."""
        self._stop.set()

    # --- running -----------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop` or until the last session ended and the topic was handed back."""
        cfg = self.config
        consumer = self.clients.group_consumer(
            cfg.topic,
            cfg.group_id,
            self,
            max_poll_records=cfg.fetch_max_records,
            **cfg.consumer_overrides,
        )
        await self._remove_predecessor()
        async with self.clients.forwarder() as forwarder:
            self._forwarder = forwarder
            self._consumer = consumer
            await consumer.start()
            self._log.info("kafka worker consuming")
            try:
                async with asyncio.TaskGroup() as tg:
                    committer = tg.create_task(self._commit_loop(), name="kafka-commit")
                    ender = tg.create_task(self._end_sessions(), name="kafka-session-end")
                    await self._consume()
                    await self._flush_and_commit()
                    committer.cancel()
                    # Sessions already ended are finished before leaving.
                    await self._ended.join()
                    ender.cancel()
            finally:
                await consumer.stop()
            self._log.info("kafka worker stopped consuming", stats=self._summary())
            if self._hand_back.is_set() and not self._stop.is_set():
                moved = await hand_back(
                    self.clients,
                    forwarder,
                    original=cfg.topic,
                    fallback=cfg.fallback_topic,
                    group_id=cfg.group_id,
                    drain_timeout=cfg.drain_timeout,
                    stats=self.stats,
                )
                self.drained.set()
                self._log.info("kafka fallback drained", returned=moved)
                if cfg.await_release:
                    await self._released.wait()
                await delete_topic(self.clients, cfg.fallback_topic)
                self._log.info("kafka topic handed back", fallback=cfg.fallback_topic)

    async def _remove_predecessor(self) -> None:
        path = self.config.member_file
        if path is None:
            return
        try:
            member = path.read_text().strip()
        except FileNotFoundError:
            return
        if not member:
            return
        async with self.clients.admin() as admin:
            removed = await admin.remove_member(self.config.group_id, member)
        self._log.info("kafka predecessor removed from group", member=member, known=removed)

    def _record_member(self) -> None:
        path, member = self.config.member_file, self._consumer.member_id
        if path is None or member is None:
            return
        partial = path.with_name(path.name + ".tmp")
        partial.write_text(member)
        os.replace(partial, path)

    async def _consume(self) -> None:
        cfg = self.config
        forwarder = self._forwarder
        topic_stats = self.stats.forwarded
        while not (self._stop.is_set() or self._hand_back.is_set()):
            if self._uncommitted() > cfg.max_uncommitted:
                self._progress.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(cfg.commit_interval * 2):
                        await self._progress.wait()
                continue
            batch = await self._consumer.fetch(cfg.fetch_timeout_ms, cfg.fetch_max_records)
            if not batch:
                continue
            async with self._batch_lock:
                for (_topic, partition), records in batch.items():
                    ledger = self._ledgers.get(partition)
                    if ledger is None:
                        continue  # revoked while fetched: its new owner reads it again
                    self.stats.read += len(records)
                    for record in records:
                        if self._ledgers.get(partition) is not ledger:
                            break  # revoked mid-batch
                        view = MessageView.from_kafka(record.headers, record.value)
                        targets = self._router.route(view)
                        forwards: Forwards
                        if len(targets) == 1:
                            target = targets[0]
                            forwards = await forwarder.send(
                                target.destination,
                                partition,
                                record.key,
                                record.value,
                                record.headers,
                                record.timestamp,
                            )
                            topic_stats[target.session_id or "fallback"] += 1
                        else:
                            many = []
                            for target in targets:
                                many.append(
                                    await forwarder.send(
                                        target.destination,
                                        partition,
                                        record.key,
                                        record.value,
                                        record.headers,
                                        record.timestamp,
                                    )
                                )
                                topic_stats[target.session_id or "fallback"] += 1
                            forwards = many
                        ledger.add(record.offset, forwards)

    def _uncommitted(self) -> int:
        return sum(ledger.uncommitted() for ledger in self._ledgers.values())

    # --- committing --------------------------------------------------------

    def _committable(self, partitions: Sequence[int]) -> dict[Partition, int]:
        offsets: dict[Partition, int] = {}
        for partition in partitions:
            ledger = self._ledgers.get(partition)
            if ledger is None:
                continue
            for forwards in ledger.advance():
                for future in forwards if isinstance(forwards, list) else (forwards,):
                    error = forward_failure(future, f"{self.config.topic}[{partition}]")  # type: ignore[arg-type]
                    if error is not None:
                        raise error
            offset = ledger.to_commit()
            if offset is not None:
                offsets[(self.config.topic, partition)] = offset
        return offsets

    async def _commit(self, partitions: Sequence[int]) -> None:
        offsets = self._committable(partitions)
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as e:
            if not e.retriable:
                raise
            self._log.warning("kafka commit deferred", error=str(e))
            return
        for (_t, partition), offset in offsets.items():
            ledger = self._ledgers.get(partition)
            if ledger is not None:
                previous = ledger.committed if ledger.committed is not None else ledger.base
                self.stats.committed += offset - (previous if previous is not None else offset)
                ledger.mark_committed(offset)
        self.stats.commits += 1
        self._progress.set()

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.commit_interval)
            await self._commit(list(self._ledgers))

    async def _wait_forwards(self, partitions: Sequence[int]) -> None:
        pending: list[Any] = []
        for partition in partitions:
            ledger = self._ledgers.get(partition)
            if ledger is None:
                continue
            for forwards in ledger.pending():
                pending.extend(forwards if isinstance(forwards, list) else (forwards,))
        if pending:
            await asyncio.wait(pending, timeout=self.config.flush_timeout)

    async def _flush_and_commit(self) -> None:
        partitions = list(self._ledgers)
        await self._wait_forwards(partitions)
        await self._commit(partitions)

    # --- rebalance callbacks (called by the consumer during a rebalance) ---

    async def partitions_revoked(self, partitions: set[Partition]) -> None:
        mine = [p for t, p in partitions if t == self.config.topic and p in self._ledgers]
        if not mine:
            return
        # The batch in hand finishes dispatching first, so its records are in the ledgers.
        async with self._batch_lock:
            await self._wait_forwards(mine)
            try:
                await self._commit(mine)
            finally:
                for partition in mine:
                    self._ledgers.pop(partition, None)
        self._log.info("kafka partitions revoked", partitions=sorted(mine))

    async def partitions_assigned(self, partitions: set[Partition]) -> None:
        mine = sorted(p for t, p in partitions if t == self.config.topic)
        for partition in mine:
            self._ledgers.setdefault(partition, PartitionLedger())
        self._record_member()
        self._log.info("kafka partitions assigned", partitions=mine)

    # --- session end -------------------------------------------------------

    async def _end_sessions(self) -> None:
        while True:
            route = await self._ended.get()
            try:
                await self._end_one(route)
            finally:
                self._ended.task_done()

    async def _end_one(self, route: SessionRoute) -> None:
        started = time.monotonic()
        # Every record routed by the old router is in a ledger once the batch ends.
        async with self._batch_lock:
            partitions = list(self._ledgers)
        await self._wait_forwards(partitions)
        moved = await end_session(
            self.clients,
            self._forwarder,
            topic=route.destination,
            group_id=self.config.group_id,
            router=lambda: self._router,
            stats=self.stats,
        )
        self._log.info(
            "kafka session ended",
            session=route.session_id,
            rerouted=moved,
            seconds=round(time.monotonic() - started, 3),
        )

    def _summary(self) -> dict[str, Any]:
        return {
            "read": self.stats.read,
            "forwarded": dict(self.stats.forwarded),
            "commits": self.stats.commits,
        }
