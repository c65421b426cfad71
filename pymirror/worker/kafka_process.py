"""The Kafka split worker as a process: check, build, run (``pymirror worker kafka``).

Everything is checked before the worker joins the group: the client properties (with
``client_config``: that MirrordKafkaClientConfig, its parents and Secrets, read from
the API server in the QueueSplit's namespace, so no secret is on a command line),
the sessions and their filters, and that the original, the fallback and every
session topic exist (a consumer's metadata request could auto-create a missing
one; nothing is created here). Then the runtime runs the worker until the last
session's hand-back finishes or a signal stops it.

With ``--split`` the worker's progress goes into the QueueSplit's status (session
ends, hand-back phases, counters every ``report_interval`` s and at exit); a
QueueSplit with ``spec.handBack`` at start-up resumes the hand-back, and one whose
fallback topic is gone already is reported ``Done`` at once (exit 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from pymirror.worker.runtime import Metrics, run_worker
from pymirror.worker.sources import SessionSource
from pymirror.worker.split_source import (
    REPORT_INTERVAL,
    QueueSplitError,
    QueueSplitSource,
    open_session_source,
)
from registry.config_sources import ConfigKinds
from registry.kafka_client_configs import load_client_config
from registry.session_models import SplitCounters
from splitter.kafka.clients import KafkaClients
from splitter.kafka.properties import KafkaClientOptions, translate_properties
from splitter.kafka.settings import KafkaSettings
from splitter.kafka.worker import KafkaSplitWorker, KafkaWorkerIdentity, KafkaWorkerStats

log = structlog.get_logger()


@dataclass(frozen=True)
class KafkaProcess:
    """One ``pymirror worker kafka`` run: which split, its client, its sessions."""

    identity: KafkaWorkerIdentity
    #: librdkafka/Java client properties (given by hand; they override ``client_config``'s).
    properties: dict[str, str]
    #: With ``split``: a MirrordKafkaClientConfig resolved in the split's namespace at start.
    client_config: str | None = None
    #: Where ConfigMaps and Secrets are served (for ``client_config``'s Secrets).
    config_kinds: ConfigKinds = ConfigKinds()  # noqa: RUF009 - frozen
    sessions_file: Path | None = None
    #: ``NAMESPACE/NAME`` of the QueueSplit to follow instead of a sessions file.
    split: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    metrics_port: int | None = None
    #: With ``split``: seconds between two periodic status writes.
    report_interval: float = REPORT_INTERVAL


def kafka_counters(stats: KafkaWorkerStats) -> SplitCounters:
    """``status.counters`` of a Kafka worker (``lag``: the workload group's on the
    fallback, measured during the hand-back only; 0 before)."""
    forwarded = {k: v for k, v in stats.forwarded.items() if k != "fallback"}
    return SplitCounters(
        read=stats.read,
        unmatched=stats.unmatched,
        fallback=stats.forwarded.get("fallback", 0),
        failed=stats.forward_failures,
        lag=stats.lag,
        forwarded=forwarded,
    )


async def serve(process: KafkaProcess, settings: KafkaSettings) -> None:
    """Check everything, then run the split worker until it is done (see the module doc)."""
    if process.client_config is None:
        options = _options(process.properties)  # checked before anything is opened
    async with open_session_source(
        process.split,
        process.sessions_file,
        "topic",
        process.kubeconfig,
        process.context,
        report_interval=process.report_interval,
    ) as source:
        if process.client_config is not None:
            options = _options(await _resolved(process, source))
        await _serve(process, settings, options, source)


def _options(properties: dict[str, str]) -> KafkaClientOptions:
    options = translate_properties(properties)
    for name, why in options.ignored.items():
        log.warning("kafka property has no effect", property=name, reason=why)
    return options


async def _resolved(process: KafkaProcess, source: SessionSource) -> dict[str, str]:
    """``client_config`` resolved in the QueueSplit's namespace, ``properties`` over it
    (``ClientConfigError`` names a missing config, parent or Secret)."""
    assert process.client_config is not None
    if not isinstance(source, QueueSplitSource):
        raise QueueSplitError("--client-config needs --split (a QueueSplit's namespace)")
    resolved = await load_client_config(
        source.kube, source.namespace, process.client_config, config=process.config_kinds
    )
    log.info(
        "kafka client config resolved",
        client_config=process.client_config,
        properties=sorted(resolved),  # the names only: values may be secrets
    )
    return {**resolved, **process.properties}


async def _serve(
    process: KafkaProcess,
    settings: KafkaSettings,
    options: KafkaClientOptions,
    source: SessionSource,
) -> None:
    routes = source.load()
    clients = KafkaClients(options)
    identity = process.identity
    split_source = source if isinstance(source, QueueSplitSource) else None
    async with clients.admin() as admin:  # KafkaTopicError names a missing topic
        resumed = split_source is not None and split_source.hand_back
        if resumed and not await admin.exists(identity.fallback_topic):
            assert split_source is not None
            await _handed_back(split_source)
            return
        for topic in (identity.topic, identity.fallback_topic, *(r.destination for r in routes)):
            await admin.partitions(topic)
    worker = KafkaSplitWorker(clients, identity, settings, routes)
    if split_source is not None:
        _wire(worker, split_source)
    structlog.contextvars.bind_contextvars(topic=identity.topic)
    metrics = None
    if process.metrics_port is not None:
        metrics = Metrics("kafka", identity.topic, process.metrics_port, gauges=("lag",))
    await run_worker(worker, source, metrics=metrics, reporter=split_source)


def _wire(worker: KafkaSplitWorker, source: QueueSplitSource) -> None:
    """The worker's progress into the QueueSplit's status; a recorded hand-back resumed."""
    source.on_deleted = worker.stop  # the split is gone: stop as on SIGTERM
    worker.on_session_ended = source.session_ended
    worker.on_hand_back = source.hand_back_progress
    source.counters = lambda: kafka_counters(worker.stats)
    if source.hand_back:
        log.info("kafka resuming the hand-back the QueueSplit asks for", split=source.what)
        worker.begin_hand_back()


async def _handed_back(source: QueueSplitSource) -> None:
    """spec.handBack and the fallback gone: the hand-back finished before a restart."""
    log.info("kafka fallback already deleted; the hand-back is done", split=source.what)
    source.hand_back_progress("Done", 0)
    await source.final_report()
