"""``pymirror worker kafka``: the split worker for one original topic, as a process.

    pymirror worker kafka --topic ORIGINAL --group-id GROUP --fallback-topic FALLBACK \\
        --sessions-file sessions.json [--property NAME=VALUE ...] [--metrics-port P]
        [--member-file PATH] [--drain-timeout SECONDS] [--keep-fallback]

Client properties use the librdkafka/Java names of a resolved
``MirrordKafkaClientConfig`` (``bootstrap.servers`` at least). The sessions
file lists the active sessions and is re-read when it changes; a session
that disappears ends (its topic is drained and deleted); when the last one
disappears the topic is handed back and the process exits 0. SIGTERM/SIGINT
stop consuming, commit what was forwarded and exit 0 within the flush bound.

Everything is checked before the worker joins the group: properties, the
sessions file and its filters, and that the original, the fallback and every
session topic exist (nothing is created). Errors print as ``Name: message``,
exit 1 (usage errors exit 2).

``--member-file`` names a file of this replica's own (a pod's emptyDir): the
worker records its group member id there, and a worker restarted after a
crash removes its dead predecessor from the group before it joins.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Sequence
from pathlib import Path

import structlog

from pymirror.errors import UsageError
from pymirror.settings import Settings
from pymirror.worker.metrics import StatsExporter, serve_metrics
from pymirror.worker.sources import load_routes, watch_routes
from splitter.kafka.clients import KafkaClients
from splitter.kafka.properties import translate_properties
from splitter.kafka.worker import KafkaSplitWorker, KafkaWorkerIdentity

log = structlog.get_logger()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", required=True, help="the original topic")
    parser.add_argument("--group-id", required=True, help="the workload's consumer group id")
    parser.add_argument("--fallback-topic", required=True, help="the topic the workload reads")
    parser.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a librdkafka/Java client property (repeat); bootstrap.servers is required",
    )
    parser.add_argument(
        "--sessions-file",
        type=Path,
        required=True,
        help='JSON: [{"id", "sequence", "topic", "message_filter", "jq_filter"?, "queue_mode"?}]',
    )
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics")
    parser.add_argument("--drain-timeout", type=float, default=None, help="seconds; see settings")
    parser.add_argument(
        "--keep-fallback",
        action="store_true",
        help="after the last session's drain, leave the fallback topic for the caller to delete "
        "(once the workload reads the original again)",
    )
    parser.add_argument(
        "--member-file",
        type=Path,
        default=None,
        help="this replica's own file (a pod emptyDir) recording its group member id; "
        "a restarted worker removes its dead predecessor from the group at once",
    )


def parse_properties(items: Sequence[str]) -> dict[str, str]:
    properties: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--property {item!r} must look like NAME=VALUE")
        properties[name.strip()] = value
    return properties


async def serve(args: argparse.Namespace, settings: Settings) -> int:
    options = translate_properties(parse_properties(args.property))
    for name, why in options.ignored.items():
        log.warning("kafka property has no effect", property=name, reason=why)
    routes = load_routes(args.sessions_file, "topic")
    clients = KafkaClients(options)
    # Before joining the group (a consumer's metadata request may auto-create
    # a missing topic): every topic must exist. KafkaTopicError names it.
    async with clients.admin() as admin:
        for topic in (args.topic, args.fallback_topic, *(r.destination for r in routes)):
            await admin.partitions(topic)
    identity = KafkaWorkerIdentity(
        topic=args.topic,
        group_id=args.group_id,
        fallback_topic=args.fallback_topic,
        member_file=args.member_file,
        delete_fallback=not args.keep_fallback,
    )
    # CLI flags override the settings (PYMIRROR_KAFKA__*); unset flags leave them.
    flags = {"drain_timeout": args.drain_timeout}
    kafka = settings.kafka.model_copy(update={k: v for k, v in flags.items() if v is not None})
    worker = KafkaSplitWorker(clients, identity, kafka, routes)
    structlog.contextvars.bind_contextvars(topic=args.topic)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    done = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        watching = watch_routes(args.sessions_file, "topic", worker.set_routes, done)
        tg.create_task(watching, name="sessions")
        if args.metrics_port is not None:
            exporter = StatsExporter("kafka", args.topic, worker.stats, gauges=("lag",))
            metrics = serve_metrics(exporter, worker.stats, args.metrics_port, done)
            tg.create_task(metrics, name="metrics")
        try:
            await worker.run()
        finally:
            done.set()
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(args, settings))
    return 130
