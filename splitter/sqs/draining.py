"""Ending sessions and handing the queue back: emptying a queue that stops being used.

Both are the same move - read a queue to the end and route each leftover again
through the forwarding pipeline, then delete the queue - with different routers
and bounds:

- a session that disappears is *ended*: once nothing routed to it is still in
  flight, its queue is read to the end and each leftover routed by the current
  sessions (else the fallback); then the queue is deleted. If it does not empty
  within ``session_end_timeout`` (its consumer still holds messages) it is kept,
  not deleted, and the error logged.
- when the last session ends the worker *hands back*: it waits for the workload
  to drain the fallback (``drain_timeout``: None = wait, 0 = skip), moves what is
  left back to the original, waits for ``release_fallback`` if the split has
  ``await_release`` (the operator restores the workload's env first), and
  deletes the fallback.

A stop (SIGTERM) interrupts either: a receive under way is finished, not
cancelled, and what it returned is made visible at once; the queue keeps the
rest and is not deleted. Bounds come from :class:`~splitter.sqs.settings.SqsSettings`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from splitter.routing import Router, SessionRoute
from splitter.sqs.batching import BATCH_ENTRIES
from splitter.sqs.client import Message, SqsClient
from splitter.sqs.forwarding import Forwarding
from splitter.sqs.settings import SqsSettings
from splitter.sqs.split import SqsSplit
from splitter.sqs.stats import SqsWorkerStats

log = structlog.get_logger()

#: Long-poll wait, seconds, while a queue is read to the end: short, it is expected to empty.
_MOVE_WAIT_SECONDS = 1


class Draining:
    """Ends sessions and hands the queue back for one worker; see the module docstring.

    ``router()`` is the worker's current router; ``stopped``, ``released`` and
    ``wake`` are its stop, release-fallback and wake-up events; ``awaiting_release``
    is set when the hand-back waits for the release.
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
    ) -> None:
        self.client = client
        self.forwarding = forwarding
        self.split = split
        self.settings = settings
        self.stats = stats
        self._router = router
        self._stopped = stopped
        self._released = released
        self._wake = wake
        #: Set while no receive of a queue being emptied is in flight (a stop waits for it).
        self.idle = asyncio.Event()
        self.idle.set()
        #: Set once the hand-back moved the fallback's leftovers and waits for the release.
        self.awaiting_release = awaiting_release or asyncio.Event()
        self._log = log.bind(queue=split.queue_url)

    # --- session end -------------------------------------------------------------

    async def run_session_ends(self, ended: asyncio.Queue[SessionRoute]) -> None:
        """End each session put in ``ended``, one at a time, until cancelled."""
        while True:
            route = await ended.get()
            try:
                await self.end_session(route)
            finally:
                ended.task_done()

    async def end_session(self, route: SessionRoute) -> None:
        started = time.monotonic()
        url = route.destination
        # Everything the old router sent to this queue must land before it is read.
        await self.forwarding.wait_destination(url)
        moved = await self._move_out(
            url, self._router, deadline=started + self.settings.session_end_timeout
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
        self, source: str, router: Callable[[], Router], *, deadline: float | None
    ) -> int | None:
        """Route everything left in ``source`` by ``router()``; None if it did not empty in
        time or the worker was stopped (``source`` keeps the rest, nothing in flight)."""
        forwarding = self.forwarding
        moved = 0
        while True:
            await forwarding.reserve(BATCH_ENTRIES)
            if self._stopped.is_set():
                forwarding.unreserve(BATCH_ENTRIES)
                return None
            self.idle.clear()  # a stop waits for this poll instead of cancelling it
            try:
                messages: list[Message] = []
                try:
                    messages = await self.client.receive(
                        source, max_messages=BATCH_ENTRIES, wait_seconds=_MOVE_WAIT_SECONDS
                    )
                finally:
                    stopped = self._stopped.is_set()
                    forwarding.unreserve(BATCH_ENTRIES - (0 if stopped else len(messages)))
                if stopped:  # stopped during the poll: these go back at once, not forwarded
                    await forwarding.give_back(source, messages)
                    return None
            finally:
                self.idle.set()
            if messages:
                moved += len(messages)
                forwarding.submit(source, messages, router())
                continue
            await forwarding.wait_source(source)
            if sum(await self.client.counts(source)) == 0:
                return moved
            if self._stopped.is_set():
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
            await asyncio.sleep(self.settings.drain_poll)

    # --- hand back -----------------------------------------------------------------

    async def hand_back(self) -> bool:
        """Drain the fallback, return its leftovers, delete it; False if stopped first
        (the fallback is kept: it still holds messages or the workload may read it)."""
        split = self.split
        started = time.monotonic()
        self._log.info("sqs last session ended; waiting for the fallback to drain")
        drained = await self._wait_drained(split.fallback_url, self.settings.drain_timeout)
        back = Router((), split.queue_url)
        returned = await self._move_out(split.fallback_url, lambda: back, deadline=None)
        if returned is None:  # stopped: the fallback keeps what is left, so it stays
            self._log.warning("sqs stopped during the hand-back; the fallback is kept")
            return False
        self.stats.returned += returned
        if split.await_release and not await self._wait_release():
            return False  # stopped first: keep the fallback, the workload may still read it
        await self.client.delete_queue(split.fallback_url)
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
            if sum(await self.client.counts(url)) == 0:
                # Approximate counts: confirm once more before trusting an empty queue.
                await asyncio.sleep(poll)
                if sum(await self.client.counts(url)) == 0:
                    return True
            if self._stopped.is_set() or (deadline is not None and time.monotonic() >= deadline):
                return False
            await asyncio.sleep(poll)
