"""Planning a SplitSession: validation, and what it needs, before anything is created.

``plan_session`` turns one ``SplitSession`` into a :class:`SessionPlan`, reading only::

    plan = await plan_session(kube, session, settings=settings.operator)
    for queue in plan.queues:        # one per original queue/topic: its QueueSplit, env var...
        ...

It resolves the target workload (``spec.target``: kind, name, and the apiVersion that
serves the kind), the target's registry in the session's namespace (SQS: the
``MirrordWorkloadQueueRegistry`` whose ``spec.consumer`` names the target's name, kind
and container; Kafka: the ``MirrordKafkaTopicsConsumer`` whose ``consumerName`` and
``consumerKind`` name it), every ``spec.queues[i].id`` (``"*"``: every queue of that kind
in the registry), compiles each ``messageFilter`` and ``jqFilter`` as the worker will,
and reads each queue's name or URL, topic and group id from the pod template *as it was
before any pymirror patch*: once a session's split pointed the workload's env at a
fallback, the originals live in the workload's ``pymirror.dev/original-env`` annotation
(``registry.env_patch``), and :func:`unpatched_template` puts them back before reading,
so every session plans the true originals (and the same splits) whatever is patched.

Anything a developer (or the registry's author) can fix is a :class:`SessionInvalid`
whose message starts with the session field (``spec.target``, ``spec.queues[1].id``,
``spec.queues[0].messageFilter.author``...) and ends with the fix. Nothing is created or
changed. Temporary API errors (``UnavailableError``...) pass through unchanged, so the
reconciler retries instead of failing the session.

A queue id that names several queues (``regexPattern``, ``namesFromJsonMap``) plans one
:class:`PlannedQueue` per original queue, each with its own QueueSplit. ``split_name``
names the QueueSplit of one original: a DNS-1123 label, deterministic, unique per
(queue kind, target, queue id).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from pymirror.errors import PymirrorError
from registry.config_sources import ConfigKinds
from registry.container_envs import ContainerEnv, config_map_names, container_env
from registry.env_patch import read_originals
from registry.env_reading import find_queue, find_topic
from registry.env_refs import FoundQueue, FoundTopic, NameSource, TopicSources
from registry.errors import (
    ClientConfigError,
    ConfigSourceError,
    EnvReadingError,
    ModelError,
    WorkloadError,
)
from registry.kafka_client_configs import load_client_config
from registry.models import (
    MirrordKafkaTopicsConsumer,
    MirrordWorkloadQueueRegistry,
    parse_kind,
)
from registry.objects import Kube, Obj
from registry.session_models import SessionQueue, SessionTarget, SplitSession
from registry.workloads import (
    Workload,
    WorkloadKinds,
    WorkloadRef,
    container_of,
    containers_of,
    get_workload,
)
from splitter.errors import FilterError
from splitter.filters import FilterSpec, compile_filter

QueueKind = Literal["SQS", "Kafka"]
Mode = Literal["steal", "mirror"]
ALL = "*"
"""The queue id that means every queue of its kind in the target's registry."""

_T_co = TypeVar("_T_co", covariant=True)
_M = TypeVar("_M", MirrordWorkloadQueueRegistry, MirrordKafkaTopicsConsumer)
_MAX_LABEL = 63
_HASH_LEN = 10
_NOT_LABEL = re.compile(r"[^a-z0-9]+")
_REGISTRY = "MirrordWorkloadQueueRegistry"
_CONSUMER = "MirrordKafkaTopicsConsumer"


class SessionInvalid(PymirrorError):
    """The session cannot be started as written; ``field`` is the session field at fault.

    ``str(e)`` is ``"<field>: <problem and fix>"``, what the session's ``status.message``
    shows."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class _KindsSetting(Protocol[_T_co]):
    def kinds(self) -> _T_co: ...


class PlanningSettings(Protocol):
    """What planning reads of ``pymirror.operator.settings.OperatorSettings``."""

    @property
    def sqs_splitting(self) -> bool: ...

    @property
    def kafka_splitting(self) -> bool: ...

    @property
    def workload_kinds(self) -> _KindsSetting[WorkloadKinds]: ...

    @property
    def config_kinds(self) -> _KindsSetting[ConfigKinds]: ...

    @property
    def namespace(self) -> str:
        """The operator's namespace: where the MirrordKafkaClientConfigs are."""
        ...


