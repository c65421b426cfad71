"""``pymirror worker sqs``: the split worker for one original SQS queue, as a process.

    pymirror worker sqs --queue ORIGINAL --fallback-queue FALLBACK \\
        --sessions-file sessions.json [--endpoint-url URL] [--metrics-port P]

Queues are given by name or URL. The sessions file lists the active sessions
(:mod:`pymirror.worker.sources`) and is re-read when it changes: a session
that disappears ends (its queue's leftovers are routed again, the queue is
deleted); when the last one disappears the queue is handed back (the
fallback drains, leftovers go back to the original, the fallback is deleted)
and the process exits 0. SIGTERM/SIGINT stop receiving, forward or release
what is in hand and exit 0 within the longer of ``sqs.shutdown_grace`` and
``--wait-seconds`` (a long poll under way is finished, not abandoned).

Everything is checked before the worker starts: filters, both queues and
every session queue exist. Errors print as ``Name: message``, exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from pymirror.settings import Settings

if TYPE_CHECKING:
    from splitter.routing import SessionRoute
    from splitter.sqs.client import SqsClient

log = structlog.get_logger()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", required=True, help="the original queue (name or URL)")
    parser.add_argument(
        "--fallback-queue", required=True, help="the queue the workload reads (name or URL)"
    )
    parser.add_argument(
        "--sessions-file",
        type=Path,
        required=True,
        help='JSON: [{"id", "sequence", "queue", "message_filter", "jq_filter"?, "queue_mode"?}]',
    )
    parser.add_argument("--endpoint-url", default=None, help="SQS endpoint (default: settings)")
    parser.add_argument("--region", default=None, help="AWS region (default: settings)")
    parser.add_argument("--receivers", type=int, default=None, help="concurrent long polls")
    parser.add_argument("--wait-seconds", type=int, default=None, help="long-poll wait (0-20)")
    parser.add_argument(
        "--visibility-timeout", type=int, default=None, help="seconds; default: the queue's"
    )
    parser.add_argument("--drain-timeout", type=float, default=None, help="seconds; see settings")
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics")


async def _resolve(client: SqsClient, routes: list[SessionRoute]) -> list[SessionRoute]:
    """Routes with every destination as a URL (``SqsQueueMissingError`` names a missing one)."""
    return [
        dataclasses.replace(route, destination=await client.queue_url(route.destination))
        for route in routes
    ]


async def serve(args: argparse.Namespace, settings: Settings) -> int:
    # The engine (aiobotocore) is imported only when a worker runs: `pymirror --help` stays fast.
    from pymirror.worker.metrics import StatsExporter, serve_metrics
    from pymirror.worker.sources import load_routes, watch_routes
    from splitter.sqs.client import SqsEndpoint, connect
    from splitter.sqs.split import SqsSplit
    from splitter.sqs.worker import SqsSplitWorker

    flags = {
        "endpoint_url": args.endpoint_url,
        "region": args.region,
        "receivers": args.receivers,
        "wait_seconds": args.wait_seconds,
        "visibility_timeout": args.visibility_timeout,
        "drain_timeout": args.drain_timeout,
    }
    sqs = settings.sqs.model_copy(update={k: v for k, v in flags.items() if v is not None})
    routes = load_routes(args.sessions_file, "queue")  # filters compile before anything else
    endpoint = SqsEndpoint(url=sqs.endpoint_url, region=sqs.region)
    async with connect(endpoint) as client:
        queue = await client.queue_url(args.queue)
        fallback = await client.queue_url(args.fallback_queue)
        routes = await _resolve(client, routes)
        worker = SqsSplitWorker(client, SqsSplit(queue, fallback), sqs, routes)
        structlog.contextvars.bind_contextvars(queue=args.queue)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)

        def apply(new: list[SessionRoute]) -> None:
            async def resolved() -> None:
                try:
                    worker.set_routes(await _resolve(client, new))
                except Exception as e:  # a session queue that does not exist: keep the old ones
                    log.warning("sessions not applied", error=str(e))

            tg.create_task(resolved(), name="apply-sessions")

        done = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(watch_routes(args.sessions_file, "queue", apply, done), name="sessions")
            if args.metrics_port is not None:
                exporter = StatsExporter("sqs", queue, worker.stats)
                tg.create_task(
                    serve_metrics(exporter, worker.stats, args.metrics_port, done), name="metrics"
                )
            try:
                await worker.run()
            finally:
                done.set()
    print(f"pymirror worker sqs: {worker.summary()}", flush=True)
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(args, settings))
    return 130
