"""The split worker for one original SQS queue.

``receivers`` long polls run at once against the original queue; every
message received is routed by the current :class:`~splitter.routing.Router`
and handed to the :class:`~splitter.sqs.forwarding.Forwarding` pipeline,
which forwards it in full batches and deletes it from the original only once
every forward succeeded. At most ``max_in_hand`` messages are held at once.

Sessions change through :meth:`SqsSplitWorker.set_routes`: the next message
is routed by the new sessions. A session that disappears is ended and, when
the last one does, the queue is handed back (:mod:`splitter.sqs.draining`):
the worker stops receiving from the original, forwards what it holds, lets
the hand-back drain and delete the fallback, and returns.

:meth:`~SqsSplitWorker.stop` (SIGTERM) stops receiving, gives what is in hand
``shutdown_grace`` seconds to be forwarded and deleted, and makes the rest
visible again at once, so a restarted worker picks it up immediately. A long
poll under way is not cancelled - SQS may already have handed it messages,
which would stay invisible for their whole visibility timeout - but ends by
itself within ``wait_seconds``, and what it returns is made visible at once:
``run`` returns within max(``wait_seconds``, ``shutdown_grace``) and a call.

The worker takes which split it runs (:class:`~splitter.sqs.split.SqsSplit`)
and its bounds (:class:`~splitter.sqs.settings.SqsSettings`) separately.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import structlog

from splitter.backoff import Backoff
from splitter.errors import SqsError
from splitter.routing import SessionRoute
from splitter.sqs.batching import BATCH_ENTRIES
from splitter.sqs.client import SqsClient
from splitter.sqs.draining import Draining
from splitter.sqs.forwarding import Forwarding
from splitter.sqs.settings import SqsSettings
from splitter.sqs.split import SqsSplit
from splitter.sqs.stats import SqsWorkerStats
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
    ) -> None:
        super().__init__(routes, split.fallback_url)
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

    def set_routes(self, routes: Sequence[SessionRoute]) -> None:
        super().set_routes(routes)
        self._log.info("sqs sessions changed", sessions=[r.session_id for r in routes])

    # --- running -----------------------------------------------------------------

    async def run(self) -> None:
        split, settings = self.split, self.settings
        started = time.monotonic()
        visibility = settings.visibility_timeout
        if visibility is None:
            attributes = await self.client.attributes(split.queue_url)
            visibility = int(attributes.get("VisibilityTimeout", _DEFAULT_VISIBILITY))
        async with asyncio.TaskGroup() as tg:
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
            )
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
                "sqs split worker started", receivers=settings.receivers, fifo=split.fifo
            )
            await self._wake.wait()  # stop() or the last session's end
            self._receiving = False  # stop intake first; polls under way end by themselves
            if self._hand_back.is_set() and not self._stop.is_set():
                await asyncio.gather(*receivers)
                await forwarding.wait_idle()
                await self._ended.join()
                if await draining.hand_back():
                    self.handed_back.set()
            await asyncio.gather(
                forwarding.close(settings.shutdown_grace), *receivers, draining.idle.wait()
            )
            flusher_stop.set()
            ender.cancel()
        self._log.info(
            "sqs split worker stopped",
            seconds=round(time.monotonic() - started, 3),
            **self.summary(),
        )

    async def _receive_loop(self, forwarding: Forwarding) -> None:
        split, settings = self.split, self.settings
        backoff = Backoff(_RECEIVE_RETRY_FIRST, _RECEIVE_RETRY_CEILING)
        while self._receiving:
            await forwarding.reserve(BATCH_ENTRIES)
            got = 0
            try:
                if not self._receiving:
                    return
                try:
                    polled = time.monotonic()
                    messages = await self.client.receive(
                        split.queue_url,
                        max_messages=BATCH_ENTRIES,
                        wait_seconds=settings.wait_seconds,
                        visibility_timeout=settings.visibility_timeout,
                    )
                except SqsError as e:
                    if not e.retriable:
                        raise
                    self._log.warning("sqs receive failed; retrying", error=str(e))
                    await backoff.sleep()
                    continue
                backoff.reset()
                if not self._receiving:  # stopped during the poll: hand these back at once
                    self.stats.received += len(messages)
                    await forwarding.give_back(split.queue_url, messages)
                    continue
                got = len(messages)
                forwarding.note_receive(got, time.monotonic() - polled)
                if messages:
                    self.stats.received += got
                    forwarding.submit(split.queue_url, messages, self._router)
            finally:
                forwarding.unreserve(BATCH_ENTRIES - got)

    def summary(self) -> dict[str, Any]:
        return self.stats.summary()