@dataclass(frozen=True)
class PlannedQueue:
    """One original queue (SQS) or topic (Kafka) of the session, and its QueueSplit."""

    id: str
    """The queue's id in the registry (never ``*``: that is expanded)."""
    kind: QueueKind
    split: str
    """The QueueSplit's name (in the operator's namespace): :func:`split_name`."""
    original: str
    """The queue name or URL in the form the env var holds it; for Kafka, the topic."""
    env_var: str
    """The env var of ``container`` that holds ``original`` (the one the patch changes)."""
    container: str
    message_filter: dict[str, str] | None
    jq_filter: str | None
    mode: Mode
    group_id: str | None
    """Kafka: the workload's consumer group id (the worker consumes with it)."""
    group_id_env_var: str | None
    client_config: str | None
    """Kafka: the MirrordKafkaClientConfig (operator namespace) the worker connects with."""
    json_key: str | None = None
    """``namesFromJsonMap``: the key of ``original`` in the env var's JSON object."""
    also_env_vars: tuple[tuple[str, str], ...] = ()
    """Other ``(container, env var)`` pairs holding the same original (more than one
    ``nameSources`` entry of a topic, or a ``regexPattern`` matching two vars): a patch
    must change them too."""
    tags: Mapping[str, str] | None = None
    """SQS: the registry queue's ``tags`` (put on every temporary queue)."""
    restart_timeout: float | None = None
    """The registry's ``workloadRestartTimeout`` / ``consumerRestartTimeout`` in seconds;
    None: the operator's ``workload_restart_timeout``."""


@dataclass(frozen=True)
class SessionPlan:
    """Everything a session needs, resolved and checked; nothing exists yet."""

    namespace: str
    name: str
    workload: Workload
    queues: list[PlannedQueue]
    kinds: WorkloadKinds = field(default_factory=WorkloadKinds)
    """Where the workload kinds are served for this session (``spec.target.apiVersion``
    applied): what env patching and rollout checks of ``workload`` must use."""

    @property
    def session_ref(self) -> str:
        """``<namespace>/<name>``, the session's key in QueueSplit routes and status."""
        return f"{self.namespace}/{self.name}"


def split_name(target: WorkloadRef, queue_id: str, kind: QueueKind = "SQS") -> str:
    """The QueueSplit name of ``queue_id`` of ``target``: ``<name>-<queue id>-<hash>``.

    A DNS-1123 label (lowercase, ``[a-z0-9-]``, at most 63 characters); the readable part
    is truncated to fit. The hash (10 hex digits of SHA-256) covers the kind, the target's
    kind, namespace and name, and the queue id exactly as written, so pairs whose readable
    parts agree (another namespace, ``a-b``/``c`` and ``a``/``b-c``, ``Q``/``q``, a long
    shared prefix) still get different names."""
    key = "\0".join((kind, target.kind, target.namespace, target.name, queue_id))
    digest = hashlib.sha256(key.encode()).hexdigest()[:_HASH_LEN]
    readable = _NOT_LABEL.sub("-", f"{target.name}-{queue_id}".lower()).strip("-")
    readable = readable[: _MAX_LABEL - 1 - _HASH_LEN].rstrip("-")
    return f"{readable}-{digest}" if readable else digest


