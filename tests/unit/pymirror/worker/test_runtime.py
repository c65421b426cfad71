"""The worker runtime: signals, ordered route changes, and the exit paths.

The engine workers are exercised on real servers in tests/integration; here a
small in-process worker (a stand-in for SqsSplitWorker/KafkaSplitWorker that
records what the runtime tells it) shows the runtime's own rules.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from structlog.testing import capture_logs

from pymirror.worker.runtime import ForcedExit, run_worker
from pymirror.worker.sources import Apply
from splitter.errors import FilterError
from splitter.filters import FilterSpec, compile_filter
from splitter.routing import SessionRoute

pytestmark = pytest.mark.unit


def route(session: str, sequence: int, destination: str) -> SessionRoute:
    flt = compile_filter(FilterSpec(message_filter={"user": f"^{session}$"}), where="test")
    return SessionRoute(session, sequence, flt, destination)


@dataclass
class RecordingWorker:
    """Stand-in worker: records set_routes/stop; ``run`` returns once stopped (if allowed)."""

    finishes_on_stop: bool = True
    applied: list[list[str]] = field(default_factory=list)
    stops: int = 0
    stats: object = None
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)
    running: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        self.running.set()
        await self._stopped.wait()
        if not self.finishes_on_stop:
            await asyncio.Event().wait()  # a drain that never ends

    def stop(self) -> None:
        self.stops += 1
        self._stopped.set()

    def set_routes(self, routes: Sequence[SessionRoute]) -> None:
        self.applied.append([r.destination for r in routes])
        self.changed.set()


@dataclass
class ListSource:
    """Stand-in session source: emits the given changes, then waits for ``done``."""

    changes: list[list[SessionRoute]]

    def load(self) -> list[SessionRoute]:
        return []

    accepted: list[bool] = field(default_factory=list)
    offered: asyncio.Event = field(default_factory=asyncio.Event)  # every change was offered

    async def watch(self, apply: Apply, done: asyncio.Event) -> None:
        for change in self.changes:
            result = apply(change)
            assert inspect.isawaitable(result)  # the runtime's apply is awaited, one at a time
            self.accepted.append(bool(await result))
        self.offered.set()
        await done.wait()


async def test_route_changes_are_prepared_and_applied_in_order_and_a_failed_one_is_skipped() -> (
    None
):
    worker = RecordingWorker()
    changes = [[route("a", 1, "qa")], [route("b", 2, "bad")], [route("c", 3, "qc")]]
    calls: list[str] = []

    async def prepare(routes: list[SessionRoute]) -> list[SessionRoute]:
        calls.append(routes[0].destination)
        if routes[0].destination == "bad":
            raise ValueError("no such queue")  # e.g. SqsQueueMissingError
        await asyncio.sleep(0.05 if routes[0].destination == "qa" else 0)  # slow first
        return [
            SessionRoute(r.session_id, r.sequence, r.filter, "url-" + r.destination) for r in routes
        ]

    source = ListSource(changes)
    task = asyncio.create_task(run_worker(worker, source, prepare=prepare))
    while len(worker.applied) < 2:
        await worker.changed.wait()
        worker.changed.clear()
    worker.stop()
    await task
    assert calls == ["qa", "bad", "qc"]
    assert worker.applied == [["url-qa"], ["url-qc"]]  # in order, the failed change skipped
    assert source.accepted == [True, False, True]  # the source learns of the refusal: it retries


async def test_a_change_the_worker_refuses_is_reported_to_the_source_and_logged_once() -> None:
    worker = RecordingWorker()
    bad = [route("a", 1, "q")]

    def refuse(routes: Sequence[SessionRoute]) -> None:
        raise FilterError("session 'a': its destination 'q' is the original")

    worker.set_routes = refuse  # type: ignore[method-assign]
    source = ListSource([bad, bad, bad])
    with capture_logs() as logs:
        task = asyncio.create_task(run_worker(worker, source))
        await source.offered.wait()
        worker.stop()
        await task
    assert source.accepted == [False, False, False]
    warned = [e for e in logs if e["log_level"] == "warning"]
    assert len(warned) == 1
    assert "is the original" in warned[0]["error"]


async def test_first_signal_stops_gracefully_and_the_run_returns() -> None:
    worker = RecordingWorker()
    task = asyncio.create_task(run_worker(worker, ListSource([])))
    await worker.running.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    await task  # returns normally
    assert worker.stops == 1


async def test_a_second_signal_forces_the_exit_when_the_graceful_stop_hangs() -> None:
    worker = RecordingWorker(finishes_on_stop=False)
    task = asyncio.create_task(run_worker(worker, ListSource([])))
    await worker.running.wait()
    os.kill(os.getpid(), signal.SIGINT)
    await worker._stopped.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(ForcedExit, match="second signal"):
        await task
    # The handlers are gone again: the next SIGTERM would be the default one.
    assert asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM) is False
