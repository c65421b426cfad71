"""What a split worker is told from outside, whatever its broker.

:class:`SessionSwitch` is the base of :class:`~splitter.sqs.worker.SqsSplitWorker`
and :class:`~splitter.kafka.worker.KafkaSplitWorker`: it holds the current
:class:`~splitter.routing.Router` (swapped whole, so routing changes at a message
boundary), queues the sessions that disappeared so the worker ends them, and
turns the last session's end, :meth:`release_fallback` (the operator restored
the workload's env) and :meth:`stop` (SIGTERM) into events the worker's loop
waits on. The session source - a watched file, Kubernetes - only calls
:meth:`set_routes`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from splitter.routing import Router, SessionRoute

log = structlog.get_logger()


class SessionSwitch:
    """Sessions in, events out; see the module docstring."""

    def __init__(self, routes: Sequence[SessionRoute], fallback: str) -> None:
        self._fallback = fallback
        self._router = Router(routes, fallback)
        self._had_sessions = bool(routes)
        #: Sessions that disappeared, for the worker to end (leftovers routed again).
        self._ended: asyncio.Queue[SessionRoute] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._hand_back = asyncio.Event()
        self._released = asyncio.Event()
        #: Set by stop(), release_fallback() and the last session's end.
        self._wake = asyncio.Event()

    @property
    def router(self) -> Router:
        return self._router

    def set_routes(self, routes: Sequence[SessionRoute]) -> None:
        """Route the next message by these sessions; sessions no longer listed end; no
        sessions left (after there were some) starts the hand-back."""
        remaining = {r.session_id for r in routes}
        ended = [r for r in self._router.sessions if r.session_id not in remaining]
        self._router = Router(routes, self._fallback)
        for route in ended:
            self._ended.put_nowait(route)
        if routes:
            self._had_sessions = True
        elif self._had_sessions:
            self._hand_back.set()
            self._wake.set()

    def release_fallback(self) -> None:
        """The workload no longer reads the fallback: the worker may delete it."""
        self._released.set()
        self._wake.set()

    def stop(self) -> None:
        """Stop taking messages; finish or give back what is in hand; ``run`` returns."""
        self._stop.set()
        self._wake.set()
