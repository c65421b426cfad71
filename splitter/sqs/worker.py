"""The split worker for one original SQS queue.

``receivers`` long polls run at once against the original queue; every
message received is routed by the current :class:`~splitter.routing.Router`
and handed to the :class:`~splitter.sqs.forwarding.Forwarding` pipeline,
which forwards it in full batches and deletes it from the original only once
every forward succeeded. At most ``max_in_hand`` messages are held at once.

Sessions change through :meth:`SqsSplitWorker.set_routes`: the next message
is routed by the new sessions. A session that disappears is *ended*: once
nothing routed to it is still in flight, its queue is read to the end and
each leftover routed again (remaining sessions, else the fallback), then the
queue is deleted. When the last session ends the worker *hands back*: it
stops receiving from the original, forwards what it holds, waits for the
workload to drain the fallback (``drain_timeout``: None = wait, 0 = skip),
moves what is left back to the original, waits for
:meth:`~SqsSplitWorker.release_fallback` if ``await_release`` (the operator
restores the workload's env first), deletes the fallback and returns.

:meth:`~SqsSplitWorker.stop` (SIGTERM) stops receiving, gives what is in hand
``shutdown_grace`` seconds to be forwarded and deleted, and makes the rest
visible again at once, so a restarted worker picks it up immediately. A long
poll under way is not cancelled - SQS may already have handed it messages,
which would stay invisible for their whole visibility timeout - but ends by
itself within ``wait_seconds``, and what it returns is made visible at once:
``run`` returns within max(``wait_seconds``, ``shutdown_grace``) and a call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from splitter.errors import SqsError
from splitter.routing import Router, SessionRoute
from splitter.sqs.client import SqsClient
from splitter.sqs.forwarding import BATCH_ENTRIES, Forwarding, SqsWorkerStats
from splitter.switching import SessionSwitch

log = structlog.get_logger()


@dataclass(frozen=True)
class SqsWorkerConfig:
    """What one split worker does and its bounds."""

    queue_url: str
    fallback_url: str
    #: Concurrent long polls on the original queue.
    receivers: int = 4
    #: Long-poll wait (SQS allows 0-20 s).
    wait_seconds: int = 20
    #: VisibilityTimeout for receives; None = the queue's own.
    visibility_timeout: int | None = None
    #: Seconds a partly-full batch waits for more entries.
    linger: float = 0.02
    #: In a backlog (receives come back full) a partly-full batch waits while it fills fast
    #: enough to be full within this many seconds.
    backlog_linger: float = 1.0
    #: Messages received but not yet deleted or released.
    max_in_hand: int = 1000
    #: Seconds a retriable forward failure is retried before the message is released.
    retry_for: float = 30.0
    #: Seconds SIGTERM gives what is in hand before the rest is released.
    shutdown_grace: float = 10.0
    #: Seconds to wait for the workload to drain the fallback; None = wait, 0 = skip.
    drain_timeout: float | None = None
    #: Seconds between two looks at a queue being drained.
    drain_poll: float = 1.0
    #: Seconds an ended session's queue may take to empty before it is kept (not deleted).
    session_end_timeout: float = 120.0
    #: After the drain, wait for ``release_fallback`` before deleting the fallback.
    await_release: bool = False

    @property
    def fifo(self) -> bool:
        return self.queue_url.endswith(".fifo")


class SqsSplitWorker(SessionSwitch):
    """Splits one original queue between sessions and the fallback."""

    def __init__(
        self,
        client: SqsClient,
        config: SqsWorkerConfig,
        routes: Sequence[SessionRoute] = (),
    ) -> None:
        super().__init__(routes, config.fallback_url)
        self.client = client
        self.config = config
        self.stats = SqsWorkerStats()
        self._receiving = True  # False: receivers finish their poll, release it, and return
        self._move_idle = asyncio.Event()  # no receive of a queue being emptied in flight
        self._move_idle.set()
        #: Set once the fallback is drained and deleted (hand-back finished).
        self.handed_back = asyncio.Event()
        #: Set once the worker receives from the original.
        self.started = asyncio.Event()
        self._forwarding: Forwarding | None = None
        self._log = log.bind(queue=config.queue_url)

    def set_routes(self, routes: Sequence[SessionRoute]) -> None:
        super().set_routes(routes)
        self._log.info("sqs sessions changed", sessions=[r.session_id for r in routes])

    # --- running -----------------------------------------------------------------

    async def run(self) -> None:
        cfg = self.config
        started = time.monotonic()
        visibility = cfg.visibility_timeout
        if visibility is None:
            attributes = await self.client.attributes(cfg.queue_url)
            visibility = int(attributes.get("VisibilityTimeout", 30))
        async with asyncio.TaskGroup() as tg:
            forwarding = self._forwarding = Forwarding(
                self.client,
                lambda coro, name: tg.create_task(coro, name=name),
                fifo=cfg.fifo,
                stats=self.stats,
                linger=cfg.linger,
                backlog_linger=cfg.backlog_linger,
                retry_for=cfg.retry_for,
                max_in_hand=cfg.max_in_hand,
            )
            flusher_stop = asyncio.Event()
            tg.create_task(forwarding.run_flusher(flusher_stop), name="flusher")
            tg.create_task(forwarding.run_keeper(flusher_stop, visibility), name="keeper")
            receivers = [
                tg.create_task(self._receive_loop(forwarding), name=f"receiver-{i}")
                for i in range(cfg.receivers)
            ]
            ender = tg.create_task(self._end_sessions(forwarding), name="session-ends")
            self.started.set()
            self._log.info("sqs split worker started", receivers=cfg.receivers, fifo=cfg.fifo)
            await self._wake.wait()  # stop() or the last session's end
            self._receiving = False  # stop intake first; polls under way end by themselves
            if self._hand_back.is_set() and not self._stop.is_set():
                await asyncio.gather(*receivers)
                await forwarding.wait_idle()
                await self._ended.join()
                await self._run_hand_back(forwarding)
            await asyncio.gather(
                forwarding.close(cfg.shutdown_grace), *receivers, self._move_idle.wait()
            )
            flusher_stop.set()
            ender.cancel()
        self._log.info(
            "sqs split worker stopped",
            seconds=round(time.monotonic() - started, 3),
            **self.summary(),
        )

    async def _receive_loop(self, forwarding: Forwarding) -> None:
        cfg = self.config
        delay = 0.1
        while self._receiving:
            await forwarding.reserve(BATCH_ENTRIES)
            got = 0
            try:
                if not self._receiving:
                    return
                try:
                    polled = time.monotonic()
                    messages = await self.client.receive(
                        cfg.queue_url,
                        max_messages=BATCH_ENTRIES,
                        wait_seconds=cfg.wait_seconds,
                        visibility_timeout=cfg.visibility_timeout,
                    )
                except Exception as e:
                    if not getattr(e, "retriable", False):
                        raise
                    self._log.warning("sqs receive failed; retrying", error=str(e))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                delay = 0.1
                if not self._receiving:  # stopped during the poll: hand these back at once
                    self.stats.received += len(messages)
                    await self._release_received(cfg.queue_url, messages)
                    continue
                got = len(messages)
                forwarding.note_receive(got, time.monotonic() - polled)
                if messages:
                    self.stats.received += got
                    forwarding.submit(cfg.queue_url, messages, self._router)
            finally:
                forwarding.unreserve(BATCH_ENTRIES - got)

    async def _release_received(self, source: str, messages: Sequence[Any]) -> None:
        """Make messages received from ``source`` (and not submitted) visible at once."""
        for start in range(0, len(messages), BATCH_ENTRIES):
            chunk = messages[start : start + BATCH_ENTRIES]
            entries = [(str(i), m["ReceiptHandle"]) for i, m in enumerate(chunk)]
            try:
                await self.client.change_visibility_batch(source, entries, 0)
            except SqsError as e:
                self._log.warning("sqs release failed; visible after its timeout", error=str(e))
        self.stats.released += len(messages)

    # --- session end -------------------------------------------------------------

    async def _end_sessions(self, forwarding: Forwarding) -> None:
        while True:
            route = await self._ended.get()
            try:
                await self._end_one(forwarding, route)
            finally:
                self._ended.task_done()

    async def _end_one(self, forwarding: Forwarding, route: SessionRoute) -> None:
        started = time.monotonic()
        url = route.destination
        # Everything the old router sent to this queue must land before it is read.
        await forwarding.wait_destination(url)
        moved = await self._move_out(
            forwarding,
            url,
            lambda: self._router,
            deadline=started + self.config.session_end_timeout,
        )
        if moved is None:
            return
        self.stats.rerouted += moved
        await self.client.delete_queue(url)
        self._log.info(
            "sqs session ended",
            session=route.session_id,
            rerouted=moved,
            seconds=round(time.monotonic() - started, 3),
        )

    async def _move_out(
        self,
        forwarding: Forwarding,
        source: str,
        router: Any,
        *,
        deadline: float | None,
    ) -> int | None:
        """Route everything left in ``source`` by ``router()``; None if it did not empty in
        time or the worker was stopped (``source`` keeps the rest, nothing in flight)."""
        moved = 0
        while True:
            await forwarding.reserve(BATCH_ENTRIES)
            if self._stop.is_set():
                forwarding.unreserve(BATCH_ENTRIES)
                return None
            self._move_idle.clear()  # run() waits for this poll instead of cancelling it
            try:
                messages: list[Any] = []
                try:
                    messages = await self.client.receive(
                        source, max_messages=BATCH_ENTRIES, wait_seconds=1
                    )
                finally:
                    stopped = self._stop.is_set()
                    forwarding.unreserve(BATCH_ENTRIES - (0 if stopped else len(messages)))
                if stopped:  # stopped during the poll: these go back at once, not forwarded
                    await self._release_received(source, messages)
                    return None
            finally:
                self._move_idle.set()
            if messages:
                moved += len(messages)
                forwarding.submit(source, messages, router())
                continue
            await forwarding.wait_source(source)
            if sum(await self.client.counts(source)) == 0:
                return moved
            if self._stop.is_set():
                return None
            if deadline is not None and time.monotonic() > deadline:
                visible, in_flight, delayed = await self.client.counts(source)
                self._log.error(
                    "sqs queue did not empty in time; kept, not deleted",
                    source=source,
                    visible=visible,
                    in_flight=in_flight,
                    delayed=delayed,
                )
                return None
            await asyncio.sleep(self.config.drain_poll)

    # --- hand back -----------------------------------------------------------------

    async def _run_hand_back(self, forwarding: Forwarding) -> None:
        cfg = self.config
        fallback = cfg.fallback_url
        started = time.monotonic()
        self._log.info("sqs last session ended; waiting for the fallback to drain")
        drained = await self._wait_drained(fallback, cfg.drain_timeout)
        back = Router((), cfg.queue_url)
        returned = await self._move_out(forwarding, fallback, lambda: back, deadline=None)
        if returned is None:  # stopped: the fallback keeps what is left, so it stays
            self._log.warning("sqs stopped during the hand-back; the fallback is kept")
            return
        self.stats.returned += returned
        if cfg.await_release and not self._released.is_set():
            self._log.info("sqs waiting for the workload to leave the fallback")
            while not (self._released.is_set() or self._stop.is_set()):
                self._wake.clear()
                if not (self._released.is_set() or self._stop.is_set()):
                    await self._wake.wait()
            if not self._released.is_set():
                return  # stopped first: keep the fallback, the workload may still read it
        await self.client.delete_queue(fallback)
        self.handed_back.set()
        self._log.info(
            "sqs queue handed back",
            drained=drained,
            returned=returned,
            seconds=round(time.monotonic() - started, 3),
        )

    async def _wait_drained(self, url: str, within: float | None) -> bool:
        """Wait until ``url`` holds nothing (visible, in flight, delayed); False on timeout."""
        if within == 0:
            return False
        deadline = None if within is None else time.monotonic() + within
        while True:
            if sum(await self.client.counts(url)) == 0:
                # Approximate counts: confirm once more before trusting an empty queue.
                await asyncio.sleep(self.config.drain_poll)
                if sum(await self.client.counts(url)) == 0:
                    return True
            if self._stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                return False
            await asyncio.sleep(self.config.drain_poll)

    def summary(self) -> dict[str, Any]:
        s = self.stats
        return {
            "received": s.received,
            "forwarded": dict(s.forwarded),
            "failed": s.failed,
            "released": s.released,
            "rerouted": s.rerouted,
            "returned": s.returned,
            "delete_failed": s.delete_failed,
            "entries_per_batch": round(s.entries_per_batch(), 2),
        }