def unpatched_template(workload: Workload) -> Obj:
    """``workload``'s pod template with every env var a pymirror patch changed put back as
    it was: the originals recorded in ``pymirror.dev/original-env`` on the template's owner
    (owner -> container -> var -> env item without ``name``, or null: the patch added the
    var, so it goes). Every owner records the same true original of a var, so any record
    will do. ``EnvAnnotationError`` (a ``WorkloadError``) when the annotation is not in
    that format. The workload's own objects are not changed."""
    template = copy.deepcopy(workload.template)
    recorded = read_originals(workload.template_owner_obj, workload.label)
    originals: dict[str, dict[str, Obj | None]] = {}
    for containers in recorded.values():
        for container, env in containers.items():
            for var, item in env.items():
                originals.setdefault(container, {}).setdefault(var, item)
    for container in (template.get("spec") or {}).get("containers") or ():
        put_back = originals.get(str(container.get("name")), {})
        if put_back:
            container["env"] = _put_back(list(container.get("env") or ()), put_back)
    return template


def _put_back(env: list[Obj], originals: Mapping[str, Obj | None]) -> list[Obj]:
    """``env`` with each var of ``originals`` as it was (in its place; null: removed), as
    ``registry.env_patch.restore_env`` puts it back."""
    out = copy.deepcopy(env)
    for var, original in originals.items():
        places = [i for i, item in enumerate(out) if item.get("name") == var]
        if original is None:
            if places:
                del out[places[-1]]
        elif places:
            out[places[-1]] = {"name": var, **copy.deepcopy(original)}
        else:
            out.append({"name": var, **copy.deepcopy(original)})
    return out


def target_kinds(target: SessionTarget, kinds: WorkloadKinds) -> WorkloadKinds:
    """``kinds`` with the target's kind served at ``spec.target.apiVersion``."""
    try:
        return kinds.with_api_versions(**{kinds.canonical(target.kind): target.api_version})
    except WorkloadError as e:
        raise SessionInvalid(
            "spec.target.apiVersion", f"{e}; use the workload's apiVersion, e.g. apps/v1"
        ) from e


async def plan_session(
    kube: Kube, session: SplitSession, *, settings: PlanningSettings
) -> SessionPlan:
    """Resolve and check ``session``; ``SessionInvalid`` naming the first bad field."""
    namespace, name = session.metadata.namespace, session.metadata.name
    if not namespace or not name:
        raise SessionInvalid(
            "metadata", "the SplitSession has no namespace or name; plan it as read from the API"
        )
    target = session.spec.target
    kinds = target_kinds(target, settings.workload_kinds.kinds())
    workload = await _target_workload(kube, kinds, namespace, target)
    planner = _Planner(kube, namespace, workload, target, kinds, settings)
    for index, queue in enumerate(session.spec.queues):
        await planner.add(index, queue)
    return SessionPlan(namespace, name, workload, planner.planned, kinds)


async def _target_workload(
    kube: Kube, kinds: WorkloadKinds, namespace: str, target: SessionTarget
) -> Workload:
    try:
        workload = await get_workload(kube, kinds, namespace, target.kind, target.name)
    except WorkloadError as e:
        raise SessionInvalid("spec.target", f"{e}") from e
    if target.container is not None:
        try:
            workload.container(target.container)
        except WorkloadError as e:
            raise SessionInvalid("spec.target.container", f"{e}") from e
    return workload


def _noun(kind: QueueKind) -> str:
    return "SQS queue" if kind == "SQS" else "Kafka topic"


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names) or "none"


def _check_filter(index: int, queue: SessionQueue) -> None:
    """Compile the filter as the worker will: the message filter, then the jq program."""
    where = f"spec.queues[{index}]"
    try:
        compile_filter(
            FilterSpec(queue.message_filter or {}, None, queue.mode),
            where=f"{where}.messageFilter",
        )
        if queue.jq_filter is not None:
            compile_filter(FilterSpec({}, queue.jq_filter, queue.mode), where=f"{where}.jqFilter")
    except FilterError as e:
        raise SessionInvalid(*_split_message(str(e))) from e


def _split_message(message: str) -> tuple[str, str]:
    """A ``FilterError`` message (``<where>: <problem>``) as SessionInvalid's two parts."""
    field_, _, problem = message.partition(": ")
    return field_, problem


