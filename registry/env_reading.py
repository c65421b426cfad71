"""Reading queue names/URLs, topics and group ids from a workload's pod template.

A pure core and a thin async wrapper. The core takes a pod template, what to
look for, and a resolver for the ConfigMaps the containers reference; it returns,
per queue (or topic) id, every env var that names it: the container, the
variable, the original value (a queue name or a URL, in the form written), and
how it was found, so an env patch can later write the same form back::

    env = container_env(container, config_maps.get, workload="Deployment shop/app")
    found = find_queue("meme-queue", NameSource(env_var="INCOMING_MEME_QUEUE_NAME"), env)

How a variable's value may be given (``ValueOrigin.kind``):

* ``value`` - directly in the pod template (``env[].value``);
* ``configMapKeyRef`` - ``env[].valueFrom.configMapKeyRef`` (``optional`` honoured);
* ``envFrom.configMapRef`` - every key of a ConfigMap, with the entry's ``prefix``;
* ``fallbackName`` - the variable is absent and the registry's ``fallbackName`` stands in
  (``FoundVar.must_add``: the patch must add the variable).

As in Kubernetes, ``env`` overrides ``envFrom`` and a later entry an earlier one.
Anything else (``valueFrom.secretKeyRef``, ``fieldRef``, ``resourceFieldRef``, an
absent variable without ``fallbackName``, a JSON map that does not parse, a
missing non-optional ConfigMap) is an ``EnvReadingError`` naming the env var,
the container, the workload and the fix - raised only when that variable is
the one looked for, so an unrelated broken variable does not fail a split.

Registry shapes (``NameSource``): ``nameSource.envVar``; ``nameSource.regexPattern``
(every variable whose name the regex - the ``regex`` module, lookaround and
backreferences allowed - finds a match in, "search" semantics); ``fallbackName``;
``namesFromJsonMap`` (the value is a JSON object whose values are queue names).
Kafka (``TopicSources``): ``nameSources[].directEnvVar{container, variable}`` and
``groupIdSources`` alike; every source of one topic must hold the same value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import regex
from pydantic import BaseModel

from registry.config_sources import ConfigKinds, ConfigSource
from registry.errors import EnvReadingError
from registry.models import MirrordKafkaTopicsConsumer, MirrordWorkloadQueueRegistry
from registry.objects import Kube
from registry.workloads import Workload, WorkloadKinds, get_workload

SourceKind = Literal["value", "configMapKeyRef", "envFrom.configMapRef", "fallbackName"]
VALUE: SourceKind = "value"
CONFIG_MAP_KEY_REF: SourceKind = "configMapKeyRef"
ENV_FROM_CONFIG_MAP: SourceKind = "envFrom.configMapRef"
FALLBACK_NAME: SourceKind = "fallbackName"
SUPPORTED = "env[].value, env[].valueFrom.configMapKeyRef or envFrom[].configMapRef"

ConfigMapResolver = Callable[[str], Mapping[str, str] | None]
"""ConfigMap name (in the workload's namespace) -> its data, or None when it does not exist."""


# --- what was found -------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueOrigin:
    """How a variable got its value."""

    kind: SourceKind
    config_map: str | None = None
    """The ConfigMap, for ``configMapKeyRef`` and ``envFrom.configMapRef``."""
    key: str | None = None
    """The ConfigMap key the value is under."""
    prefix: str = ""
    """The ``envFrom`` entry's prefix (the variable is ``prefix + key``)."""


@dataclass(frozen=True)
class QueueName:
    """One queue name or URL, as written in the variable (or in its JSON map)."""

    name: str
    json_key: str | None = None
    """The JSON map key it is under, when the variable holds a JSON map."""


@dataclass(frozen=True)
class FoundVar:
    """One env var of one container that holds a queue name, topic or group id."""

    container: str
    variable: str
    value: str
    """The variable's whole original value (the raw JSON for a JSON map)."""
    origin: ValueOrigin
    names: tuple[QueueName, ...]
    """The names in it: the value itself, or the JSON map's values."""

    @property
    def must_add(self) -> bool:
        """True when the variable is absent (``fallbackName``): the patch must add it."""
        return self.origin.kind == FALLBACK_NAME

    @property
    def is_json_map(self) -> bool:
        return any(n.json_key is not None for n in self.names)


@dataclass(frozen=True)
class FoundQueue:
    """Every env var naming the queues of one registry queue id."""

    queue_id: str
    vars: tuple[FoundVar, ...]

    def names(self) -> list[str]:
        """The distinct queue names/URLs, in the order found."""
        return list(dict.fromkeys(n.name for v in self.vars for n in v.names))


@dataclass(frozen=True)
class FoundTopic:
    """A Kafka topic id: its topic, its group id, and every variable holding them."""

    topic_id: str
    topic: str
    group_id: str
    name_vars: tuple[FoundVar, ...]
    group_id_vars: tuple[FoundVar, ...]


# --- what to look for -----------------------------------------------------------------------


@dataclass(frozen=True)
class NameSource:
    """A registry queue's ``nameSource`` (exactly one of ``env_var``, ``regex_pattern``)
    with its ``fallbackName`` and ``namesFromJsonMap``."""

    env_var: str | None = None
    regex_pattern: str | None = None
    fallback_name: str | None = None
    names_from_json_map: bool = False

    @classmethod
    def from_wire(cls, details: Mapping[str, Any], what: str) -> NameSource:
        """From ``spec.queues.<id>`` as JSON (camelCase); ``EnvReadingError`` naming the field."""
        source = details.get("nameSource")
        if not isinstance(source, Mapping):
            raise EnvReadingError(f"{what}: nameSource is missing; set nameSource.envVar")
        env_var, pattern = source.get("envVar"), source.get("regexPattern")
        if (env_var is None) == (pattern is None):
            raise EnvReadingError(
                f"{what}: nameSource needs exactly one of envVar and regexPattern"
            )
        for key, v in (("nameSource.envVar", env_var), ("nameSource.regexPattern", pattern)):
            if v is not None and (not isinstance(v, str) or not v):
                raise EnvReadingError(f"{what}: {key} must be a non-empty string")
        fallback, json_map = details.get("fallbackName"), details.get("namesFromJsonMap")
        if fallback is not None and not isinstance(fallback, str):
            raise EnvReadingError(f"{what}: fallbackName must be a string")
        if json_map is not None and not isinstance(json_map, bool):
            raise EnvReadingError(f"{what}: namesFromJsonMap must be true or false")
        return cls(env_var, pattern, fallback, bool(json_map))


@dataclass(frozen=True)
class EnvVarRef:
    """``directEnvVar{container, variable}`` (and the chart's newer ``fallback``)."""

    container: str
    variable: str
    fallback: str | None = None


@dataclass(frozen=True)
class TopicSources:
    """One ``spec.topics[]`` entry of a ``MirrordKafkaTopicsConsumer``."""

    topic_id: str
    name_sources: tuple[EnvVarRef, ...]
    group_id_sources: tuple[EnvVarRef, ...]

    @classmethod
    def from_wire(cls, topic: Mapping[str, Any], what: str) -> TopicSources:
        """From one ``spec.topics[]`` entry as JSON; ``EnvReadingError`` naming the field."""
        topic_id = str(topic.get("id"))

        def refs(key: str) -> tuple[EnvVarRef, ...]:
            out = []
            for i, item in enumerate(topic.get(key) or ()):
                direct = item.get("directEnvVar") if isinstance(item, Mapping) else None
                where = f"{what}: topic {topic_id!r} {key}[{i}]"
                if not isinstance(direct, Mapping):
                    raise EnvReadingError(
                        f"{where} has no directEnvVar; pymirror reads only "
                        "directEnvVar{container, variable}"
                    )
                container, variable = direct.get("container"), direct.get("variable")
                if not isinstance(container, str) or not container:
                    raise EnvReadingError(f"{where}.directEnvVar.container must name a container")
                if not isinstance(variable, str) or not variable:
                    raise EnvReadingError(f"{where}.directEnvVar.variable must name an env var")
                fallback = direct.get("fallback")
                out.append(EnvVarRef(container, variable, fallback if fallback else None))
            if not out and key == "groupIdSources" and topic.get("applicationIdSources"):
                raise EnvReadingError(
                    f"{what}: topic {topic_id!r} has applicationIdSources (a Kafka Streams "
                    "consumer), which pymirror does not split; use groupIdSources"
                )
            if not out:
                raise EnvReadingError(f"{what}: topic {topic_id!r} needs at least one {key} entry")
            return tuple(out)

        return cls(topic_id, refs("nameSources"), refs("groupIdSources"))


# --- the effective environment of a container -----------------------------------------------


@dataclass(frozen=True)
class EnvEntry:
    """One variable of a container's effective environment."""

    variable: str
    value: str | None
    """None when pymirror cannot read it (``problem`` says why)."""
    origin: ValueOrigin | None
    problem: str | None = None


@dataclass(frozen=True)
class ContainerEnv:
    """A container's effective environment, in definition order (later overrides earlier)."""

    workload: str
    container: str
    entries: Mapping[str, EnvEntry]
    unreadable_env_from: tuple[str, ...] = field(default=())
    """``envFrom`` entries pymirror cannot enumerate (a Secret, a missing ConfigMap):
    an absent variable may come from one of them."""

    def where(self, variable: str) -> str:
        return f"env var {variable} of container {self.container} of {self.workload}"


def container_env(
    container: Mapping[str, Any], config_maps: ConfigMapResolver, *, workload: str
) -> ContainerEnv:
    """The effective environment of ``container``: ``envFrom`` in order, then ``env``."""
    name = str(container.get("name"))
    entries: dict[str, EnvEntry] = {}
    unreadable: list[str] = []
    for i, item in enumerate(container.get("envFrom") or ()):
        prefix = str(item.get("prefix") or "")
        ref = item.get("configMapRef")
        if isinstance(ref, Mapping):
            cm = str(ref.get("name"))
            data = config_maps(cm)
            if data is None:
                if not ref.get("optional"):
                    unreadable.append(
                        f"envFrom[{i}].configMapRef: ConfigMap {cm} does not exist (the pods "
                        "cannot start without it: create it or mark it optional)"
                    )
                continue
            for key, value in data.items():
                var = prefix + key
                entries.pop(var, None)  # keep definition order: a redefinition moves to the end
                entries[var] = EnvEntry(
                    var, value, ValueOrigin(ENV_FROM_CONFIG_MAP, cm, key, prefix)
                )
        elif isinstance(item.get("secretRef"), Mapping):
            secret = item["secretRef"].get("name")
            unreadable.append(
                f"envFrom[{i}].secretRef: Secret {secret} (pymirror does not read queue names "
                "from Secrets)"
            )
        else:
            unreadable.append(f"envFrom[{i}]: neither configMapRef nor secretRef")
    for item in container.get("env") or ():
        var = str(item.get("name"))
        entries.pop(var, None)
        entry = _env_entry(var, item, config_maps, f"env var {var} of container {name}")
        if entry is not None:
            entries[var] = entry
    return ContainerEnv(workload, name, entries, tuple(unreadable))


def _env_entry(
    var: str, item: Mapping[str, Any], config_maps: ConfigMapResolver, where: str
) -> EnvEntry | None:
    """One ``env[]`` item; None when an optional ConfigMap ref leaves the variable unset."""
    value_from = item.get("valueFrom")
    if not value_from:
        return EnvEntry(var, str(item.get("value") or ""), ValueOrigin(VALUE))
    move = f"put the queue name in {SUPPORTED} instead"
    ref = value_from.get("configMapKeyRef")
    if isinstance(ref, Mapping):
        cm, key = str(ref.get("name")), str(ref.get("key"))
        data = config_maps(cm)
        origin = ValueOrigin(CONFIG_MAP_KEY_REF, cm, key)
        if data is not None and key in data:
            return EnvEntry(var, data[key], origin)
        if ref.get("optional"):
            return None
        missing = (
            f"ConfigMap {cm} does not exist"
            if data is None
            else f"ConfigMap {cm} has no key {key!r}"
        )
        problem = (
            f"comes from valueFrom.configMapKeyRef, but {missing} (without it the pods cannot "
            "start): create the ConfigMap key or fix the reference"
        )
        return EnvEntry(var, None, origin, problem)
    for kind in ("secretKeyRef", "fieldRef", "resourceFieldRef"):
        if kind in value_from:
            return EnvEntry(var, None, None, f"comes from valueFrom.{kind}; {move}")
    kinds = ", ".join(sorted(value_from)) or "nothing"
    return EnvEntry(var, None, None, f"has a valueFrom of {kinds}; {move}")


# --- finding queues and topics (pure) ---------------------------------------------------------


def find_queue(
    queue_id: str, source: NameSource, env: ContainerEnv, *, what: str = ""
) -> FoundQueue:
    """Every variable of ``env`` naming queue ``queue_id``; ``EnvReadingError`` otherwise.

    ``what`` prefixes messages (e.g. ``MirrordWorkloadQueueRegistry shop/reg queue 'q'``)."""
    what = what or f"queue {queue_id!r}"
    if (source.env_var is None) == (source.regex_pattern is None):
        raise EnvReadingError(f"{what}: nameSource needs exactly one of envVar and regexPattern")
    if source.env_var is not None:
        entry = env.entries.get(source.env_var)
        if entry is None and source.fallback_name is not None:
            found = _found(
                env,
                source.env_var,
                source.fallback_name,
                ValueOrigin(FALLBACK_NAME),
                source.names_from_json_map,
                f"{what}: fallbackName (for absent {env.where(source.env_var)})",
            )
            return FoundQueue(queue_id, (found,))
        if entry is None:
            raise EnvReadingError(
                f"{what}: {env.where(source.env_var)} is not set{_maybe_from(env)}; add it to "
                "the container, or set fallbackName in the registry's queue"
            )
        return FoundQueue(queue_id, (_read_entry(env, entry, source.names_from_json_map, what),))
    assert source.regex_pattern is not None
    try:
        pattern = regex.compile(source.regex_pattern)
    except regex.error as e:
        raise EnvReadingError(
            f"{what}: nameSource.regexPattern {source.regex_pattern!r} does not compile: {e}; "
            "fix the regular expression"
        ) from e
    matching = [e for var, e in env.entries.items() if pattern.search(var)]
    if not matching:
        hint = (
            "; fallbackName applies only with nameSource.envVar"
            if source.fallback_name is not None
            else ""
        )
        raise EnvReadingError(
            f"{what}: no env var of container {env.container} of {env.workload} matches "
            f"nameSource.regexPattern {source.regex_pattern!r}{_maybe_from(env)}{hint}; fix the "
            "pattern or add the env vars"
        )
    return FoundQueue(
        queue_id, tuple(_read_entry(env, e, source.names_from_json_map, what) for e in matching)
    )


def find_topic(
    topic: TopicSources,
    envs: Mapping[str, ContainerEnv],
    *,
    what: str = "",
) -> FoundTopic:
    """The topic and group id of ``topic`` from the containers' environments (container
    name -> env); every source of the topic (and of the group id) must agree."""
    what = what or f"topic {topic.topic_id!r}"
    names = tuple(_read_ref(ref, envs, what, "nameSources") for ref in topic.name_sources)
    groups = tuple(_read_ref(ref, envs, what, "groupIdSources") for ref in topic.group_id_sources)
    return FoundTopic(
        topic.topic_id,
        _agreed(names, what, "topic name"),
        _agreed(groups, what, "group id"),
        names,
        groups,
    )


def _read_ref(ref: EnvVarRef, envs: Mapping[str, ContainerEnv], what: str, key: str) -> FoundVar:
    env = envs.get(ref.container)
    if env is None:
        raise EnvReadingError(
            f"{what}: {key} names container {ref.container!r}, which the workload does not "
            f"have (its containers: {', '.join(envs)}); fix directEnvVar.container"
        )
    entry = env.entries.get(ref.variable)
    if entry is None and ref.fallback is not None:
        return _found(
            env, ref.variable, ref.fallback, ValueOrigin(FALLBACK_NAME), False, f"{what}: fallback"
        )
    if entry is None:
        raise EnvReadingError(
            f"{what}: {key}: {env.where(ref.variable)} is not set{_maybe_from(env)}; add it to "
            "the container or fix directEnvVar.variable"
        )
    return _read_entry(env, entry, False, f"{what}: {key}")


def _agreed(found: Sequence[FoundVar], what: str, thing: str) -> str:
    values = list(dict.fromkeys(v.value for v in found))
    if len(values) > 1:
        listing = "; ".join(f"{v.variable} of container {v.container} = {v.value!r}" for v in found)
        raise EnvReadingError(
            f"{what}: its sources disagree on the {thing} ({listing}); every source of one "
            "topic must hold the same value: fix the env vars or split the topic id"
        )
    return values[0]


def _maybe_from(env: ContainerEnv) -> str:
    if not env.unreadable_env_from:
        return ""
    return " (it may come from " + "; ".join(env.unreadable_env_from) + ")"


def _read_entry(env: ContainerEnv, entry: EnvEntry, json_map: bool, what: str) -> FoundVar:
    if entry.value is None or entry.origin is None:
        raise EnvReadingError(f"{what}: {env.where(entry.variable)} {entry.problem}")
    return _found(env, entry.variable, entry.value, entry.origin, json_map, what)


def _found(
    env: ContainerEnv, var: str, value: str, origin: ValueOrigin, json_map: bool, what: str
) -> FoundVar:
    where = env.where(var)
    if json_map:
        names = _json_names(value, f"{what}: {where}")
    elif not value.strip():
        raise EnvReadingError(f"{what}: {where} is empty; set it to the queue name or URL")
    else:
        names = (QueueName(value),)
    return FoundVar(env.container, var, value, origin, names)


def _json_names(value: str, where: str) -> tuple[QueueName, ...]:
    fix = 'namesFromJsonMap wants a JSON object of queue names, e.g. {"orders": "orders-q"}'
    try:
        parsed = json.loads(value)
    except ValueError as e:
        raise EnvReadingError(f"{where} is not JSON ({e}); {fix}") from e
    if not isinstance(parsed, dict):
        raise EnvReadingError(f"{where} is JSON but not an object; {fix}")
    bad = [k for k, v in parsed.items() if not isinstance(v, str) or not v]
    if bad:
        raise EnvReadingError(
            f"{where}: the JSON map's values under {', '.join(map(repr, bad))} are not "
            f"non-empty strings; {fix}"
        )
    if not parsed:
        raise EnvReadingError(f"{where} is an empty JSON object; {fix}")
    return tuple(QueueName(v, json_key=k) for k, v in parsed.items())


def config_map_names(containers: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every ConfigMap the containers' ``env`` and ``envFrom`` reference, once, in order."""
    names: dict[str, None] = {}
    for c in containers:
        for item in c.get("envFrom") or ():
            ref = item.get("configMapRef") if isinstance(item, Mapping) else None
            if isinstance(ref, Mapping) and ref.get("name"):
                names[str(ref["name"])] = None
        for item in c.get("env") or ():
            value_from = item.get("valueFrom") if isinstance(item, Mapping) else None
            ref = value_from.get("configMapKeyRef") if isinstance(value_from, Mapping) else None
            if isinstance(ref, Mapping) and ref.get("name"):
                names[str(ref["name"])] = None
    return list(names)


# --- the async wrapper ----------------------------------------------------------------------


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
