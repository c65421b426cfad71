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
leaves under its member id and joins again with a new consumer
(``join_attempts``, waits from ``join_backoff`` doubling); records not
committed are read again by their next owner.

A worker given a ``member_file`` records its group member id there and, when
restarted after a crash, removes its dead predecessor from the group first
(:mod:`splitter.kafka.membership`).

What the worker splits is its :class:`KafkaWorkerIdentity`; how (intervals,
bounds, retries) is :class:`~splitter.kafka.settings.KafkaSettings`, the one
home of every Kafka default.

The module is one class of ~400 lines on purpose: the fetch loop, the
committer, revocation, rejoin and session end share the ledgers and two
locks (batch, commit), one concurrency protocol best read in one place; the
pieces without shared state live beside it (:mod:`~splitter.kafka.committing`,
:mod:`~splitter.kafka.membership`, :mod:`~splitter.kafka.draining`).

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
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from splitter.backoff import Backoff
from splitter.errors import KafkaError, KafkaPropertyError, KafkaTopicError
from splitter.filters import MessageView
from splitter.kafka.clients import KafkaClients
from splitter.kafka.committing import committable_offsets, forwards_in_flight, mark_committed
from splitter.kafka.consuming import GroupConsumer
from splitter.kafka.draining import delete_topic, end_session, hand_back
from splitter.kafka.ledger import PartitionLedger
from splitter.kafka.membership import record_member, recorded_member, remove_member
from splitter.kafka.records import Partition
from splitter.kafka.settings import KafkaSettings
from splitter.routing import SessionRoute
from splitter.switching import SessionSwitch

log = structlog.get_logger()


