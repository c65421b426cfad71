"""What a split worker is told from outside, whatever its broker.

:class:`SessionSwitch` is the base of :class:`~splitter.sqs.worker.SqsSplitWorker`
and :class:`~splitter.kafka.worker.KafkaSplitWorker`: it holds the current
:class:`~splitter.routing.Router` (swapped whole, so routing changes at a message
boundary), queues the sessions that disappeared so the worker ends them, and
turns the last session's end, :meth:`release_fallback` (the operator restored
the workload's env) and :meth:`stop` (SIGTERM) into events the worker's loop
waits on. The session source - a watched file, Kubernetes - only calls
:meth:`set_routes`.

A session is identified by its id *and* its destination: the same id with a new
queue/topic is the end of the old session (its queue is drained and deleted)
and a new one. A set of sessions that cannot be routed by is refused whole
(:class:`~splitter.errors.FilterError`, nothing changes): two sessions with one
id, one destination or one sequence, or a session whose destination is the
original or the fallback (its messages would come back to the worker forever).

Ending a session is the worker's job and takes time; a session removed and
listed again before its end is done must keep its queue. Ends are queued once
per (id, destination) while they wait, and the worker asks
:meth:`~SessionSwitch.end_wanted` before it starts an end, while it drains, and
right before it deletes the queue: False means the destination routes again
and the end is dropped. The delete itself runs inside :meth:`~SessionSwitch.deleting`:
from that last check until the delete returns, a change of routes that sends a
session to that destination is refused (``FilterError``; the session source offers
it again later, when the queue is gone and the worker's queue checks reject it), so
no message is ever routed to a queue while it is being deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Sequence

import structlog

from splitter.errors import FilterError
from splitter.routing import Router, SessionRoute

log = structlog.get_logger()

#: What identifies a session: (session id, destination).
SessionKey = tuple[str, str]


def session_key(route: SessionRoute) -> SessionKey:
    return (route.session_id, route.destination)


def check_routes(routes: Iterable[SessionRoute], fallback: str, original: str | None) -> None:
    """Raise ``FilterError`` naming the first reason ``routes`` cannot be routed by
    (sequences are checked by :class:`Router`)."""
    ids: set[str] = set()
    owners: dict[str, str] = {}
    for route in routes:
        if route.session_id in ids:
            raise FilterError(
                f"session {route.session_id!r} is listed twice; every session needs its own id"
            )
        ids.add(route.session_id)
        where = f"session {route.session_id!r}"
        if route.destination == fallback:
            raise FilterError(
                f"{where}: its destination {route.destination!r} is the fallback; "
                "give the session its own temporary queue/topic"
            )
        if original is not None and route.destination == original:
            raise FilterError(
                f"{where}: its destination {route.destination!r} is the original; "
                "give the session its own temporary queue/topic"
            )
        other = owners.setdefault(route.destination, route.session_id)
        if other != route.session_id:
            raise FilterError(
                f"sessions {other!r} and {route.session_id!r} share the destination "
                f"{route.destination!r}; every session needs its own queue/topic"
            )


class _Ends(asyncio.Queue[SessionRoute]):
    """The ended sessions waiting for the worker; knows which keys are waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: dict[SessionKey, int] = {}

    def _put(self, item: SessionRoute) -> None:
        key = session_key(item)
        self.waiting[key] = self.waiting.get(key, 0) + 1
        super()._put(item)

    def _get(self) -> SessionRoute:
        item: SessionRoute = super()._get()
        key = session_key(item)
        left = self.waiting.pop(key, 1) - 1
        if left:
            self.waiting[key] = left
        return item


class SessionSwitch:
    """Sessions in, events out; see the module docstring.

    ``original`` is the queue URL / topic the worker consumes: a session routed
    there is refused, as one routed to ``fallback`` is."""

    def __init__(
        self, routes: Sequence[SessionRoute], fallback: str, *, original: str | None = None
    ) -> None:
        self._fallback = fallback
        self._original = original
        check_routes(routes, fallback, original)
        self._router = Router(routes, fallback)
        self._live = frozenset(r.destination for r in routes)
        #: Destinations whose delete is under way (see :meth:`deleting`).
        self._deleting: set[str] = set()
        self._had_sessions = bool(routes)
        #: Sessions that disappeared, for the worker to end (leftovers routed again).
        self._ended = _Ends()
        self._stop = asyncio.Event()
        self._hand_back = asyncio.Event()
        self._released = asyncio.Event()
        #: Set by stop(), release_fallback() and the last session's end.
        self._wake = asyncio.Event()

    @property
    def router(self) -> Router:
        return self._router

    def set_routes(self, routes: Sequence[SessionRoute]) -> None:
        """Route the next message by these sessions; sessions no longer listed (same id and
        destination) end; no sessions left (after there were some) starts the hand-back.

        Raises ``FilterError`` and changes nothing if ``routes`` cannot be routed by."""
        check_routes(routes, self._fallback, self._original)
        for route in routes:
            if route.destination in self._deleting:
                raise FilterError(
                    f"session {route.session_id!r} routes to {route.destination}, which the "
                    "end of an earlier session is deleting; the change is refused until the "
                    "delete is done"
                )
        router = Router(routes, self._fallback)  # raises on a shared sequence
        remaining = {session_key(r) for r in routes}
        ended = [r for r in self._router.sessions if session_key(r) not in remaining]
        self._router = router
        self._live = frozenset(r.destination for r in routes)
        waiting = self._ended.waiting
        for route in ended:
            if route.destination in self._live:
                # Another session (or this one under a new id) routes there now: its queue
                # and the messages in it stay.
                continue
            if session_key(route) in waiting:
                continue  # already waiting for the worker: one end per session
            self._ended.put_nowait(route)
        if routes:
            self._had_sessions = True
        elif self._had_sessions:
            self._hand_back.set()
            self._wake.set()

    def end_wanted(self, route: SessionRoute) -> bool:
        """Whether the worker should still end ``route`` (drain its queue and delete it):
        False once a current session routes to its destination again. Ask before the end
        starts, between drained batches and right before the delete."""
        return route.destination not in self._live

    @contextlib.contextmanager
    def deleting(self, route: SessionRoute) -> Iterator[bool]:
        """The last :meth:`end_wanted` check before ``route``'s queue/topic is deleted, held
        until the block ends: yields whether to delete; while the block runs (the delete's
        awaits included) :meth:`set_routes` refuses any session routed there."""
        if not self.end_wanted(route):
            yield False
            return
        self._deleting.add(route.destination)
        try:
            yield True
        finally:
            self._deleting.discard(route.destination)

    def release_fallback(self) -> None:
        """The workload no longer reads the fallback: the worker may delete it."""
        self._released.set()
        self._wake.set()

    def stop(self) -> None:
        """Stop taking messages; finish or give back what is in hand; ``run`` returns."""
        self._stop.set()
        self._wake.set()
