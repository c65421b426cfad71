"""Ending sessions and handing the queue back: emptying a queue that stops being used.

Both are the same move - read a queue to the end and route each leftover again
through the forwarding pipeline, then delete the queue - with different routers:

- a session that disappears is *ended*: once nothing routed to it is still in
  flight, its queue is read to the end and each leftover routed by the current
  sessions (else the fallback); then the queue is deleted. A ``mirror``
  session's queue holds copies: it is deleted without routing anything again.
  An end never gives up: messages still invisible (at the session's consumer,
  under a long copied ``VisibilityTimeout``) or delayed (``DelaySeconds``) are
  waited for, the wait logged with the counts (a warning once it is older than
  ``session_end_warn_after``), and the queue is deleted only once visible, in
  flight and delayed are all 0 on two looks ``drain_poll`` apart with an empty
  long poll between them (the first look goes out as the poll starts: an empty
  queue's end costs one poll, about a second). A stop interrupts it; the worker
  that runs next finds the queue (:meth:`Draining.orphans`: a session queue of
  this split, tagged by pymirror, that no session routes to) and finishes it.
  Up to ``session_end_concurrency`` ends run at once (:meth:`Draining.run_session_ends`;
  ends of one destination one after the other). Each routes its leftovers by the
  router current when they are submitted, and a session that is ending is in no
  router from the moment it was removed, so concurrent ends never route to one another:
  leftovers go to the sessions still active, else the fallback. An end that is under
  way is in :attr:`Draining.ending` (and logged with how many are: ``ending``).
- when the last session ends the worker *hands back*: it waits for the workload
  to drain the fallback (``drain_timeout``: None = wait, 0 = skip), moves what is
  left back to the original, waits for ``release_fallback`` if the split has
  ``await_release`` (the operator restores the workload's env first), and
  deletes the fallback.

Progress goes out through two optional callbacks (this module never imports who
listens): ``on_ended(session_id)`` once a session's end finished (its queue deleted,
or found deleted already), and ``on_hand_back(phase, remaining)`` as the hand-back
goes: ``Draining`` (waiting for the workload; ``remaining`` = visible + in flight +
delayed on the fallback), ``Returning`` (moving the leftovers back; what is left)
and ``Done`` (the fallback deleted). Both are called in the worker's loop and must
not block.

Every call on this path retries a transient error (throttling, a 5xx, the
endpoint unreachable) with backoff for as long as it lasts; a queue that is
missing here was deleted already, so that end is done. Only queues pymirror
made for this split are drained for deletion (:func:`~splitter.sqs.queues.check_owned`).

A stop (SIGTERM) interrupts either: a receive under way is finished, not
cancelled, and what it returned is made visible at once; the queue keeps the
rest and is not deleted. Bounds come from :class:`~splitter.sqs.settings.SqsSettings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Literal, TypeVar

import structlog

from splitter.backoff import Backoff
from splitter.errors import NotOursError, SqsError, SqsQueueMissingError
from splitter.filters import FilterSpec, compile_filter
from splitter.routing import Router, SessionRoute
from splitter.sqs.batching import BATCH_ENTRIES
from splitter.sqs.client import Message, SqsClient
from splitter.sqs.forwarding import Forwarding
from splitter.sqs.queue_names import queue_name
from splitter.sqs.queues import check_owned, find_temporary_queues
from splitter.sqs.settings import SqsSettings
from splitter.sqs.split import SqsSplit
from splitter.sqs.stats import SqsWorkerStats

log = structlog.get_logger()

T = TypeVar("T")

#: The hand-back's phases as reported to ``on_hand_back``.
HandBackPhase = Literal["Draining", "Returning", "Done"]
#: ``on_hand_back(phase, remaining)``.
OnHandBack = Callable[[HandBackPhase, int], None]

#: Long-poll wait, seconds, while a queue is read to the end: short, it is expected to empty.
_MOVE_WAIT_SECONDS = 1
#: Retries of a transient error on the move-out path: 100 ms, doubling up to 5 s, unbounded.
_RETRY_FIRST, _RETRY_CEILING = 0.1, 5.0
#: Seconds between two log lines of an unchanged wait for a queue to empty.
_WAIT_LOG_EVERY = 30.0


class _Stopped(Exception):
    """The worker was stopped while a call on the move-out path was being retried."""


class Draining:
    """Ends sessions and hands the queue back for one worker; see the module docstring.

    ``router()`` is the worker's current router; ``wanted(route)`` says whether an
    end is still wanted (False once a session routes to that queue again), and
    ``deleting(route)`` holds its last check around the delete (the worker's
    :meth:`~splitter.switching.SessionSwitch.deleting`);
    ``stopped``, ``released`` and ``wake`` are the worker's stop, release-fallback
    and wake-up events; ``awaiting_release`` is set when the hand-back waits for the
    release.
    """

    def __init__(
        self,
        client: SqsClient,
        forwarding: Forwarding,
        split: SqsSplit,
        settings: SqsSettings,
        stats: SqsWorkerStats,
        *,
        router: Callable[[], Router],
        stopped: asyncio.Event,
        released: asyncio.Event,
        wake: asyncio.Event,
        awaiting_release: asyncio.Event | None = None,
        wanted: Callable[[SessionRoute], bool] | None = None,
        deleting: Callable[[SessionRoute], AbstractContextManager[bool]] | None = None,
        on_ended: Callable[[str], None] | None = None,
        on_hand_back: OnHandBack | None = None,
    ) -> None:
        self.client = client
        self.forwarding = forwarding
        self.split = split
        self.settings = settings
        self.stats = stats
        self._router = router
        self._wanted = wanted or (lambda _route: True)
        self._deleting = deleting or (lambda _route: contextlib.nullcontext(True))
        self._stopped = stopped
        self._released = released
        self._wake = wake
        self._on_ended = on_ended or (lambda _session: None)
        self._on_hand_back = on_hand_back or (lambda _phase, _remaining: None)
        #: Set while no receive of a queue being emptied is in flight (a stop waits for it).
        self.idle = asyncio.Event()
        self.idle.set()
        self._polls = 0  # receives of queues being emptied in flight (idle: 0)
        #: The session ends under way: (session id, destination) -> when each started.
        self.ending: dict[tuple[str, str], float] = {}
        #: The most ends that were under way at once (one worker's run).
        self.most_ending = 0
        #: Set once the hand-back moved the fallback's leftovers and waits for the release.
        self.awaiting_release = awaiting_release or asyncio.Event()
        self._log = log.bind(queue=split.queue_url)

    # --- retrying --------------------------------------------------------------

    async def _retry(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """``call()``, retried with backoff while it fails with a transient error (raises
        :class:`_Stopped` if the worker stops meanwhile, ``SqsQueueMissingError`` as is)."""
        backoff = Backoff(_RETRY_FIRST, _RETRY_CEILING)
        while True:
            try:
                return await call()
            except SqsError as e:
                if not e.retriable:
                    raise
                self.stats.throttled += 1
                self._log.warning("sqs call failed; retrying", call=what, error=str(e))
            if self._stopped.is_set():
                raise _Stopped
            await backoff.sleep()

    async def _counts(self, url: str) -> tuple[int, int, int]:
        return await self._retry(lambda: self.client.counts(url), f"counts of {url}")

    def _look(self, url: str) -> asyncio.Task[tuple[tuple[int, int, int], float]]:
        """The counts of ``url`` looked at in the background, with when they came back."""

        async def look() -> tuple[tuple[int, int, int], float]:
            counts = await self._counts(url)
            return counts, time.monotonic()

        return asyncio.ensure_future(look())

    # --- session end -------------------------------------------------------------

    async def run_session_ends(self, ended: asyncio.Queue[SessionRoute]) -> None:
        """End each session put in ``ended``, up to ``session_end_concurrency`` at once (in
        the order they came), until cancelled; ``ended.task_done()`` once each end returned.

        Two ends of one destination (a session removed, listed again and removed again
        while its first end runs) never overlap: the later one starts once the earlier
        returned (and then finds the queue deleted, or ends it again). An end that raises
        stops the others and is raised here (as the one-at-a-time loop did)."""
        slots = asyncio.Semaphore(self.settings.session_end_concurrency)
        latest: dict[str, asyncio.Task[None]] = {}  # destination -> its last end queued

        async def one(route: SessionRoute, after: asyncio.Task[None] | None) -> None:
            try:
                if after is not None and not after.done():
                    await asyncio.wait([after])
                async with slots:
                    await self.end_session(route)
            finally:
                if latest.get(route.destination) is asyncio.current_task():
                    del latest[route.destination]
                ended.task_done()

        try:
            async with asyncio.TaskGroup() as ends:
                while True:
                    route = await ended.get()
                    after = latest.get(route.destination)
                    latest[route.destination] = ends.create_task(
                        one(route, after), name=f"session-end-{route.session_id}"
                    )
        except BaseExceptionGroup as group:
            for other in group.exceptions[1:]:
                self._log.error("sqs session end failed", error=repr(other))
            raise group.exceptions[0] from None

    async def orphans(self, live: set[str]) -> list[SessionRoute]:
        """Session queues of this split that pymirror created (bookkeeping tags), that a
        worker routed to (:data:`~splitter.sqs.tags.TAG_ROUTED`) and that no session routes
        to now (``live``: queue names): ends a restart must finish, as routes (``mode`` from
        the queue's tag; untagged = ``steal``, its leftovers routed again). A queue never
        routed to was made for a session not listed yet and is left alone."""
        found = await self._retry(
            lambda: find_temporary_queues(
                self.client, self.split.queue_url, self.settings.name_format, skip=live
            ),
            "listing temporary queues",
        )
        routes = []
        for queue in found:
            if queue.fallback or queue.session is None or not queue.routed or queue.name in live:
                continue
            mirror = queue.mode == "mirror"
            spec = FilterSpec(message_filter={}, mode="mirror" if mirror else "steal")
            routes.append(SessionRoute(queue.session, -1, compile_filter(spec), queue.url))
        return routes

    async def end_session(self, route: SessionRoute) -> None:
        """End ``route`` (see the module docstring); in :attr:`ending` while under way."""
        if not self._wanted(route):
            return
        key = (route.session_id, route.destination)
        started = self.ending[key] = time.monotonic()
        self.most_ending = max(self.most_ending, len(self.ending))
        self._log.info(
            "sqs session end started",
            session=route.session_id,
            source=route.destination,
            ending=len(self.ending),
        )
        try:
            await self._end(route, started)
        finally:
            del self.ending[key]

    async def _end(self, route: SessionRoute, started: float) -> None:
        url = route.destination
        bound = self._log.bind(session=route.session_id, source=url)
        # Everything the old router sent to this queue must land before it is read.
        await self.forwarding.wait_destination(url)
        mirror = route.filter.mode == "mirror"
        try:
            await self._retry(
                lambda: check_owned(
                    self.client,
                    url,
                    self.settings.name_format,
                    self.split.queue_url,
                    fallback=False,
                    what=f"to end session {route.session_id!r} in",
                ),
                f"tags of {url}",
            )
            moved: int | None = 0
            if not mirror:  # a mirror queue holds copies: deleted, never routed again
                moved = await self._move_out(url, self._router, lambda: self._wanted(route))
                if moved is None:
                    return
            with self._deleting(route) as still_wanted:
                if not still_wanted:
                    return
                await self._retry(lambda: self.client.delete_queue(url), f"deleting {url}")
        except NotOursError as e:
            bound.error("sqs session queue not drained or deleted", error=str(e))
            return
        except SqsQueueMissingError:
            bound.info("sqs session queue already deleted; its end is done")
            self._on_ended(route.session_id)
            return
        except _Stopped:
            bound.warning("sqs stopped during a session end; the next worker finishes it")
            return
        self._on_ended(route.session_id)
        self.stats.rerouted += moved or 0
        bound.info(
            "sqs session ended",
            mirror=mirror,
            rerouted=moved,
            seconds=round(time.monotonic() - started, 3),
            ending=len(self.ending),
        )

    async def _receive(self, source: str, attempt_id: str | None) -> list[Message]:
        return await self._retry(
            lambda: self.client.receive(
                source,
                max_messages=BATCH_ENTRIES,
                wait_seconds=_MOVE_WAIT_SECONDS,
                attempt_id=attempt_id,
            ),
            f"receiving from {source}",
        )

    async def _move_out(
        self,
        source: str,
        router: Callable[[], Router],
        wanted: Callable[[], bool] = lambda: True,
        progress: Callable[[int], None] | None = None,
    ) -> int | None:
        """Route everything left in ``source`` by ``router()`` until it is empty (visible,
        in flight and delayed all 0 on two looks ``drain_poll`` apart: when nothing from
        ``source`` is in hand, the first look is taken as a long poll starts and the second
        after it came back empty, so an empty queue is confirmed in one poll); None if the
        worker was stopped or ``wanted()`` turned False (``source`` keeps the rest, nothing in
        flight). Raises ``SqsQueueMissingError`` if ``source`` is deleted meanwhile.
        ``progress(left)`` gets what is left in ``source`` (measured, or estimated from
        what was moved)."""
        forwarding = self.forwarding
        moved = 0
        started = logged_at = time.monotonic()
        logged: tuple[int, int, int] | None = None
        fifo = source.endswith(".fifo")
        estimate = sum(await self._counts(source)) if progress is not None else 0
        while True:
            await forwarding.reserve(BATCH_ENTRIES)
            if self._stopped.is_set() or not wanted():
                forwarding.unreserve(BATCH_ENTRIES)
                return None
            # Nothing received from ``source`` in hand: the counts are looked at as this poll
            # starts, so an empty long poll is (part of) the wait between two looks.
            before = None if forwarding.holding(source) else self._look(source)
            self._polls += 1
            self.idle.clear()  # a stop waits for this poll instead of cancelling it
            try:
                messages: list[Message] = []
                try:
                    attempt = uuid.uuid4().hex if fifo else None  # one per receive, kept on retry
                    messages = await self._receive(source, attempt)
                except _Stopped:
                    await _discard(before)
                    return None
                finally:
                    stopped = self._stopped.is_set()
                    forwarding.unreserve(BATCH_ENTRIES - (0 if stopped else len(messages)))
                if stopped:  # stopped during the poll: these go back at once, not forwarded
                    await _discard(before)
                    await forwarding.give_back(source, messages)
                    return None
            finally:
                self._polls -= 1
                if not self._polls:
                    self.idle.set()
            if messages:
                await _discard(before)
                moved += len(messages)
                forwarding.submit(source, messages, router())
                if progress is not None:
                    progress(max(estimate - moved, 0))
                continue
            await forwarding.wait_source(source)
            try:
                first = await before if before is not None else None
                second_at = time.monotonic()
                counts = await self._counts(source)
                estimate = moved + sum(counts)
                if progress is not None:
                    progress(sum(counts))
                if sum(counts) == 0 and first is not None and sum(first[0]) == 0:
                    # 0 before and after an empty long poll: confirmed once drain_poll apart.
                    apart = second_at - first[1]
                    if apart < self.settings.drain_poll:
                        await asyncio.sleep(self.settings.drain_poll - apart)
                        counts = await self._counts(source)
                    if sum(counts) == 0:
                        return moved
                elif sum(counts) == 0:
                    # Approximate counts: confirm once more before trusting an empty queue.
                    await asyncio.sleep(self.settings.drain_poll)
                    counts = await self._counts(source)
                    if sum(counts) == 0:
                        return moved
            except _Stopped:
                return None
            if self._stopped.is_set():
                return None
            now = time.monotonic()
            if counts != logged or now - logged_at >= _WAIT_LOG_EVERY:
                late = now - started > self.settings.session_end_warn_after
                (self._log.warning if late else self._log.info)(
                    "sqs waiting for a queue to empty before deleting it",
                    source=source,
                    visible=counts[0],
                    in_flight=counts[1],
                    delayed=counts[2],
                    seconds=round(now - started, 1),
                )
                logged, logged_at = counts, now
            await asyncio.sleep(self.settings.drain_poll)

    # --- hand back -----------------------------------------------------------------

    async def hand_back(self) -> bool:
        """Drain the fallback, return its leftovers, delete it; False if stopped first
        (the fallback is kept: it still holds messages or the workload may read it)."""
        split = self.split
        started = time.monotonic()
        self._log.info("sqs last session ended; waiting for the fallback to drain")
        try:
            drained = await self._wait_drained(split.fallback_url, self.settings.drain_timeout)
            back = Router((), split.queue_url)
            returned = await self._move_out(
                split.fallback_url,
                lambda: back,
                progress=lambda left: self._on_hand_back("Returning", left),
            )
            if returned is None:  # stopped: the fallback keeps what is left, so it stays
                self._log.warning("sqs stopped during the hand-back; the fallback is kept")
                return False
            self.stats.returned += returned
            if split.await_release and not await self._wait_release():
                return False  # stopped first: keep the fallback, the workload may still read it
            url = split.fallback_url
            await self._retry(lambda: self.client.delete_queue(url), f"deleting {url}")
        except SqsQueueMissingError:
            self._log.info("sqs fallback already deleted; the hand-back is done")
            self._on_hand_back("Done", 0)
            return True
        except _Stopped:
            self._log.warning("sqs stopped during the hand-back; the fallback is kept")
            return False
        self._on_hand_back("Done", 0)
        self._log.info(
            "sqs queue handed back",
            drained=drained,
            returned=returned,
            seconds=round(time.monotonic() - started, 3),
        )
        return True

    async def _wait_release(self) -> bool:
        """Wait for ``release_fallback()``; False if the worker was stopped first."""
        if not self._released.is_set():
            self._log.info("sqs waiting for the workload to leave the fallback")
        self.awaiting_release.set()
        while not (self._released.is_set() or self._stopped.is_set()):
            self._wake.clear()
            if not (self._released.is_set() or self._stopped.is_set()):
                await self._wake.wait()
        return self._released.is_set()

    async def _wait_drained(self, url: str, within: float | None) -> bool:
        """Wait until ``url`` holds nothing (visible, in flight, delayed); False on timeout."""
        if within == 0:
            return False
        deadline = None if within is None else time.monotonic() + within
        poll = self.settings.drain_poll
        while True:
            left = sum(await self._counts(url))
            self._on_hand_back("Draining", left)
            if left == 0:
                # Approximate counts: confirm once more before trusting an empty queue.
                await asyncio.sleep(poll)
                if sum(await self._counts(url)) == 0:
                    return True
            if self._stopped.is_set() or (deadline is not None and time.monotonic() >= deadline):
                return False
            await asyncio.sleep(poll)


async def _discard(look: asyncio.Task[tuple[tuple[int, int, int], float]] | None) -> None:
    """Drop a look at the counts that is no longer needed (cancelled, or its error dropped:
    the next look makes the same call)."""
    if look is None:
        return
    look.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await look


def live_names(routes: list[SessionRoute]) -> set[str]:
    """The queue names ``routes`` route to (URLs of one queue may differ in host)."""
    return {queue_name(r.destination) for r in routes}
