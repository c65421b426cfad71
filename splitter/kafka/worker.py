"""The split worker for one original Kafka topic.

It consumes the original with the workload's own consumer group id (so the
takeover and the hand-back resume at committed offsets; a partition the group
never committed starts where the workload's consumer would start it, its
``auto.offset.reset``, latest by default) and reads committed records only
(``read_committed``). It routes each record through the current
:class:`~splitter.routing.Router` and forwards key (null included), value
(null included), headers and timestamp unchanged to the same partition number
of the destination topic, so per-partition order holds. Before routing to a
destination it learns its partition count: a destination with fewer partitions
gets source partition ``p`` on ``p % count`` (still one destination partition
per source partition), and when the original grows the worker grows its
temporary topics (:func:`~splitter.kafka.topics.grow_to_original`). The
forwarder is sized for the original's ``max.message.bytes``.

Forwards are pipelined (``acks=all`` futures, never one ``send_and_wait`` per
record); a committer task commits, per partition, only the offset after the
longest prefix of *successfully* acknowledged records
(:class:`~splitter.kafka.ledger.PartitionLedger`). A failed forward is sticky:
nothing at or after it is committed - not by the committer, a revocation or the
shutdown - until it is forwarded; the committer sends it (and every later
failed record of the partition, in order) again with backoff
(``forward_retry_backoff``), counts it (``stats.forward_failures``, gauge
``stats.failing``) and reports it (``stats.last_forward_error``, a warning per
attempt). Records of that partition read while it waits are *held*, not sent
(:func:`~splitter.kafka.forwarding.held`), and go out behind it, so they never
overtake it; only a record sent before the failure was known (its forward
already in flight) can land before the failed record's retry. No record is ever
a crash. On revocation the partition's forwards are awaited and committed up to
any failure before it is given up.

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

Session changes arrive through :meth:`KafkaSplitWorker.set_routes`. A session
that disappears is *ended* (:mod:`splitter.kafka.draining`): its topic is read
to the end, the leftovers routed again, the topic deleted. When the last
session ends the worker hands the topic back: it stops consuming (offsets
committed), waits for the workload to drain the fallback, moves what is left
back to the original, deletes the fallback (after :meth:`release_fallback`
when ``await_release``; never with ``delete_fallback=False``), and
:meth:`run` returns. Both are retried with backoff on broker errors.

:meth:`stop` (SIGTERM) always wins: from it, :meth:`run` returns within
``flush_timeout`` - a session end or a hand-back in progress is abandoned,
the final commit and the group leave are cut at that deadline. A worker with
a ``hand_back_file`` records the hand-back (and the session ends it still
owes) the moment the last session ends; the next start with no sessions listed
finds it, finishes those session ends and the hand-back, and never consumes
the original again.

Progress goes out through optional callbacks (the caller's status; the splitter
imports no caller): ``on_session_ended(session_id)`` once a session's topic was
emptied and deleted (or found gone), and ``on_hand_back(phase, remaining)`` with
``Draining`` (the workload group's lag on the fallback), ``Returning`` (records left
to move back) and ``Done`` (the fallback deleted, or left to the caller).
:meth:`~KafkaSplitWorker.begin_hand_back` resumes a hand-back the caller's record
asks for (a restart mid-way, the sessions list empty).

The module is one class of ~700 lines on purpose: the fetch loop, the
committer and its retries, revocation, rejoin, session end, hand-back and the
stop deadline share the ledgers, two locks (batch, commit) and the stop event,
one concurrency protocol best read in one place; the pieces without shared
state live beside it (:mod:`~splitter.kafka.committing` with the retry
schedule, :mod:`~splitter.kafka.membership` with the hand-back file,
:mod:`~splitter.kafka.draining`, :mod:`~splitter.kafka.topics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from splitter.backoff import Backoff
from splitter.errors import KafkaError, KafkaPropertyError, KafkaTopicError
from splitter.filters import FilterSpec, KafkaHeaders, compile_filter
from splitter.kafka.clients import KafkaClients
from splitter.kafka.committing import (
    Failure,
    Retries,
    committable_offsets,
    failed,
    forwards_in_flight,
    mark_committed,
)
from splitter.kafka.consuming import GroupConsumer
from splitter.kafka.draining import delete_topic, end_session, hand_back, retrying
from splitter.kafka.forwarding import held
from splitter.kafka.ledger import PartitionLedger
from splitter.kafka.membership import (
    HandBack,
    clear_hand_back,
    record_hand_back,
    record_member,
    recorded_hand_back,
    recorded_member,
    remove_member,
)
from splitter.kafka.records import Partition
from splitter.kafka.settings import KafkaSettings
from splitter.kafka.topics import grow_to_original
from splitter.routing import Router, SessionRoute
from splitter.switching import SessionSwitch

log = structlog.get_logger()

#: The hand-back's phases as reported to ``on_hand_back``.
HandBackPhase = Literal["Draining", "Returning", "Done"]


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
    #: Where the worker records a hand-back under way, so that the next start
    #: resumes it (:mod:`splitter.kafka.membership`); None: not resumable.
    hand_back_file: Path | None = None


@dataclass
class KafkaWorkerStats:
    """Counters the process form exports as metrics."""

    read: int = 0
    #: Records that matched no session (forwarded to the fallback only).
    unmatched: int = 0
    #: Records whose offsets this worker committed (each counted once).
    committed: int = 0
    forwarded: Counter[str] = field(default_factory=Counter)  # session id or "fallback"
    commits: int = 0
    rerouted: int = 0
    returned: int = 0
    lag: int = 0
    #: Forwards that failed (each attempt counted); the record is sent again.
    forward_failures: int = 0
    #: The last forward failure, for status.
    last_forward_error: str = ""

    def __post_init__(self) -> None:
        #: Partitions whose commit waits for a failed record now. Not a field: the
        #: metrics exporter makes every int field a counter, and this one goes down.
        self.failing = 0


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
        on_session_ended: Callable[[str], None] | None = None,
        on_hand_back: Callable[[HandBackPhase, int], None] | None = None,
    ) -> None:
        """``consumer_overrides``: extra aiokafka consumer arguments (tests: group timeouts)."""
        super().__init__(routes, identity.fallback_topic, original=identity.topic)
        self.on_session_ended = on_session_ended
        self.on_hand_back = on_hand_back
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
        #: Partition -> the next attempt at its failed head record.
        self._retries = Retries(self._retry_backoff)
        #: Session topics that ended and whose end has not finished.
        self._unfinished: dict[str, SessionRoute] = {}
        #: The router whose destinations' partition counts the forwarder knows.
        self._counted: Router | None = None
        self._check_partitions = asyncio.Event()
        self._stop_deadline: float | None = None
        #: Set once the fallback is drained (leftovers moved back to the original).
        self.drained = asyncio.Event()
        self._log = log.bind(topic=identity.topic, group=identity.group_id)

    def set_routes(self, routes: Sequence[SessionRoute]) -> None:
        """As :meth:`SessionSwitch.set_routes`; a hand-back it starts is recorded at once."""
        previous = self._router.sessions
        super().set_routes(routes)  # raises and changes nothing if the routes are unusable
        live = {r.destination for r in routes}
        for route in previous:
            if route.destination not in live:
                self._unfinished[route.destination] = route
        self._check_partitions.set()
        if self._hand_back.is_set():
            self._record_hand_back()

    def begin_hand_back(self) -> None:
        """Hand the topic back as if the last session had just ended (a hand-back the
        caller's record says a stopped worker left unfinished); call before :meth:`run`."""
        self._had_sessions = True
        self._hand_back.set()
        self._wake.set()

    def _progress_hand_back(self, phase: HandBackPhase, remaining: int) -> None:
        if self.on_hand_back is not None:
            self.on_hand_back(phase, remaining)

    def _record_hand_back(self) -> None:
        path = self.identity.hand_back_file
        if path is not None:
            state = HandBack(self.identity.fallback_topic, tuple(self._unfinished))
            record_hand_back(path, state)

    # --- running -----------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop` or until the last session ended and the topic was handed back.

        After :meth:`stop` it returns within the flush bound (``flush_timeout``
        plus a commit), whatever it was doing: a session end or a hand-back in
        progress is abandoned, and a recorded hand-back resumes on the next start.
        """
        self._resume_recorded()
        max_bytes = await self._max_record_bytes()
        forwarder = self.clients.forwarder(max_record_bytes=max_bytes)
        async with contextlib.AsyncExitStack() as stack:
            await forwarder.__aenter__()
            stack.push_async_callback(self._bounded, forwarder.__aexit__(None, None, None), "close")
            self._forwarder = forwarder
            if self._hand_back.is_set():
                self._log.info("kafka hand-back resumed", ended=sorted(self._unfinished))
                for route in list(self._unfinished.values()):
                    if not await self._unless_stopped(self._end_one(route)):
                        return
            else:
                await self._split()
            if self._hand_back.is_set() and not self._stop.is_set():
                await self._unless_stopped(self._finish_hand_back())

    async def _split(self) -> None:
        """Consume the original and forward, until stopped or the last session ended."""
        await self._remove_predecessor()
        await self._join()
        self._log.info("kafka worker consuming")
        try:
            async with asyncio.TaskGroup() as tg:
                committer = tg.create_task(self._commit_loop(), name="kafka-commit")
                ender = tg.create_task(self._end_sessions(), name="kafka-session-end")
                watcher = tg.create_task(self._watch_partitions(), name="kafka-partitions")
                await self._consume()
                await self._flush_and_commit()
                committer.cancel()
                watcher.cancel()
                # Sessions already ended are finished before leaving (not after stop:
                # the SIGTERM bound holds; the hand-back file remembers them).
                await self._unless_stopped(self._ended.join())
                ender.cancel()
        finally:
            # The current consumer (a rejoin replaces it); leaving is bounded after stop.
            await self._bounded(self._consumer.stop(), "leave")
        self._log.info("kafka worker stopped consuming", stats=self._summary())

    def stop(self) -> None:
        """As :meth:`SessionSwitch.stop`; from now on ``run`` has ``flush_timeout`` left."""
        if self._stop_deadline is None:
            self._stop_deadline = asyncio.get_running_loop().time() + self.settings.flush_timeout
        super().stop()

    async def _bounded(self, work: Any, what: str) -> None:
        """Await ``work``; after :meth:`stop`, only until the stop deadline (then give up:
        what was not committed is read again by the partition's next owner)."""
        deadline = self._stop_deadline
        if deadline is None:
            await work
            return
        try:
            async with asyncio.timeout_at(deadline):
                await work
        except TimeoutError:
            self._log.warning("kafka shutdown step abandoned at the stop deadline", step=what)

    async def _finish_hand_back(self) -> None:
        ident = self.identity
        self._record_hand_back()  # a start with no sessions listed resumes from here
        moved = await retrying(
            lambda: hand_back(
                self.clients,
                self._forwarder,
                original=ident.topic,
                fallback=ident.fallback_topic,
                group_id=ident.group_id,
                settings=self.settings,
                on_lag=self._set_lag,
                on_returning=lambda left: self._progress_hand_back("Returning", left),
            ),
            self._retry_backoff(),
            "hand-back",
        )
        self.stats.returned += moved
        self.drained.set()
        self._log.info("kafka fallback drained", returned=moved)
        if ident.await_release:
            await self._released.wait()
        if ident.delete_fallback:
            await delete_topic(self.clients, ident.fallback_topic)
        if ident.hand_back_file is not None:
            clear_hand_back(ident.hand_back_file)
        self._progress_hand_back("Done", 0)
        self._log.info(
            "kafka topic handed back",
            fallback=ident.fallback_topic,
            fallback_deleted=ident.delete_fallback,
        )

    def _resume_recorded(self) -> None:
        """A hand-back recorded by an earlier run: its session ends, then itself, resume."""
        path = self.identity.hand_back_file
        state = None if path is None else recorded_hand_back(path)
        if state is None or state.fallback != self.identity.fallback_topic:
            return
        listed = {r.destination for r in self._router.sessions}
        no_filter = compile_filter(FilterSpec())
        for topic in state.ended_topics:
            if topic not in listed:
                self._unfinished[topic] = SessionRoute(topic, 0, no_filter, topic)
        if self._router.sessions:
            # Sessions came back before the restart: no hand-back; end the others.
            for route in self._unfinished.values():
                self._ended.put_nowait(route)
            assert path is not None
            clear_hand_back(path)
            return
        self._hand_back.set()

    async def _unless_stopped(self, work: Any) -> bool:
        """Await ``work`` unless :meth:`stop` comes first (then cancel it); True if done."""
        task = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if task.done():
            task.result()
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._log.warning("kafka worker stopped mid-way; the next start resumes")
        return False

    async def _max_record_bytes(self) -> int | None:
        """The original's max.message.bytes (the temporary topics copy it), if set on it."""
        async with self.clients.admin() as admin:
            configs = await admin.topic_configs(self.identity.topic)
        value = configs.get("max.message.bytes")
        return int(value) if value is not None and value.isdigit() else None

    def _retry_backoff(self) -> Backoff:
        settings = self.settings
        return Backoff(
            first=settings.forward_retry_backoff, ceiling=settings.forward_retry_backoff_max
        )

    def _set_lag(self, lag: int) -> None:
        self.stats.lag = lag
        self._progress_hand_back("Draining", lag)

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
        headers = KafkaHeaders(self._router.names)  # made again with each new router
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
                if router is not self._counted:
                    await self._learn_partitions(router)
                    headers = KafkaHeaders(router.names)
                route, view = router.route, headers.view
                for (_topic, partition), records in batch.items():
                    ledger = self._ledgers.get(partition)
                    if ledger is None:
                        continue  # revoked while fetched: its new owner reads it again
                    self.stats.read += len(records)
                    routes = [route(view(r.headers, r.value)) for r in records]
                    # A failure known now holds the partition: its new records wait
                    # behind the failed one (sent again with it, in offset order).
                    ledger.advance(failed)
                    if ledger.failed_at is not None:
                        forwards = held(routes)
                    else:
                        forwards = await forwarder.send_routed(partition, records, routes)
                    ledger.extend(
                        [r.offset for r in records], forwards, zip(records, routes, strict=True)
                    )
                    counts.update([t.session_id for targets in routes for t in targets])
                    # Only the fallback: no session matched (the router puts it last).
                    self.stats.unmatched += sum(
                        1 for targets in routes if targets[0].session_id is None
                    )
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
        offsets, failures = committable_offsets(self._ledgers, self.identity.topic, partitions)
        self._note_failures(partitions, failures)
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
        """Commit every ``commit_interval``, or sooner when half the bound is uncommitted;
        send failed records again when their backoff has passed."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.commit_interval):
                    await self._commit_soon.wait()
                # Early: give the forwards in flight one acknowledgement's time.
                await self._wait_forwards(list(self._ledgers), oldest=True)
            self._commit_soon.clear()
            await self._commit(list(self._ledgers))
            if self._retries:
                await self._retry_failed()

    def _note_failures(self, partitions: Sequence[int], failures: Sequence[Failure]) -> None:
        """Count and report each failed attempt (its record is sent again later)."""
        for failure, retry, delay in self._retries.note(
            self._ledgers, partitions, failures, time.monotonic()
        ):
            self.stats.forward_failures += 1
            self.stats.last_forward_error = str(failure.error)
            self._log.warning(
                "kafka forward failed; the record is sent again and nothing after it "
                "is committed until it is forwarded",
                partition=failure.partition,
                offset=failure.offset,
                attempt=retry.backoff.attempts,
                retry_in=round(delay, 3),
                error=str(failure.error),
            )
        self.stats.failing = len(self._retries)

    async def _retry_failed(self) -> None:
        """Send the failed records whose backoff passed again, in offset order."""
        async with self._batch_lock:
            for partition in self._retries.due(self._ledgers, time.monotonic()):
                ledger = self._ledgers[partition]
                for position, _offset, old, (record, targets) in ledger.failed(failed):
                    forwards = await self._forwarder.resend(partition, record, targets, old)
                    ledger.replace(position, forwards)
                self._retries.sent(partition)
        self.stats.failing = len(self._retries)

    async def _learn_partitions(self, router: Router) -> None:
        """Learn the partition counts of the router's destinations before routing to them."""
        topics = {self.identity.fallback_topic, *(r.destination for r in router.sessions)}
        try:
            await self._forwarder.learn_partitions(topics)
        except KafkaError as e:  # a destination missing: its forwards fail and are retried
            self._log.warning("kafka destination partitions unknown", error=str(e))
        self._counted = router

    async def _watch_partitions(self) -> None:
        """Follow the original's partition count: grow its temporary topics, re-learn."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.partition_check_interval):
                    await self._check_partitions.wait()
            self._check_partitions.clear()
            router = self._router
            topics = [self.identity.fallback_topic, *(r.destination for r in router.sessions)]
            try:
                async with self.clients.admin() as admin:
                    await grow_to_original(
                        admin, self.identity.topic, topics, self.settings.name_format
                    )
                await self._forwarder.learn_partitions(topics, refresh=True)
            except KafkaError as e:
                self._log.warning("kafka partition check failed", error=str(e))

    async def _wait_forwards(self, partitions: Sequence[int], *, oldest: bool = False) -> None:
        """Wait (bounded) for the forwards in flight, or only each partition's oldest."""
        pending = forwards_in_flight(self._ledgers, partitions, oldest=oldest)
        if pending:
            await asyncio.wait(pending, timeout=self.settings.flush_timeout)

    async def _flush_and_commit(self) -> None:
        await self._bounded(self._flush_and_commit_now(), "commit")

    async def _flush_and_commit_now(self) -> None:
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
        self._check_partitions.set()  # new partitions of the original: grow what routes them
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
        if not self.end_wanted(route):
            self._unfinished.pop(route.destination, None)
            self._log.info("kafka session listed again; topic kept", session=route.session_id)
            return
        started = time.monotonic()
        # Every record routed by the old router is in a ledger once the batch ends.
        async with self._batch_lock:
            partitions = list(self._ledgers)
        await self._wait_forwards(partitions)
        moved = await retrying(
            lambda: end_session(
                self.clients,
                self._forwarder,
                topic=route.destination,
                group_id=self.identity.group_id,
                router=lambda: self._router,
                settings=self.settings,
                wanted=lambda: self.end_wanted(route),
                deleting=lambda: self.deleting(route),
                mirror=route.filter.spec.mode == "mirror",
            ),
            self._retry_backoff(),
            "session end",
        )
        self._unfinished.pop(route.destination, None)
        self.stats.rerouted += moved
        if self.end_wanted(route) and self.on_session_ended is not None:
            self.on_session_ended(route.session_id)  # its topic is gone now
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
