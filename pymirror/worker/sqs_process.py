"""The SQS split worker as a process: check, build, run (``pymirror worker sqs``).

Everything is checked before the worker starts: the sessions and their
filters, and that the original, the fallback and every session queue exist
(given by name or URL; routing uses URLs). Then the runtime runs the worker
until the last session's hand-back finishes or a signal stops it, and the
process prints the worker's summary line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import structlog

from pymirror.worker.runtime import Metrics, run_worker
from pymirror.worker.sources import FileSessionSource
from splitter.routing import SessionRoute
from splitter.sqs.client import SqsClient, SqsEndpoint, connect
from splitter.sqs.settings import SqsSettings
from splitter.sqs.split import SqsSplit
from splitter.sqs.worker import SqsSplitWorker


@dataclass(frozen=True)
class SqsProcess:
    """One ``pymirror worker sqs`` run: which queues (names or URLs), its sessions."""

    queue: str
    fallback_queue: str
    sessions_file: Path
    metrics_port: int | None = None


async def _resolved(client: SqsClient, routes: list[SessionRoute]) -> list[SessionRoute]:
    """Routes with every destination as a URL (``SqsQueueMissingError`` names a missing one)."""
    return [
        dataclasses.replace(route, destination=await client.queue_url(route.destination))
        for route in routes
    ]


async def serve(process: SqsProcess, settings: SqsSettings) -> dict[str, object]:
    """Check everything, run the split worker until it is done; its summary."""
    source = FileSessionSource(process.sessions_file, "queue")
    routes = source.load()  # filters compile before anything else
    endpoint = SqsEndpoint(url=settings.endpoint_url, region=settings.region)
    async with connect(endpoint) as client:
        queue = await client.queue_url(process.queue)
        fallback = await client.queue_url(process.fallback_queue)
        worker = SqsSplitWorker(
            client, SqsSplit(queue, fallback), settings, await _resolved(client, routes)
        )
        structlog.contextvars.bind_contextvars(queue=process.queue)
        metrics = None
        if process.metrics_port is not None:
            metrics = Metrics("sqs", queue, process.metrics_port)

        async def prepare(new: list[SessionRoute]) -> list[SessionRoute]:
            return await worker.vet_routes(await _resolved(client, new))

        await run_worker(worker, source, prepare=prepare, metrics=metrics)
    return worker.summary()
