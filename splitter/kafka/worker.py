"""The split worker for one original Kafka topic.

It consumes the original with the workload's own consumer group id (so the
takeover and the hand-back resume at committed offsets), routes each record
through the current :class:`~splitter.routing.Router` and forwards key,
value, headers and timestamp unchanged to the same partition number of the
destination topic (temporary topics have the original's partition count), so
per-partition order holds. Forwards are pipelined (``acks=all`` futures, never
one ``send_and_wait`` per record); a committer task commits, per partition,
only the offset after the longest prefix of acknowledged records
(:class:`~splitter.kafka.ledger.PartitionLedger`). On revocation the
partition's forwards are awaited and committed before it is given up.
Fetching pauses while more than ``max_uncommitted`` records are read but not
committed, which bounds the duplicates a crash can cause; from half that bound
on, the committer commits early instead of at its next tick, so the bound is
rarely a stall.

If the group coordination of the consumer breaks (noida-db can hand a member
an empty assignment aiokafka cannot decode), the worker commits what it can,
leaves under its member id and joins again with a new consumer (bounded
attempts); records not committed are read again by their next owner.

A worker given a ``member_file`` records its group member id there after
every join; a worker restarted after a crash (SIGKILL, OOM) finds its dead
predecessor's id in that file and makes it leave the group before joining,
so the partitions move at once instead of after a session timeout (and on
noida-db 0.2, which never expires a dead member once another joins, at all).
The file must belong to one replica only (a pod's ``emptyDir``): a live
member named in it would be removed too.

Session changes arrive through :meth:`KafkaSplitWorker.set_routes`. A session
that disappears is *ended* (:mod:`splitter.kafka.draining`): its topic is read
to the end, the leftovers routed again, the topic deleted. When the last
session ends the worker hands the topic back: it stops consuming (offsets
committed), waits for the workload to drain the fallback, moves what is left
back to the original, deletes the fallback (after :meth:`release_fallback`
when ``await_release``; never with ``delete_fallback=False``), and
:meth:`run` returns.
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

from splitter.errors import KafkaError, KafkaPropertyError, KafkaTopicError
from splitter.filters import MessageView
from splitter.kafka.client import GroupConsumer, KafkaClients, Partition, forward_failure
from splitter.kafka.draining import delete_topic, end_session, hand_back
from splitter.kafka.ledger import PartitionLedger
from splitter.routing import SessionRoute
from splitter.switching import SessionSwitch

log = structlog.get_logger()

#: Attempts to join the group before :meth:`KafkaSplitWorker.run` gives up.
JOIN_ATTEMPTS = 3
#: Seconds between join attempts (times the attempt number).
JOIN_BACKOFF = 1.0


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
    #: Delete the fallback after the drain; False leaves that to the caller
    #: (the operator deletes it once the workload's env is restored).
    delete_fallback: bool = True
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


class KafkaSplitWorker(SessionSwitch):
    """Splits one original topic between sessions and the fallback."""

    def __init__(
        self,
        clients: KafkaClients,
        config: KafkaWorkerConfig,
        routes: Sequence[SessionRoute] = (),
    ) -> None:
        super().__init__(routes, config.fallback_topic)
        self.clients = clients
        self.config = config
        self.stats = KafkaWorkerStats()
        self._ledgers: dict[int, PartitionLedger] = {}
        self._batch_lock = asyncio.Lock()
        self._commit_lock = asyncio.Lock()
        self._commit_soon = asyncio.Event()
        self._rejoins = 0
        self._progress = asyncio.Event()
        #: Set once the fallback is drained (leftovers moved back to the original).
        self.drained = asyncio.Event()
        self._log = log.bind(topic=config.topic, group=config.group_id)

    # --- running -----------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop` or until the last session ended and the topic was handed back."""
        cfg = self.config
        await self._remove_predecessor()
        async with self.clients.forwarder() as forwarder:
            self._forwarder = forwarder
            await self._join()
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
                await self._consumer.stop()  # the current one: a rejoin replaces it
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
                if cfg.delete_fallback:
                    await delete_topic(self.clients, cfg.fallback_topic)
                self._log.info(
                    "kafka topic handed back",
                    fallback=cfg.fallback_topic,
                    fallback_deleted=cfg.delete_fallback,
                )

    async def _join(self) -> GroupConsumer:
        """Join the group; a failed join is retried with a fresh consumer (bounded).

        noida-db can answer a SyncGroup during a rebalance with an empty
        assignment, which aiokafka cannot decode: its coordination task dies
        and the consumer is unusable. The member it got is made to leave, so
        it cannot hold the group's next rebalance.
        """
        cfg = self.config
        for attempt in range(1, JOIN_ATTEMPTS + 1):
            consumer = self.clients.group_consumer(
                cfg.topic,
                cfg.group_id,
                self,
                max_poll_records=cfg.fetch_max_records,
                **cfg.consumer_overrides,
            )
            self._consumer = consumer
            try:
                await consumer.start()
            except (KafkaTopicError, KafkaPropertyError):
                raise
            except KafkaError as e:
                member = consumer.member_id
                with contextlib.suppress(KafkaError):
                    await consumer.stop()
                self._ledgers.clear()  # nothing was read yet
                if attempt == JOIN_ATTEMPTS:
                    raise
                self._log.warning("kafka group join failed; retrying", error=str(e))
                if member is not None:
                    async with self.clients.admin() as admin:
                        await admin.remove_member(cfg.group_id, member)
                await asyncio.sleep(JOIN_BACKOFF * attempt)
                continue
            return consumer
        raise AssertionError("unreachable")

    async def _rejoin(self, error: KafkaError) -> None:
        """The consumer broke (its group coordination died): join again with a new one.

        What was forwarded and acknowledged is committed if the group still
        takes the commit; the rest is read again from the last commit by
        whoever owns the partition next (duplicates bounded by the ledgers).
        """
        self._rejoins += 1
        if self._rejoins > JOIN_ATTEMPTS:
            raise error
        self._log.warning("kafka consumer failed; joining the group again", error=str(error))
        old = self._consumer
        partitions = list(self._ledgers)
        await self._wait_forwards(partitions)
        with contextlib.suppress(KafkaError):
            await self._commit(partitions)
        member = old.member_id
        async with self._batch_lock:
            self._ledgers.clear()
        with contextlib.suppress(KafkaError):
            await old.stop()
        if member is not None:
            async with self.clients.admin() as admin:
                await admin.remove_member(self.config.group_id, member)
        self._consumer = await self._join()

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
        counts: Counter[str | None] = Counter()
        while not (self._stop.is_set() or self._hand_back.is_set()):
            uncommitted = self._uncommitted()
            if uncommitted > cfg.max_uncommitted // 2:
                self._commit_soon.set()  # the committer runs early; fetching goes on
            if uncommitted > cfg.max_uncommitted:
                # Over the bound: wait for what is in flight and commit it now,
                # not at the next commit tick (a stall of one acknowledgement).
                partitions = list(self._ledgers)
                await self._wait_forwards(partitions)
                await self._commit(partitions)
                if self._uncommitted() > cfg.max_uncommitted:
                    self._progress.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(cfg.commit_interval * 2):
                            await self._progress.wait()
                continue
            try:
                batch = await self._consumer.fetch(cfg.fetch_timeout_ms, cfg.fetch_max_records)
            except (KafkaTopicError, KafkaPropertyError):
                raise
            except KafkaError as e:
                if e.retriable:
                    self._log.warning("kafka fetch failed; retrying", error=str(e))
                    await asyncio.sleep(cfg.commit_interval)
                    continue
                await self._rejoin(e)
                continue
            if not batch:
                continue
            async with self._batch_lock:
                # Revocation takes the batch lock too: no ledger goes away mid-batch.
                router = self._router
                for (_topic, partition), records in batch.items():
                    ledger = self._ledgers.get(partition)
                    if ledger is None:
                        continue  # revoked while fetched: its new owner reads it again
                    self.stats.read += len(records)
                    routes = [
                        router.route(MessageView.from_kafka(r.headers, r.value, router.names))
                        for r in records
                    ]
                    forwards = await forwarder.send_routed(partition, records, routes)
                    ledger.extend([r.offset for r in records], forwards)
                    counts.update([t.session_id for targets in routes for t in targets])
                if None in counts:
                    counts["fallback"] = counts.pop(None)
                topic_stats.update(counts)  # type: ignore[arg-type]
                counts.clear()

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
                futures: Any = forwards
                if type(futures) is not list:
                    if not (futures.cancelled() or futures.exception() is not None):
                        continue  # the common case: one forward, acknowledged
                    futures = [futures]
                for future in futures:
                    error = forward_failure(future, f"{self.config.topic}[{partition}]")
                    if error is not None:
                        raise error
            offset = ledger.to_commit()
            if offset is not None:
                offsets[(self.config.topic, partition)] = offset
        return offsets

    async def _commit(self, partitions: Sequence[int]) -> None:
        # One commit at a time (commit loop, fetch bound, revocation, shutdown),
        # so the ledgers' committed offsets only move forward.
        async with self._commit_lock:
            await self._commit_locked(partitions)

    async def _commit_locked(self, partitions: Sequence[int]) -> None:
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
        """Commit every ``commit_interval``, or sooner when half the bound is uncommitted."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.commit_interval):
                    await self._commit_soon.wait()
                # Early: give the forwards in flight one acknowledgement's time.
                await self._wait_forwards(list(self._ledgers), oldest=True)
            self._commit_soon.clear()
            await self._commit(list(self._ledgers))

    async def _wait_forwards(self, partitions: Sequence[int], *, oldest: bool = False) -> None:
        """Wait (bounded) for the forwards in flight, or only each partition's oldest."""
        pending: list[Any] = []
        for partition in partitions:
            ledger = self._ledgers.get(partition)
            if ledger is None:
                continue
            if oldest:
                first = ledger.oldest()
                heads = [first] if first is not None else []
            else:
                heads = ledger.pending()
            for forwards in heads:
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