class _Planner:
    """The queues planned so far, and the registries read (once per plan)."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        workload: Workload,
        target: SessionTarget,
        kinds: WorkloadKinds,
        settings: PlanningSettings,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.workload = workload
        self.target = target
        self.kinds = kinds
        self.config = settings.config_kinds.kinds()
        self.operator_namespace = settings.namespace
        self._client_configs: dict[str, dict[str, str] | ClientConfigError] = {}
        self.enabled = {"SQS": settings.sqs_splitting, "Kafka": settings.kafka_splitting}
        self.planned: list[PlannedQueue] = []
        self._claimed: dict[tuple[str, str], tuple[int, str]] = {}
        self._originals: dict[tuple[str, str], tuple[int, str]] = {}
        self._registries: list[Obj] | None = None
        self._consumers: list[Obj] | None = None
        self._unpatched: Obj | None = None

    async def add(self, index: int, queue: SessionQueue) -> None:
        if not self.enabled[queue.kind]:
            setting = "SQS_SPLITTING" if queue.kind == "SQS" else "KAFKA_SPLITTING"
            raise SessionInvalid(
                f"spec.queues[{index}].kind",
                f"{queue.kind} splitting is turned off in this operator "
                f"(PYMIRROR_OPERATOR__{setting}=false); remove the queue from the session, "
                "or ask the cluster's admin to turn it on",
            )
        _check_filter(index, queue)
        if queue.kind == "SQS":
            planned = await self._sqs(index, queue)
        else:
            planned = await self._kafka(index, queue)
        for p in planned:
            self._claim(index, queue, p)
        self.planned.extend(planned)

    def _claim(self, index: int, queue: SessionQueue, planned: PlannedQueue) -> None:
        """A queue id, and an original queue, is in the session once."""
        how = 'id "*"' if queue.id == ALL else f"id {queue.id!r}"
        earlier = self._claimed.get((planned.kind, planned.id))
        if earlier is not None and earlier[0] != index:
            raise SessionInvalid(
                f"spec.queues[{index}].id",
                f"{_noun(planned.kind)} {planned.id!r} is already in the session as "
                f"spec.queues[{earlier[0]}] ({earlier[1]}); name each queue once: remove one "
                "of the two entries",
            )
        self._claimed[(planned.kind, planned.id)] = (index, how)
        other = self._originals.get((planned.kind, planned.original))
        if other is not None and other[1] != planned.id:
            raise SessionInvalid(
                f"spec.queues[{index}].id",
                f"{_noun(planned.kind)} {planned.id!r} is {planned.original!r}, which "
                f"{other[1]!r} (spec.queues[{other[0]}]) names too; a queue or topic is split "
                "once per session: keep one of the ids in the session, or fix the registry",
            )
        self._originals[(planned.kind, planned.original)] = (index, planned.id)

    # --- SQS --------------------------------------------------------------------------------

    async def _sqs(self, index: int, queue: SessionQueue) -> list[PlannedQueue]:
        registry = await self._queue_registry(index)
        what = f"{_REGISTRY} {self.namespace}/{registry.metadata.name}"
        queues = registry.spec.queues
        sqs_ids = sorted(qid for qid, d in queues.items() if d.SUPPORTED)
        field_ = f"spec.queues[{index}].id"
        if queue.id == ALL:
            if not sqs_ids:
                raise SessionInvalid(
                    field_,
                    f'"*" matches no SQS queue: {what} has none (its queues: '
                    f"{_listing(list(queues))}); add an SQS queue to the registry or remove "
                    "this entry",
                )
            ids = sqs_ids
        elif queue.id not in queues:
            raise SessionInvalid(
                field_,
                f"{queue.id!r} is not a queue of {what} (it has: {_listing(sqs_ids)}); "
                'use one of them or "*"',
            )
        elif not queues[queue.id].SUPPORTED:
            raise SessionInvalid(
                field_,
                f"queue {queue.id!r} of {what} has queueType {queues[queue.id].queue_type!r}, "
                "which pymirror does not split (only SQS); remove it from the session",
            )
        else:
            ids = [queue.id]
        try:
            container, found = await self._read_queues(registry, ids, what)
        except (EnvReadingError, WorkloadError, ConfigSourceError) as e:
            raise SessionInvalid(f"spec.queues[{index}]", f"{e}") from e
        timeout = registry.spec.workload_restart_timeout
        return [
            p
            for qid in ids
            for p in self._sqs_queues(queue, found[qid], container, queues[qid].tags, timeout)
        ]

    async def _read_queues(
        self, registry: MirrordWorkloadQueueRegistry, ids: list[str], what: str
    ) -> tuple[str, dict[str, FoundQueue]]:
        """The registry's container and its queues ``ids``, read from the unpatched env."""
        spec = _wire(registry)["spec"]
        chosen = container_of(self._template(), spec["consumer"].get("container"), self._label)
        env = (await self._envs([chosen]))[str(chosen.get("name"))]
        found = {}
        for qid in ids:
            where = f"{what} queue {qid!r}"
            source = NameSource.from_wire(spec["queues"][qid], where)
            found[qid] = find_queue(qid, source, env, what=where)
        return env.container, found

    def _template(self) -> Obj:
        """The target's pod template before any pymirror patch (read once per plan)."""
        if self._unpatched is None:
            self._unpatched = unpatched_template(self.workload)
        return self._unpatched

    @property
    def _label(self) -> str:
        return self.workload.label

    async def _envs(self, containers: list[Obj]) -> dict[str, ContainerEnv]:
        """Each container's effective env (name -> env), its ConfigMaps read from the API."""
        config_maps = self.config.sources(self.kube).config_maps
        data = {
            name: await config_maps.optional_data(self.namespace, name)
            for name in config_map_names(containers)
        }
        return {
            str(c.get("name")): container_env(c, data.get, workload=self._label) for c in containers
        }

    def _sqs_queues(
        self,
        queue: SessionQueue,
        found: FoundQueue,
        container: str,
        tags: Mapping[str, str] | None,
        timeout: int | None,
    ) -> list[PlannedQueue]:
        """One PlannedQueue per distinct original of a queue id."""
        by_original: dict[str, list[tuple[str, str | None]]] = {}
        for var in found.vars:
            for name in var.names:
                by_original.setdefault(name.name, []).append((var.variable, name.json_key))
        several = len(by_original) > 1
        planned = []
        for original, holders in by_original.items():
            (env_var, json_key), rest = holders[0], holders[1:]
            key = f"{found.queue_id}::{original}" if several else found.queue_id
            planned.append(
                PlannedQueue(
                    id=found.queue_id,
                    kind="SQS",
                    split=split_name(self.workload.ref, key, "SQS"),
                    original=original,
                    env_var=env_var,
                    container=container,
                    message_filter=queue.message_filter,
                    jq_filter=queue.jq_filter,
                    mode=queue.mode,
                    group_id=None,
                    group_id_env_var=None,
                    client_config=None,
                    json_key=json_key,
                    also_env_vars=tuple(dict.fromkeys((container, v) for v, _ in rest)),
                    tags=dict(tags) if tags else None,
                    restart_timeout=float(timeout) if timeout is not None else None,
                )
            )
        return planned

    async def _queue_registry(self, index: int) -> MirrordWorkloadQueueRegistry:
        """The one registry whose ``spec.consumer`` is the target (name, kind, container)."""
        if self._registries is None:
            listed = await self.kube.objects(
                MirrordWorkloadQueueRegistry.RESOURCE, self.namespace
            ).list()
            self._registries = listed.items
        first = str(self.workload.container(None).get("name"))
        wanted = self.target.container or first
        naming, matching = [], []
        for obj in self._registries:
            consumer = (obj.get("spec") or {}).get("consumer") or {}
            if consumer.get("name") != self.target.name:
                continue
            if consumer.get("workloadType") != self.target.kind:
                continue
            container = consumer.get("container") or first
            naming.append(f"{_name(obj)} (container {container})")
            if container == wanted:
                matching.append(obj)
        where = f"spec.queues[{index}]"
        target = f"{self.target.kind} {self.target.name}"
        if not matching:
            others = f" (for other containers: {', '.join(naming)})" if naming else ""
            raise SessionInvalid(
                where,
                f"no {_REGISTRY} in namespace {self.namespace} has spec.consumer {target}, "
                f"container {wanted}{others}; create a registry for the workload, or fix "
                "spec.target (kind, name, container)",
            )
        if len(matching) > 1:
            raise SessionInvalid(
                where,
                f"{len(matching)} {_REGISTRY}s in namespace {self.namespace} have "
                f"spec.consumer {target}, container {wanted} "
                f"({', '.join(sorted(_name(o) for o in matching))}); keep one of them",
            )
        return self._parsed(where, matching[0], _REGISTRY, MirrordWorkloadQueueRegistry)

    # --- Kafka ------------------------------------------------------------------------------

    async def _kafka(self, index: int, queue: SessionQueue) -> list[PlannedQueue]:
        consumers = await self._topic_consumers(index)
        owners: dict[str, list[MirrordKafkaTopicsConsumer]] = {}
        for consumer in consumers:
            for topic in consumer.spec.topics:
                owners.setdefault(topic.id, []).append(consumer)
        field_ = f"spec.queues[{index}].id"
        what = ", ".join(f"{self.namespace}/{c.metadata.name}" for c in consumers)
        what = f"{_CONSUMER} {what}"
        if queue.id != ALL and queue.id not in owners:
            raise SessionInvalid(
                field_,
                f"{queue.id!r} is not a topic of {what} (it has: {_listing(list(owners))}); "
                'use one of them or "*"',
            )
        ids = list(owners) if queue.id == ALL else [queue.id]
        if not ids:
            raise SessionInvalid(
                field_, f'"*" matches no topic: {what} has none; add a topic or remove this entry'
            )
        for tid in ids:
            if len(owners[tid]) > 1:
                names = ", ".join(f"{self.namespace}/{c.metadata.name}" for c in owners[tid])
                raise SessionInvalid(
                    field_,
                    f"topic {tid!r} is defined by {len(owners[tid])} {_CONSUMER}s of the "
                    f"target ({names}); keep it in one of them",
                )
        planned = []
        for consumer in consumers:
            mine = [t for t in ids if owners[t][0] is consumer]
            if mine:
                planned += await self._consumer_topics(index, queue, consumer, mine)
        order = {tid: i for i, tid in enumerate(ids)}
        return sorted(planned, key=lambda p: order[p.id])

    async def _consumer_topics(
        self,
        index: int,
        queue: SessionQueue,
        consumer: MirrordKafkaTopicsConsumer,
        ids: list[str],
    ) -> list[PlannedQueue]:
        try:
            found = await self._read_topics(consumer, ids)
        except (EnvReadingError, WorkloadError, ConfigSourceError) as e:
            raise SessionInvalid(f"spec.queues[{index}]", f"{e}") from e
        configs = {t.id: t.client_config for t in consumer.spec.topics}
        for tid in ids:
            await self._check_client_config(index, consumer, tid, configs[tid])
        timeout = consumer.spec.consumer_restart_timeout
        return [self._kafka_queue(queue, found[tid], configs[tid], timeout) for tid in ids]

    async def _check_client_config(
        self, index: int, consumer: MirrordKafkaTopicsConsumer, topic_id: str, name: str
    ) -> None:
        """``SessionInvalid`` unless client config ``name`` resolves (its parents, their
        Secrets) to properties with ``bootstrap.servers``: a topic is never created, nor
        a workload patched, for a config that cannot work."""
        if name not in self._client_configs:
            try:
                self._client_configs[name] = await load_client_config(
                    self.kube, self.operator_namespace, name, config=self.config
                )
            except ClientConfigError as e:
                self._client_configs[name] = e
        resolved = self._client_configs[name]
        field_ = f"spec.queues[{index}]"
        head = (
            f"topic {topic_id!r} of {_CONSUMER} {self.namespace}/{consumer.metadata.name}: "
            f"clientConfig {name!r}"
        )
        if isinstance(resolved, ClientConfigError):
            raise SessionInvalid(field_, f"{head}: {resolved}")
        if "bootstrap.servers" not in resolved and "metadata.broker.list" not in resolved:
            raise SessionInvalid(
                field_,
                f"{head} resolves to no bootstrap.servers; set it in MirrordKafkaClientConfig "
                f"{self.operator_namespace}/{name} (or a parent)",
            )

    async def _read_topics(
        self, consumer: MirrordKafkaTopicsConsumer, ids: list[str]
    ) -> dict[str, FoundTopic]:
        """The topics ``ids`` of ``consumer``, read from the unpatched env of every container."""
        what = f"{_CONSUMER} {self.namespace}/{consumer.metadata.name}"
        topics = {str(t.get("id")): t for t in _wire(consumer)["spec"].get("topics") or ()}
        envs = await self._envs(containers_of(self._template(), self._label))
        return {
            tid: find_topic(
                TopicSources.from_wire(topics[tid], what), envs, what=f"{what} topic {tid!r}"
            )
            for tid in ids
        }

    def _kafka_queue(
        self, queue: SessionQueue, found: FoundTopic, client_config: str, timeout: int | None
    ) -> PlannedQueue:
        first, rest = found.name_vars[0], found.name_vars[1:]
        group_var = found.group_id_vars[0] if found.group_id_vars else None
        return PlannedQueue(
            id=found.topic_id,
            kind="Kafka",
            split=split_name(self.workload.ref, found.topic_id, "Kafka"),
            original=found.topic,
            env_var=first.variable,
            container=first.container,
            message_filter=queue.message_filter,
            jq_filter=queue.jq_filter,
            mode=queue.mode,
            group_id=found.group_id,
            group_id_env_var=group_var.variable if group_var is not None else None,
            client_config=client_config,
            also_env_vars=tuple(dict.fromkeys((v.container, v.variable) for v in rest)),
            restart_timeout=float(timeout) if timeout is not None else None,
        )

    async def _topic_consumers(self, index: int) -> list[MirrordKafkaTopicsConsumer]:
        """The topics consumers whose ``consumerKind``/``consumerName`` are the target."""
        if self._consumers is None:
            listed = await self.kube.objects(
                MirrordKafkaTopicsConsumer.RESOURCE, self.namespace
            ).list()
            self._consumers = listed.items
        where = f"spec.queues[{index}]"
        mine = [
            obj
            for obj in self._consumers
            if (obj.get("spec") or {}).get("consumerName") == self.target.name
            and (obj.get("spec") or {}).get("consumerKind") == self.target.kind
        ]
        if not mine:
            raise SessionInvalid(
                where,
                f"no {_CONSUMER} in namespace {self.namespace} has consumerKind "
                f"{self.target.kind} and consumerName {self.target.name}; create one for the "
                "workload, or fix spec.target (kind, name)",
            )
        mine.sort(key=_name)
        return [self._parsed(where, o, _CONSUMER, MirrordKafkaTopicsConsumer) for o in mine]

    def _parsed(self, where: str, obj: Obj, kind: str, model: type[_M]) -> _M:
        try:
            return parse_kind(obj, {kind: model})
        except ModelError as e:
            raise SessionInvalid(where, f"{e}; fix {kind} {self.namespace}/{_name(obj)}") from e


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name"))


def _wire(model: MirrordWorkloadQueueRegistry | MirrordKafkaTopicsConsumer) -> dict[str, Any]:
    """The object as JSON with wire names (fields the model does not know included)."""
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)
