"""Running one split worker: signals, the task group, the session source and the metrics.

    worker = SqsSplitWorker(...)                 # any SplitWorker
    await run_worker(worker, source, prepare=resolve_urls, metrics=Metrics("sqs", queue, 9400))

Shutdown order (as uvicorn's and arq's): the first SIGTERM/SIGINT only calls
``worker.stop()``; the worker stops intake, finishes or releases what it holds
and its ``run`` returns within its own bound. A second signal cancels the run at
once (:class:`ForcedExit`), for an operator who will not wait.

Route changes from the source are prepared and applied one at a time, in the
order the source produced them: the source awaits each before it looks for the
next, so a slow ``prepare`` (resolving SQS queue URLs) can never let an older
change land after a newer one. A change that ``prepare`` or ``set_routes``
refuses (a session queue that does not exist yet, a destination that is the
original or the fallback, two sessions sharing a sequence) leaves the current
sessions in place and is reported to the source, which offers it again on its
next poll; the refusal is logged once until the reason changes.

A ``reporter`` (the QueueSplit source) writes the worker's progress to its status
while the worker runs (:meth:`StatusReporter.run_reports`, never in the way of the
messages) and once more after ``run`` returned (:meth:`StatusReporter.final_report`,
bounded; a second signal cuts it short too).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from pymirror.errors import PymirrorError
from pymirror.worker.sources import SessionSource
from splitter.routing import SessionRoute

log = structlog.get_logger()

#: Turns the source's routes into what the worker routes by (e.g. SQS names -> URLs).
Prepare = Callable[[list[SessionRoute]], Awaitable[list[SessionRoute]]]


class SplitWorker(Protocol):
    """What the runtime needs of an engine worker (both brokers' workers are one)."""

    stats: Any

    async def run(self) -> None: ...

    def stop(self) -> None: ...

    def set_routes(self, routes: Sequence[SessionRoute]) -> None: ...


class StatusReporter(Protocol):
    """Writes the worker's progress somewhere (the QueueSplit's status)."""

    async def run_reports(self, done: asyncio.Event) -> None: ...

    async def final_report(self) -> bool: ...


class ForcedExit(PymirrorError):
    """A second SIGTERM/SIGINT arrived during a graceful stop; the worker was cancelled."""

    exit_code = 130


@dataclass(frozen=True)
class Metrics:
    """Serve the worker's counters as ``pymirror_<kind>_*`` on ``port`` (see metrics.py)."""

    kind: str
    split: str
    port: int
    gauges: tuple[str, ...] = ()


async def _same(routes: list[SessionRoute]) -> list[SessionRoute]:
    return routes


async def run_worker(
    worker: SplitWorker,
    source: SessionSource,
    *,
    prepare: Prepare = _same,
    metrics: Metrics | None = None,
    reporter: StatusReporter | None = None,
) -> None:
    """Run ``worker`` until it returns (hand-back finished or stopped); see the module doc."""
    main = asyncio.current_task()
    assert main is not None
    signals = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("stopping", signal=sig.name)
            worker.stop()
        else:
            log.warning("second signal: exiting at once", signal=sig.name)
            main.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    done = asyncio.Event()
    refused: str | None = None  # the last refusal logged

    async def apply(routes: list[SessionRoute]) -> bool:
        nonlocal refused
        try:
            worker.set_routes(await prepare(routes))
        except Exception as e:  # e.g. a session queue that does not exist: keep the old
            reason = f"{type(e).__name__}: {e}"
            if reason != refused:
                refused = reason
                log.warning("sessions not applied; keeping the current ones", error=reason)
            return False
        refused = None
        return True

    try:
        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(source.watch(apply, done), name="sessions")
            reports = None
            if reporter is not None:
                reports = tg.create_task(reporter.run_reports(done), name="status")
            if metrics is not None:
                from pymirror.worker.metrics import StatsExporter, serve_metrics

                exporter = StatsExporter(
                    metrics.kind, metrics.split, worker.stats, gauges=metrics.gauges
                )
                tg.create_task(
                    serve_metrics(exporter, worker.stats, metrics.port, done), name="metrics"
                )
            try:
                await worker.run()
            finally:
                done.set()
                watcher.cancel()  # a change being prepared is not waited for
                if reports is not None:
                    reports.cancel()  # a write being retried: the final report follows
        if reporter is not None:
            await reporter.final_report()
    except asyncio.CancelledError:
        if signals > 1:
            raise ForcedExit(
                "a second signal forced the exit; in-hand work was abandoned"
            ) from None
        raise
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
