"""The queues and topics a registry object names, read from its workload (async, I/O).

The edge of ``registry.env_reading``: reads the registry object's workload
through ``registry.workloads`` and the ConfigMaps its containers reference
through ``registry.config_sources``, then runs the pure core on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from registry.config_sources import ConfigKinds, ConfigSource
from registry.container_envs import config_map_names, container_env
from registry.env_reading import find_queue, find_topic
from registry.env_refs import FoundQueue, FoundTopic, NameSource, TopicSources
from registry.errors import EnvReadingError
from registry.models import MirrordKafkaTopicsConsumer, MirrordWorkloadQueueRegistry
from registry.objects import Kube
from registry.workloads import Workload, WorkloadKinds, get_workload


@dataclass(frozen=True)
class WorkloadQueues:
    """The queues of a registry as its workload's pod template names them."""

    workload: Workload
    container: str
    queues: dict[str, FoundQueue]


@dataclass(frozen=True)
class WorkloadTopics:
    """The topics of a ``MirrordKafkaTopicsConsumer`` as its workload's pod template names them."""

    workload: Workload
    topics: dict[str, FoundTopic]


async def _config_maps(
    config_maps: ConfigSource, namespace: str, containers: Iterable[Mapping[str, Any]]
) -> dict[str, Mapping[str, str] | None]:
    return {
        name: await config_maps.optional_data(namespace, name)
        for name in config_map_names(containers)
    }


async def read_workload_queues(
    kube: Kube,
    namespace: str,
    kind: str,
    name: str,
    container: str | None,
    sources: Mapping[str, NameSource],
    *,
    workloads: WorkloadKinds = WorkloadKinds(),  # noqa: B008 - frozen
    config: ConfigKinds = ConfigKinds(),  # noqa: B008 - frozen
    what: str = "",
) -> WorkloadQueues:
    """Read the workload, its container (named, or the first) and the ConfigMaps it
    references, and find every queue of ``sources`` (queue id -> name source)."""
    workload = await get_workload(kube, workloads, namespace, kind, name)
    chosen = workload.container(container)
    cms = await _config_maps(config.sources(kube).config_maps, namespace, [chosen])
    env = container_env(chosen, cms.get, workload=workload.label)
    prefix = f"{what} " if what else ""
    queues = {
        qid: find_queue(qid, source, env, what=f"{prefix}queue {qid!r}")
        for qid, source in sources.items()
    }
    return WorkloadQueues(workload, env.container, queues)


async def read_registry_queues(
    kube: Kube,
    registry: MirrordWorkloadQueueRegistry,
    queue_ids: Iterable[str] | None = None,
    *,
    namespace: str | None = None,
    workloads: WorkloadKinds = WorkloadKinds(),  # noqa: B008 - frozen
    config: ConfigKinds = ConfigKinds(),  # noqa: B008 - frozen
) -> WorkloadQueues:
    """The SQS queues of a ``MirrordWorkloadQueueRegistry`` (``queue_ids``, default every SQS
    queue) from its consumer's pod template, in the registry's namespace.

    A requested queue whose ``queueType`` is not SQS, or an id the registry lacks, is an
    ``EnvReadingError``."""
    namespace = namespace or registry.metadata.namespace or ""
    if not namespace:
        raise EnvReadingError(
            f"MirrordWorkloadQueueRegistry {registry.metadata.name} has no metadata.namespace; "
            "read it from the API server or pass namespace="
        )
    what = f"MirrordWorkloadQueueRegistry {namespace}/{registry.metadata.name}"
    wire = _wire(registry)["spec"]
    queues: Mapping[str, Any] = wire.get("queues") or {}
    ids = list(queue_ids) if queue_ids is not None else None
    if ids is None:
        ids = [qid for qid, d in queues.items() if d.get("queueType") == "SQS"]
    sources = {}
    for qid in ids:
        details = queues.get(qid)
        if details is None:
            raise EnvReadingError(
                f"{what} has no queue {qid!r} (its queues: {', '.join(queues) or 'none'}); "
                "fix the queue id"
            )
        if details.get("queueType") != "SQS":
            raise EnvReadingError(
                f"{what} queue {qid!r} has queueType {details.get('queueType')!r}; pymirror "
                "splits only SQS queues from a registry (Kafka topics: MirrordKafkaTopicsConsumer)"
            )
        sources[qid] = NameSource.from_wire(details, f"{what} queue {qid!r}")
    consumer = wire["consumer"]
    return await read_workload_queues(
        kube,
        namespace,
        consumer["workloadType"],
        consumer["name"],
        consumer.get("container"),
        sources,
        workloads=workloads,
        config=config,
        what=what,
    )


async def read_kafka_topics(
    kube: Kube,
    consumer: MirrordKafkaTopicsConsumer,
    topic_ids: Iterable[str] | None = None,
    *,
    namespace: str | None = None,
    workloads: WorkloadKinds = WorkloadKinds(),  # noqa: B008 - frozen
    config: ConfigKinds = ConfigKinds(),  # noqa: B008 - frozen
) -> WorkloadTopics:
    """The topics (``topic_ids``, default all) of a ``MirrordKafkaTopicsConsumer``: topic
    names and group ids from its workload's pod template, in the consumer's namespace.

    The workload is found by ``consumerKind`` and ``consumerName`` where ``workloads``
    says that kind is served (``consumerApiVersion`` is not used to locate it)."""
    namespace = namespace or consumer.metadata.namespace or ""
    if not namespace:
        raise EnvReadingError(
            f"MirrordKafkaTopicsConsumer {consumer.metadata.name} has no metadata.namespace; "
            "read it from the API server or pass namespace="
        )
    what = f"MirrordKafkaTopicsConsumer {namespace}/{consumer.metadata.name}"
    spec = _wire(consumer)["spec"]
    topics = {str(t.get("id")): t for t in spec.get("topics") or ()}
    ids = list(topic_ids) if topic_ids is not None else list(topics)
    wanted = []
    for tid in ids:
        if tid not in topics:
            raise EnvReadingError(
                f"{what} has no topic {tid!r} (its topics: {', '.join(topics) or 'none'}); "
                "fix the topic id"
            )
        wanted.append(TopicSources.from_wire(topics[tid], what))
    workload = await get_workload(
        kube, workloads, namespace, spec["consumerKind"], spec["consumerName"]
    )
    containers = workload.containers()
    cms = await _config_maps(config.sources(kube).config_maps, namespace, containers)
    label = workload.label
    envs = {str(c.get("name")): container_env(c, cms.get, workload=label) for c in containers}
    found = {t.topic_id: find_topic(t, envs, what=f"{what} topic {t.topic_id!r}") for t in wanted}
    return WorkloadTopics(workload, found)


def _wire(model: BaseModel) -> dict[str, Any]:
    """The object as JSON with wire names (fields the model does not know included)."""
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)