@dataclass(frozen=True)
class KafkaWorkerIdentity:
    """What one split worker splits, and what it leaves to its caller at the end."""

    topic: str
    group_id: str
    fallback_topic: str
    #: Where this replica records its group member id (:mod:`splitter.kafka.membership`).
    member_file: Path | None = None
    #: After the drain, wait for :meth:`KafkaSplitWorker.release_fallback` before
    #: deleting the fallback (the operator restores the workload's env first).
    await_release: bool = False
    #: Delete the fallback after the drain; False leaves that to the caller
    #: (the operator deletes it once the workload's env is restored).
    delete_fallback: bool = True


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
        identity: KafkaWorkerIdentity,
        settings: KafkaSettings,
        routes: Sequence[SessionRoute] = (),
        *,
        consumer_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        """``consumer_overrides``: extra aiokafka consumer arguments (tests: group timeouts)."""
        super().__init__(routes, identity.fallback_topic)
        self.clients = clients
        self.identity = identity
        self.settings = settings
        self._consumer_overrides = dict(consumer_overrides or {})
        self.stats = KafkaWorkerStats()
        self._ledgers: dict[int, PartitionLedger] = {}
        self._batch_lock = asyncio.Lock()
        self._commit_lock = asyncio.Lock()
        self._commit_soon = asyncio.Event()
        self._rejoins = 0
        self._progress = asyncio.Event()
        #: Set once the fallback is drained (leftovers moved back to the original).
        self.drained = asyncio.Event()
        self._log = log.bind(topic=identity.topic, group=identity.group_id)

    # --- running -----------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop` or until the last session ended and the topic was handed back."""
        ident = self.identity
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
                    original=ident.topic,
                    fallback=ident.fallback_topic,
                    group_id=ident.group_id,
                    settings=self.settings,
                    on_lag=self._set_lag,
                )
                self.stats.returned += moved
                self.drained.set()
                self._log.info("kafka fallback drained", returned=moved)
                if ident.await_release:
                    await self._released.wait()
                if ident.delete_fallback:
                    await delete_topic(self.clients, ident.fallback_topic)
                self._log.info(
                    "kafka topic handed back",
                    fallback=ident.fallback_topic,
                    fallback_deleted=ident.delete_fallback,
                )

    def _set_lag(self, lag: int) -> None:
        self.stats.lag = lag

    async def _join(self) -> GroupConsumer:
        """Join the group; a failed join is retried with a fresh consumer (bounded).

        noida-db can answer a SyncGroup during a rebalance with an empty
        assignment, which aiokafka cannot decode: its coordination task dies
        and the consumer is unusable. The member it got is made to leave, so
        it cannot hold the group's next rebalance.
        """
        ident, settings = self.identity, self.settings
        backoff = Backoff(first=settings.join_backoff, ceiling=settings.join_backoff_max)
        for attempt in range(1, settings.join_attempts + 1):
            consumer = self.clients.group_consumer(
                ident.topic,
                ident.group_id,
                self,
                max_poll_records=settings.fetch_max_records,
                **self._consumer_overrides,
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
                if attempt == settings.join_attempts:
                    raise
                self._log.warning("kafka group join failed; retrying", error=str(e))
                if member is not None:
                    await remove_member(self.clients, ident.group_id, member)
                await backoff.sleep()
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
        if self._rejoins > self.settings.join_attempts:
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
            await remove_member(self.clients, self.identity.group_id, member)
        self._consumer = await self._join()

    async def _remove_predecessor(self) -> None:
        path = self.identity.member_file
        member = None if path is None else recorded_member(path)
        if member is None:
            return
        removed = await remove_member(self.clients, self.identity.group_id, member)
        self._log.info("kafka predecessor removed from group", member=member, known=removed)

    def _record_member(self) -> None:
        path, member = self.identity.member_file, self._consumer.member_id
        if path is not None and member is not None:
            record_member(path, member)

    async def _consume(self) -> None:
        settings = self.settings
        retry = Backoff(first=settings.retry_backoff, ceiling=settings.retry_backoff_max)
        forwarder = self._forwarder
        topic_stats = self.stats.forwarded
        counts: Counter[str | None] = Counter()
        while not (self._stop.is_set() or self._hand_back.is_set()):
            uncommitted = self._uncommitted()
            if uncommitted > settings.max_uncommitted // 2:
                self._commit_soon.set()  # the committer runs early; fetching goes on
            if uncommitted > settings.max_uncommitted:
                # Over the bound: wait for what is in flight and commit it now,
                # not at the next commit tick (a stall of one acknowledgement).
                partitions = list(self._ledgers)
                await self._wait_forwards(partitions)
                await self._commit(partitions)
                if self._uncommitted() > settings.max_uncommitted:
                    self._progress.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(settings.commit_interval * 2):
                            await self._progress.wait()
                continue
            try:
                batch = await self._consumer.fetch(
                    settings.fetch_timeout_ms, settings.fetch_max_records
                )
            except (KafkaTopicError, KafkaPropertyError):
                raise
            except KafkaError as e:
                if e.retriable:
                    self._log.warning("kafka fetch failed; retrying", error=str(e))
                    await retry.sleep()
                    continue
                await self._rejoin(e)
                continue
            if retry.attempts:
                retry.reset()  # a fetch worked: the next failure waits the first delay again
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

    async def _commit(self, partitions: Sequence[int]) -> None:
        # One commit at a time (commit loop, fetch bound, revocation, shutdown),
        # so the ledgers' committed offsets only move forward.
        async with self._commit_lock:
            await self._commit_locked(partitions)

    async def _commit_locked(self, partitions: Sequence[int]) -> None:
        offsets = committable_offsets(self._ledgers, self.identity.topic, partitions)
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as e:
            if not e.retriable:
                raise
            self._log.warning("kafka commit deferred", error=str(e))
            return
        self.stats.committed += mark_committed(self._ledgers, offsets)
        self.stats.commits += 1
        self._progress.set()

    async def _commit_loop(self) -> None:
        """Commit every ``commit_interval``, or sooner when half the bound is uncommitted."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.commit_interval):
                    await self._commit_soon.wait()
                # Early: give the forwards in flight one acknowledgement's time.
                await self._wait_forwards(list(self._ledgers), oldest=True)
            self._commit_soon.clear()
            await self._commit(list(self._ledgers))

    async def _wait_forwards(self, partitions: Sequence[int], *, oldest: bool = False) -> None:
        """Wait (bounded) for the forwards in flight, or only each partition's oldest."""
        pending = forwards_in_flight(self._ledgers, partitions, oldest=oldest)
        if pending:
            await asyncio.wait(pending, timeout=self.settings.flush_timeout)

    async def _flush_and_commit(self) -> None:
        partitions = list(self._ledgers)
        await self._wait_forwards(partitions)
        await self._commit(partitions)

    # --- rebalance callbacks (called by the consumer during a rebalance) ---

    async def partitions_revoked(self, partitions: set[Partition]) -> None:
        mine = [p for t, p in partitions if t == self.identity.topic and p in self._ledgers]
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
        mine = sorted(p for t, p in partitions if t == self.identity.topic)
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
            group_id=self.identity.group_id,
            router=lambda: self._router,
            settings=self.settings,
        )
        self.stats.rerouted += moved
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
