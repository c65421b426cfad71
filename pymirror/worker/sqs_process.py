"""The SQS split worker as a process: check, build, run (``pymirror worker sqs``).

Everything is checked before the worker starts: the sessions and their
filters, and that the original, the fallback and every session queue exist
(given by name or URL; routing uses URLs). Then the runtime runs the worker
until the last session's hand-back finishes or a signal stops it, and the
process prints the worker's summary line.

With ``--split`` the worker's progress goes into the QueueSplit's status (session
ends, hand-back phases, counters every ``report_interval`` s and at exit). A
QueueSplit with ``spec.handBack`` at start-up is a hand-back to resume (a restart
mid-way): it begins at once; if its fallback is gone already, the hand-back finished
before the restart and the worker reports ``Done`` and exits 0 without splitting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import structlog

from pymirror.worker.runtime import Metrics, run_worker
from pymirror.worker.sources import SessionSource
from pymirror.worker.split_source import REPORT_INTERVAL, QueueSplitSource, open_session_source
from registry.session_models import SplitCounters
from splitter.errors import NotOursError, SqsQueueMissingError
from splitter.routing import SessionRoute
from splitter.sqs.client import SqsClient, SqsEndpoint, connect
from splitter.sqs.settings import SqsSettings
from splitter.sqs.split import SqsSplit
from splitter.sqs.stats import SqsWorkerStats
from splitter.sqs.worker import SqsSplitWorker
from splitter.switching import check_routes

log = structlog.get_logger()


@dataclass(frozen=True)
class SqsProcess:
    """One ``pymirror worker sqs`` run: which queues (names or URLs), its sessions."""

    queue: str
    fallback_queue: str
    sessions_file: Path | None = None
    #: ``NAMESPACE/NAME`` of the QueueSplit to follow instead of a sessions file.
    split: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    metrics_port: int | None = None
    #: With ``split``: seconds between two periodic status writes.
    report_interval: float = REPORT_INTERVAL


def sqs_counters(stats: SqsWorkerStats) -> SplitCounters:
    """``status.counters`` of an SQS worker (``lag`` is not known here)."""
    forwarded = {k: v for k, v in stats.forwarded.items() if k != "fallback"}
    return SplitCounters(
        read=stats.received,
        unmatched=stats.unmatched,
        fallback=stats.forwarded.get("fallback", 0),
        failed=stats.failed,
        forwarded=forwarded,
    )


async def _resolved(client: SqsClient, routes: list[SessionRoute]) -> list[SessionRoute]:
    """Routes with every destination as a URL (``SqsQueueMissingError`` names a missing one)."""
    return [
        dataclasses.replace(route, destination=await client.queue_url(route.destination))
        for route in routes
    ]


async def serve(process: SqsProcess, settings: SqsSettings) -> dict[str, object]:
    """Check everything, run the split worker until it is done; its summary."""
    async with open_session_source(
        process.split,
        process.sessions_file,
        "queue",
        process.kubeconfig,
        process.context,
        report_interval=process.report_interval,
    ) as source:
        routes = source.load()  # filters compile before anything else
        return await _serve(process, settings, source, routes)


async def _serve(
    process: SqsProcess, settings: SqsSettings, source: SessionSource, routes: list[SessionRoute]
) -> dict[str, object]:
    endpoint = SqsEndpoint(url=settings.endpoint_url, region=settings.region)
    split_source = source if isinstance(source, QueueSplitSource) else None
    async with connect(endpoint) as client:
        queue = await client.queue_url(process.queue)
        try:
            fallback = await client.queue_url(process.fallback_queue)
        except SqsQueueMissingError:
            if split_source is None or not split_source.hand_back:
                raise
            return await _handed_back(split_source)
        worker = SqsSplitWorker(
            client, SqsSplit(queue, fallback), settings, await _resolved(client, routes)
        )
        if split_source is not None:
            _wire(worker, split_source)
        structlog.contextvars.bind_contextvars(queue=process.queue)
        metrics = None
        if process.metrics_port is not None:
            metrics = Metrics("sqs", queue, process.metrics_port)

        async def prepare(new: list[SessionRoute]) -> list[SessionRoute]:
            # A change naming a queue pymirror did not make for this split is refused
            # whole, like any bad edit: the sessions in force stay (dropping only that
            # session would end it, or hand the queue back when it was the only one).
            resolved = await _resolved(client, new)
            check_routes(resolved, fallback, queue)  # the switch's rules first: clearer errors
            vetted = await worker.vet_routes(resolved)
            rejected = sorted({r.session_id for r in resolved} - {r.session_id for r in vetted})
            if rejected:
                raise NotOursError(
                    f"sessions {rejected} name queues pymirror did not make for this split; "
                    "the change is refused and the current sessions stay"
                )
            return vetted

        await run_worker(worker, source, prepare=prepare, metrics=metrics, reporter=split_source)
    return worker.summary()


def _wire(worker: SqsSplitWorker, source: QueueSplitSource) -> None:
    """The worker's progress into the QueueSplit's status; a recorded hand-back resumed."""
    source.on_deleted = worker.stop  # the split is gone: stop as on SIGTERM
    worker.on_session_ended = source.session_ended
    worker.on_hand_back = source.hand_back_progress
    source.counters = lambda: sqs_counters(worker.stats)
    if source.hand_back:
        log.info("sqs resuming the hand-back the QueueSplit asks for", split=source.what)
        worker.begin_hand_back()


async def _handed_back(source: QueueSplitSource) -> dict[str, object]:
    """spec.handBack and the fallback gone: the hand-back finished before a restart."""
    log.info("sqs fallback already deleted; the hand-back is done", split=source.what)
    source.hand_back_progress("Done", 0)
    await source.final_report()
    return {"handed_back": True}
