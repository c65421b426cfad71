"""The Kafka split worker as a process: check, build, run (``pymirror worker kafka``).

Everything is checked before the worker joins the group: the client properties,
the sessions and their filters, and that the original, the fallback and every
session topic exist (a consumer's metadata request could auto-create a missing
one; nothing is created here). Then the runtime runs the worker until the last
session's hand-back finishes or a signal stops it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import structlog

from pymirror.worker.runtime import Metrics, run_worker
from pymirror.worker.sources import FileSessionSource, SessionSource
from pymirror.worker.split_source import QueueSplitSource, open_split_source
from splitter.kafka.clients import KafkaClients
from splitter.kafka.properties import KafkaClientOptions, translate_properties
from splitter.kafka.settings import KafkaSettings
from splitter.kafka.worker import KafkaSplitWorker, KafkaWorkerIdentity

log = structlog.get_logger()


@dataclass(frozen=True)
class KafkaProcess:
    """One ``pymirror worker kafka`` run: which split, its client, its sessions."""

    identity: KafkaWorkerIdentity
    #: librdkafka/Java client properties (a resolved MirrordKafkaClientConfig).
    properties: dict[str, str]
    sessions_file: Path | None = None
    #: ``NAMESPACE/NAME`` of the QueueSplit to follow instead of a sessions file.
    split: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    metrics_port: int | None = None


async def serve(process: KafkaProcess, settings: KafkaSettings) -> None:
    """Check everything, then run the split worker until it is done (see the module doc)."""
    options = translate_properties(process.properties)
    for name, why in options.ignored.items():
        log.warning("kafka property has no effect", property=name, reason=why)
    async with contextlib.AsyncExitStack() as stack:
        source: SessionSource
        if process.split is not None:
            source = await stack.enter_async_context(
                open_split_source(process.split, process.kubeconfig, process.context)
            )
        else:
            assert process.sessions_file is not None
            source = FileSessionSource(process.sessions_file, "topic")
        await _serve(process, settings, options, source)


async def _serve(
    process: KafkaProcess,
    settings: KafkaSettings,
    options: KafkaClientOptions,
    source: SessionSource,
) -> None:
    routes = source.load()
    clients = KafkaClients(options)
    identity = process.identity
    async with clients.admin() as admin:  # KafkaTopicError names a missing topic
        for topic in (identity.topic, identity.fallback_topic, *(r.destination for r in routes)):
            await admin.partitions(topic)
    worker = KafkaSplitWorker(clients, identity, settings, routes)
    if isinstance(source, QueueSplitSource):
        source.on_deleted = worker.stop  # the split is gone: stop as on SIGTERM
    structlog.contextvars.bind_contextvars(topic=identity.topic)
    metrics = None
    if process.metrics_port is not None:
        metrics = Metrics("kafka", identity.topic, process.metrics_port, gauges=("lag",))
    await run_worker(worker, source, metrics=metrics)
