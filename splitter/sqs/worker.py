"""The split worker for one original SQS queue.

``receivers`` long polls run at once against the original queue; every
message received is routed by the current :class:`~splitter.routing.Router`
and handed to the :class:`~splitter.sqs.forwarding.Forwarding` pipeline,
which forwards it in full batches and deletes it from the original only once
every forward succeeded. At most ``max_in_hand`` messages are held at once.

Sessions change through :meth:`SqsSplitWorker.set_routes`: the next message
is routed by the new sessions. A session that disappears is ended - up to
``session_end_concurrency`` ends at once, :attr:`~SqsSplitWorker.ending` lists those
under way - and, when the last one does, the queue is handed back
(:mod:`splitter.sqs.draining`; it waits for every end queued first):
the worker stops receiving from the original, forwards what it holds, lets
the hand-back drain and delete the fallback, and returns.

:meth:`~SqsSplitWorker.stop` (SIGTERM) stops receiving, gives what is in hand
``shutdown_grace`` seconds to be forwarded and deleted, and makes the rest
visible again at once, so a restarted worker picks it up immediately. A long
poll under way is not cancelled - SQS may already have handed it messages,
which would stay invisible for their whole visibility timeout - but ends by
itself within ``wait_seconds``, and what it returns is made visible at once:
``run`` returns within max(``wait_seconds``, ``shutdown_grace``) and a call.

Before it receives anything the worker checks that the fallback and every
session queue are queues pymirror made for this split (name format and
bookkeeping tags, :func:`~splitter.sqs.queues.check_owned`): it drains and
deletes them later, so anything else is refused with an error naming the
queue. Sessions added later go through :meth:`SqsSplitWorker.vet_routes`,
which drops (and logs) such a session and keeps the others. Then it looks for
session ends a stopped or killed worker left unfinished - session queues of
this split that no session routes to - and finishes them first thing.

FIFO receives carry a ``ReceiveRequestAttemptId``, new for each receive and
the same on its retries, so a receive whose answer was lost returns the same
messages on the retry instead of locking their group until they time out.

What the worker finishes is told through two optional callbacks (the caller's
status, e.g. a QueueSplit's; see :mod:`splitter.sqs.draining`): ``on_session_ended``
(a session's end finished, resumed ones included) and ``on_hand_back`` (the hand-back's
phase and what is left). :meth:`~SqsSplitWorker.begin_hand_back` starts a hand-back a
previous worker began (the caller's record says so; the sessions list is empty then).

The worker takes which split it runs (:class:`~splitter.sqs.split.SqsSplit`)
and its bounds (:class:`~splitter.sqs.settings.SqsSettings`) separately.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from splitter.backoff import Backoff
from splitter.errors import NotOursError, SqsError
from splitter.routing import SessionRoute
from splitter.sqs.batching import BATCH_ENTRIES, waited_in_queue
from splitter.sqs.client import SqsClient
from splitter.sqs.draining import Draining, OnHandBack, live_names
from splitter.sqs.forwarding import Forwarding
from splitter.sqs.queues import check_owned, mark_routed
from splitter.sqs.settings import SqsSettings
from splitter.sqs.split import SqsSplit
from splitter.sqs.stats import SqsWorkerStats
from splitter.sqs.tags import TAG_ROUTED
from splitter.switching import SessionSwitch

log = structlog.get_logger()

#: A failed receive is retried after 100 ms, doubling up to 5 s, for as long as it fails.
_RECEIVE_RETRY_FIRST, _RECEIVE_RETRY_CEILING = 0.1, 5.0
#: VisibilityTimeout assumed when the queue does not report one (the SQS default).
_DEFAULT_VISIBILITY = 30


class SqsSplitWorker(SessionSwitch):
    """Splits one original queue between sessions and the fallback."""

    def __init__(
        self,
        client: SqsClient,
        split: SqsSplit,
        settings: SqsSettings,
        routes: Sequence[SessionRoute] = (),
        *,
        on_session_ended: Callable[[str], None] | None = None,
        on_hand_back: OnHandBack | None = None,
    ) -> None:
        super().__init__(routes, split.fallback_url, original=split.queue_url)
        self.on_session_ended = on_session_ended
        self.on_hand_back = on_hand_back
        self.client = client
        self.split = split
        self.settings = settings
        self.stats = SqsWorkerStats()
        self._receiving = True  # False: receivers finish their poll, release it, and return
        #: Set once the fallback is drained and deleted (hand-back finished).
        self.handed_back = asyncio.Event()
        #: Set once the worker receives from the original.
        self.started = asyncio.Event()
        #: Set once a hand-back with ``await_release`` drained the fallback and waits for
        #: :meth:`release_fallback` (the fallback still exists).
        self.awaiting_release = asyncio.Event()
        self._log = log.bind(queue=split.queue_url)
        #: Session queues tagged as routed to.
        self._marked: set[str] = set()
        self._tasks: asyncio.TaskGroup | None = None
        self._draining: Draining | None = None

    @property
    def ending(self) -> list[str]:
        """The sessions whose end is under way (up to ``session_end_concurrency``)."""
        draining = self._draining
        return [] if draining is None else [session for session, _url in draining.ending]

    @property
    def most_ending(self) -> int:
        """The most session ends that were under way at once (this run)."""
        return 0 if self._draining is None else self._draining.most_ending

    def set_routes(self, routes: Sequence[SessionRoute]) -> None:
        super().set_routes(routes)
        self._log.info("sqs sessions changed", sessions=[r.session_id for r in routes])
        unmarked = [r.destination for r in routes if r.destination not in self._marked]
        if unmarked and self._tasks is not None:
            self._tasks.create_task(self._mark(unmarked), name="mark-routed")

    def begin_hand_back(self) -> None:
        """Hand the queue back as if the last session had just ended (a hand-back a stopped
        worker left unfinished): unfinished session ends first, then the drain."""
        self._had_sessions = True
        self._hand_back.set()
        self._wake.set()

    async def _mark(self, urls: Sequence[str]) -> None:
        """Tag session queues as routed to, so an end a restart must finish is found
        (:meth:`~splitter.sqs.draining.Draining.orphans`); best effort, logged."""
        for url in urls:
            if url in self._marked:
                continue
            try:
                await mark_routed(self.client, url)
            except SqsError as e:
                self._log.warning("sqs could not tag a session queue", source=url, error=str(e))
                continue
            self._marked.add(url)

    # --- checks ------------------------------------------------------------------

    async def _check(self, url: str, *, fallback: bool, what: str) -> None:
        """:func:`check_owned`, a transient error retried with backoff until it passes; a
        session queue a worker tagged as routed already is noted (not tagged again)."""
        backoff = Backoff(_RECEIVE_RETRY_FIRST, _RECEIVE_RETRY_CEILING)
        while True:
            try:
                tags = await check_owned(
                    self.client,
                    url,
                    self.settings.name_format,
                    self.split.queue_url,
                    fallback=fallback,
                    what=what,
                )
            except SqsError as e:
                if not e.retriable or self._stop.is_set():
                    raise
                self._log.warning("sqs queue check failed; retrying", source=url, error=str(e))
            else:
                if not fallback and tags.get(TAG_ROUTED) == "true":
                    self._marked.add(url)
                return
            await backoff.sleep()

    async def vet_routes(self, routes: Sequence[SessionRoute]) -> list[SessionRoute]:
        """``routes`` without the sessions whose queue pymirror did not make for this split
        (each dropped one is logged with the reason); give the result to ``set_routes``."""
        kept = []
        for route in routes:
            try:
                await self._check(
                    route.destination, fallback=False, what=f"session {route.session_id!r}:"
                )
            except NotOursError as e:
                self._log.error("sqs session rejected", session=route.session_id, error=str(e))
                continue
            kept.append(route)
        await self._mark([r.destination for r in kept])
        return kept

    async def check_queues(self) -> None:
        """Raise ``NotOursError`` naming the first of the fallback and the session queues
        that pymirror did not make for this split (``run`` calls it first)."""
        await self._check(self.split.fallback_url, fallback=True, what="the fallback")
        for route in self._router.sessions:
            await self._check(
                route.destination, fallback=False, what=f"session {route.session_id!r}:"
            )
        await self._mark([r.destination for r in self._router.sessions])

    # --- running -----------------------------------------------------------------

    async def run(self) -> None:
        split, settings = self.split, self.settings
        started = time.monotonic()
        await self.check_queues()
        visibility = settings.visibility_timeout
        if visibility is None:
            visibility = await self._queue_visibility()
        async with asyncio.TaskGroup() as tg:
            self._tasks = tg
            forwarding = Forwarding(
                self.client,
                lambda coro, name: tg.create_task(coro, name=name),
                fifo=split.fifo,
                stats=self.stats,
                settings=settings,
            )
            draining = Draining(
                self.client,
                forwarding,
                split,
                settings,
                self.stats,
                router=lambda: self._router,
                stopped=self._stop,
                released=self._released,
                wake=self._wake,
                awaiting_release=self.awaiting_release,
                wanted=self.end_wanted,
                deleting=self.deleting,
                on_ended=self.on_session_ended,
                on_hand_back=self.on_hand_back,
            )
            self._draining = draining
            for orphan in await draining.orphans(live_names(list(self._router.sessions))):
                self._log.info(
                    "sqs resuming an unfinished session end",
                    session=orphan.session_id,
                    source=orphan.destination,
                )
                self._ended.put_nowait(orphan)
            flusher_stop = asyncio.Event()
            tg.create_task(forwarding.run_flusher(flusher_stop), name="flusher")
            tg.create_task(forwarding.run_keeper(flusher_stop, visibility), name="keeper")
            receivers = [
                tg.create_task(self._receive_loop(forwarding), name=f"receiver-{i}")
                for i in range(settings.receivers)
            ]
            ender = tg.create_task(draining.run_session_ends(self._ended), name="session-ends")
            self.started.set()
            self._log.info(
                "sqs split worker started",
                receivers=settings.receivers,
                session_end_concurrency=settings.session_end_concurrency,
                fifo=split.fifo,
            )
            await self._wake.wait()  # stop() or the last session's end
            self._receiving = False  # stop intake first; polls under way end by themselves
            if self._hand_back.is_set() and not self._stop.is_set():
                # No need to wait for the polls under way (up to wait_seconds): from here on
                # a receiver submits nothing (it checks _receiving right after its poll,
                # with no await before submit) and gives what it got back to the original.
                await forwarding.wait_idle()
                await self._ended.join()
                if await draining.hand_back():
                    self.handed_back.set()
            await asyncio.gather(
                forwarding.close(settings.shutdown_grace), *receivers, draining.idle.wait()
            )
            flusher_stop.set()
            ender.cancel()
            self._tasks = None
        self._log.info(
            "sqs split worker stopped",
            seconds=round(time.monotonic() - started, 3),
            **self.summary(),
        )

    async def _queue_visibility(self) -> int:
        """The original's ``VisibilityTimeout``, a transient error retried with backoff."""
        backoff = Backoff(_RECEIVE_RETRY_FIRST, _RECEIVE_RETRY_CEILING)
        while True:
            try:
                attributes = await self.client.attributes(self.split.queue_url)
                return int(attributes.get("VisibilityTimeout", _DEFAULT_VISIBILITY))
            except SqsError as e:
                if not e.retriable or self._stop.is_set():
                    raise
                self._log.warning("sqs reading the original failed; retrying", error=str(e))
            await backoff.sleep()

    async def _receive_loop(self, forwarding: Forwarding) -> None:
        split, settings = self.split, self.settings
        backoff = Backoff(_RECEIVE_RETRY_FIRST, _RECEIVE_RETRY_CEILING)
        attempt: str | None = None  # FIFO: one id per receive, the same on its retries
        while self._receiving:
            await forwarding.reserve(BATCH_ENTRIES)
            got = 0
            try:
                if not self._receiving:
                    return
                if split.fifo and attempt is None:
                    attempt = uuid.uuid4().hex
                try:
                    polled, polled_at = time.monotonic(), time.time()
                    messages = await self.client.receive(
                        split.queue_url,
                        max_messages=BATCH_ENTRIES,
                        wait_seconds=settings.wait_seconds,
                        visibility_timeout=settings.visibility_timeout,
                        attempt_id=attempt,
                    )
                except SqsError as e:
                    if not e.retriable:
                        raise
                    self._log.warning("sqs receive failed; retrying", error=str(e))
                    await backoff.sleep()
                    continue
                backoff.reset()
                attempt = None
                if not self._receiving:  # stopped during the poll: hand these back at once
                    self.stats.received += len(messages)
                    await forwarding.give_back(split.queue_url, messages)
                    continue
                got = len(messages)
                forwarding.note_receive(
                    got, time.monotonic() - polled, waited=waited_in_queue(messages, polled_at)
                )
                if messages:
                    self.stats.received += got
                    forwarding.submit(split.queue_url, messages, self._router)
            finally:
                forwarding.unreserve(BATCH_ENTRIES - got)

    def summary(self) -> dict[str, Any]:
        return self.stats.summary()
