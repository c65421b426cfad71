"""The QueueSplit side of the operator: sessions join and leave splits, splits hand back.

One ``QueueSplit`` (operator namespace, named by ``planning.split_name``) exists per
original queue of a target while it is split. ``Splits`` drives it, level-triggered:
every method looks at the objects as they are now, takes the steps still missing and
says how far it got, so an operator killed between any two steps reaches the same end
state by calling it again::

    splits = Splits(kube, settings)                  # the root pymirror Settings
    joined = await splits.join(plan, queue, sequence)  # until joined.ready
    done = await splits.leave(queue.split, plan.session_ref)  # until True
    await splits.reconcile_split(name)               # on every QueueSplit event

``join`` (DESIGN §10, Provisioning): find the QueueSplit, or create it under its fixed
name (a 409 reads it: the API server's optimistic concurrency makes two sessions joining
at once agree on one split); record the session's temporary queue in
``status.temporaryResources`` (``created: false``), create it, mark it created; the
same for the fallback (whichever session records it first; there is one record per
role, written under the object's resourceVersion); set ``spec.fallback``; patch the
workload's env to the fallback (``registry.env_patch``, originals saved on the workload)
and wait for its rollout (``status.workload``, the ``WorkloadPatched`` condition: its
``lastTransitionTime`` starts ``workloadRestartTimeout``); record and ensure the worker
Deployment; then add or refresh the session's route. Ready once the worker acknowledged
the routes (``status.appliedGeneration >= metadata.generation``). A split handing back
refuses new sessions until it is gone; the original is always the split's
``spec.original``, whatever the session's plan read from an env already patched.

``leave`` removes the session's route (the last one sets ``spec.handBack``) and is True
once the session's end is finished: the worker listed it in ``status.endedSessions``,
or never routed to its queue (no worker yet, or the worker applied a spec without the
route and the queue lacks the ``routed`` tag), and its recorded queue is gone.

``reconcile_split`` finishes a hand-back once the worker reports ``handBack.phase:
Done`` (or no worker was ever recorded): restore the env exactly, wait for the rollout,
delete what is still recorded (tag-checked), the worker Deployment, and the QueueSplit.

Kafka topics go the same way (pymirror/operator/kafka_splits.py does the broker's
part): the QueueSplit also carries ``spec.groupId`` and ``spec.clientConfig`` (the
``MirrordKafkaClientConfig`` the operator and the worker connect with); the temporary
topics are named by ``kafka.topic_format`` and shaped like the original; the env patch
changes the topic's env vars to the fallback and leaves the group id alone (the workload
reads the fallback with its own group, whose lag there the hand-back waits for); a
route's destination is the session's topic. ``leave`` takes "never routed" to mean no
worker was made, or the worker applied a spec without the route and the session's topic
never held a record.

Nothing is deleted that pymirror did not create: every SQS delete goes through
``splitter.sqs.queues.delete_temporary_queue`` (bookkeeping tag checked), and a Kafka
topic is deleted only if it is recorded and the topic format gives exactly its name for
the split's original and the record's role; anything else is left alone and logged.

Connections: one SQS client for every call (``shared_sqs``, the operator's wiring), and
one Kafka admin client per Kafka split (:class:`_KafkaAdmins`): opened on the split's
first join/leave/hand-back, reused by the next ones as long as the split's client config
resolves to the same properties (an edited config gets a new one, the old is closed),
closed once the split is gone (its hand-back deleted it, or a call found it missing) or
by :meth:`Splits.close`, and dropped after a ``KafkaUnavailableError`` (a broker away:
the next call opens a new one). Before, every join and leave opened its own admin client,
a new connection (and its metadata requests) to the brokers each time.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from pymirror.errors import PymirrorError
from pymirror.operator.fault_points import fault_point
from pymirror.operator.kafka_splits import KafkaTopics, client_properties, operator_clients
from pymirror.operator.planning import PlannedQueue, SessionPlan
from pymirror.operator.split_writes import SplitWriter
from pymirror.operator.worker_deployments import delete_worker, ensure_worker, worker_name
from pymirror.settings import Settings
from registry.env_patch import (
    patch_env,
    read_originals,
    restore_env,
    rollout_status,
    wait_rolled_out,
)
from registry.errors import AlreadyExistsError, NotFoundError, RolloutTimeoutError
from registry.objects import Kube, Obj, Objects
from registry.session_models import API_VERSION, QueueSplit
from registry.workloads import Workload, WorkloadKinds, WorkloadRef, get_workload
from splitter.errors import KafkaUnavailableError, SqsQueueMissingError
from splitter.kafka.admin import KafkaAdmin
from splitter.kafka.clients import KafkaClients
from splitter.naming import RANDOM_DIGITS
from splitter.sqs.client import SqsClient, SqsEndpoint, connect
from splitter.sqs.queue_names import queue_name
from splitter.sqs.queues import (
    QueuePlan,
    check_owned,
    create_planned_queue,
    delete_temporary_queue,
    plan_temporary_queue,
)
from splitter.sqs.tags import CREATED_BY, TAG_CREATED_BY, TAG_ROUTED

log = structlog.get_logger("pymirror.operator.splits")

#: Writes of a status guarded by its resourceVersion before giving up.
ATTEMPTS = 8
#: The condition whose lastTransitionTime is when the workload's env was patched.
PATCHED = "WorkloadPatched"
_DIGITS = re.compile(rf"(?=([0-9]{{{RANDOM_DIGITS}}}))")


class SplitError(PymirrorError):
    """A split cannot be joined, left or handed back as it is; the message says why and the fix."""


@dataclass(frozen=True)
class Joined:
    """How far ``Splits.join`` got for one queue of a session."""

    ready: bool
    step: str
    """What it waits for now (``"ready"`` once ready)."""
    temporary: str | None
    """The session's temporary queue (name), once created."""
    value: str | None
    """What the local process's env var gets: the temporary queue in the original's form."""
    polled: bool = False
    """What it waits for shows in no QueueSplit change (a rollout, an env patched with no
    split): look again soon. Else it waits for a QueueSplit change (the worker's
    acknowledgment, the end of a hand-back), whose event enqueues the session."""


# --- pure helpers -----------------------------------------------------------------------------


def in_form(original: str, name: str, url: str) -> str:
    """``url`` when the original is a URL, else ``name`` (a value keeps the original's form)."""
    return url if "://" in original else name


def records(obj: Mapping[str, Any]) -> list[Obj]:
    """``status.temporaryResources`` of a QueueSplit object."""
    return [dict(r) for r in (obj.get("status") or {}).get("temporaryResources") or ()]


def record_of(obj: Mapping[str, Any], session: str | None) -> Obj | None:
    """The recorded fallback (``session`` None) or the recorded queue of ``session``."""
    role = "fallback" if session is None else "session"
    return next(
        (r for r in records(obj) if r.get("role") == role and r.get("session") == session), None
    )


def route_of(obj: Mapping[str, Any], session: str) -> Obj | None:
    routes = (obj.get("spec") or {}).get("routes") or ()
    return next((dict(r) for r in routes if r.get("session") == session), None)


def applied(obj: Mapping[str, Any]) -> bool:
    """The worker acknowledged the split's current spec."""
    done = (obj.get("status") or {}).get("appliedGeneration")
    generation = (obj.get("metadata") or {}).get("generation") or 0
    return isinstance(done, int) and done >= generation


def handing_back(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("spec") or {}).get("handBack")) or bool(
        (obj.get("metadata") or {}).get("deletionTimestamp")
    )


def digits_of(name: str, render: Callable[[str], str]) -> str:
    """The random digits ``render`` turns into ``name`` (a recorded name planned again)."""
    for candidate in _DIGITS.findall(name):
        if render(candidate) == name:
            return str(candidate)
    raise SplitError(
        f"recorded temporary queue {name!r} does not fit the queue format for this split "
        "(was sqs.queue_format changed while the split ran?); restore the format, or end the "
        "split's sessions"
    )


def split_body(plan: SessionPlan, queue: PlannedQueue, namespace: str) -> Obj:
    """A new QueueSplit for ``queue`` of ``plan`` (no routes, no fallback yet)."""
    ref = plan.workload.ref
    target: Obj = {
        "apiVersion": plan.workload.obj.get("apiVersion"),
        "kind": ref.kind,
        "name": ref.name,
        "namespace": ref.namespace,
        "container": queue.container,
        "envVar": queue.env_var,
    }
    spec: Obj = {
        "kind": queue.kind,
        "queueId": queue.id,
        "original": queue.original,
        "target": target,
    }
    if queue.kind == "Kafka":
        spec["groupId"] = kafka_group_id(queue)
        spec["clientConfig"] = kafka_client_config(queue)
    return {
        "apiVersion": API_VERSION,
        "kind": "QueueSplit",
        "metadata": {"name": queue.split, "namespace": namespace},
        "spec": spec,
    }


def kafka_group_id(queue: PlannedQueue) -> str:
    if not queue.group_id:
        raise SplitError(
            f"Kafka topic {queue.id!r} has no consumer group id: the worker consumes the "
            "original with the workload's group; add groupIdSources to the topic in its "
            "MirrordKafkaTopicsConsumer"
        )
    return queue.group_id


def kafka_client_config(queue: PlannedQueue) -> str:
    if not queue.client_config:
        raise SplitError(
            f"Kafka topic {queue.id!r} names no client config; set clientConfig of the topic "
            "in its MirrordKafkaTopicsConsumer (a MirrordKafkaClientConfig in the operator's "
            "namespace)"
        )
    return queue.client_config


def route_body(session: str, sequence: int, destination: str, queue: PlannedQueue) -> Obj:
    route: Obj = {
        "session": session,
        "sequence": sequence,
        "destination": destination,
        "mode": queue.mode,
    }
    if queue.message_filter is not None:
        route["messageFilter"] = dict(queue.message_filter)
    if queue.jq_filter is not None:
        route["jqFilter"] = queue.jq_filter
    return route


def with_condition(obj: Mapping[str, Any], state: bool, reason: str, message: str) -> list[Obj]:
    """``status.conditions`` with ``WorkloadPatched`` set; its time moves when its status does."""
    wanted = "True" if state else "False"
    conditions = [dict(c) for c in (obj.get("status") or {}).get("conditions") or ()]
    before = next((c for c in conditions if c.get("type") == PATCHED), None)
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if before is not None and before.get("status") == wanted and before.get("lastTransitionTime"):
        since = str(before["lastTransitionTime"])
    new = {
        "type": PATCHED,
        "status": wanted,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    return [*(c for c in conditions if c.get("type") != PATCHED), new]


def patched_since(obj: Mapping[str, Any]) -> datetime | None:
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c.get("type") == PATCHED and c.get("lastTransitionTime"):
            text = str(c["lastTransitionTime"]).replace("Z", "+00:00")
            return datetime.fromisoformat(text)
    return None


def env_value(workload: Workload, container: str, var: str) -> str | None:
    """The literal value of ``var`` in ``container`` of the pod template (None: not literal)."""
    for item in reversed(workload.container(container).get("env") or ()):
        if item.get("name") == var:
            value = item.get("value")
            return value if isinstance(value, str) else None
    return None


def json_value(current: str | None, key: str, value: str, what: str) -> str:
    """``current`` (a JSON object of queue names) with ``key`` set to ``value``."""
    try:
        names = json.loads(current or "")
    except ValueError:
        names = None
    if not isinstance(names, dict):
        raise SplitError(
            f"{what} does not hold a literal JSON object (namesFromJsonMap); pymirror patches "
            "only a literal value there: set the JSON in the env var's value"
        )
    names[key] = value
    return json.dumps(names, separators=(",", ":"))


# --- the reconciler ---------------------------------------------------------------------------


class _Side(Protocol):
    """One broker's part of a split: its temporary queues/topics (SQS or Kafka)."""

    def complete(self, record: Obj) -> bool:
        """A created record has all it needs (SQS: its URL)."""
        ...

    async def original_is_temporary(self, original: str, what: str) -> bool:
        """The original is itself one of pymirror's temporary queues/topics (an env still
        patched); raises naming ``what`` when it does not exist."""
        ...

    async def new_name(self, original: str, session: str | None) -> str: ...

    async def create(self, original: str, session: str | None, name: str) -> Obj:
        """Create recorded ``name``; the fields to add to its record."""
        ...

    def address(self, record: Obj) -> str:
        """What a route or the worker names it by (SQS: its URL; Kafka: the topic)."""
        ...

    async def unrouted(self, record: Obj) -> bool:
        """The worker, which applied a spec without the session's route, never routed there."""
        ...

    async def delete(self, split: str, record: Obj) -> None:
        """Delete a recorded queue/topic if pymirror made it (else log and leave it)."""
        ...


@dataclass
class _Admin:
    """One cached Kafka admin client (see :class:`_KafkaAdmins`)."""

    properties: dict[str, str]
    clients: KafkaClients
    admin: KafkaAdmin
    users: int = 0
    retired: bool = False

    async def close(self) -> None:
        try:
            await self.admin.__aexit__(None, None, None)
        except Exception as e:  # closing a client of a broker away
            log.info("kafka admin client closed with an error", error=str(e))


class _KafkaAdmins:
    """One Kafka admin client per split (see the module docstring): ``use`` lends it,
    ``forget`` closes a split's, ``close`` all; ``opened`` counts the clients opened."""

    def __init__(self) -> None:
        self._admins: dict[str, _Admin] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        """One per split: a slow connect to one split's brokers holds up no other split."""
        self.opened = 0

    def _lock(self, split: str) -> asyncio.Lock:
        return self._locks.setdefault(split, asyncio.Lock())

    @asynccontextmanager
    async def use(self, split: str, properties: dict[str, str]) -> AsyncIterator[_Admin]:
        async with self._lock(split):
            entry = self._admins.get(split)
            if entry is not None and entry.properties != properties:
                await self._retire(split, entry)  # the client config changed
                entry = None
            if entry is None:
                clients = operator_clients(properties)
                admin = await clients.admin().__aenter__()
                self.opened += 1
                entry = self._admins[split] = _Admin(properties, clients, admin)
                log.info("kafka admin client opened", split=split)
            entry.users += 1
        try:
            yield entry
        except KafkaUnavailableError:
            async with self._lock(split):
                if self._admins.get(split) is entry:
                    await self._retire(split, entry)  # the next call opens a new one
            raise
        finally:
            entry.users -= 1
            if entry.retired and entry.users == 0:
                await entry.close()

    async def _retire(self, split: str, entry: _Admin) -> None:
        """Drop ``entry`` from the cache; closed now, or by its last user."""
        if self._admins.get(split) is entry:
            del self._admins[split]
        if not entry.retired:
            entry.retired = True
            if entry.users == 0:
                await entry.close()

    async def forget(self, split: str) -> None:
        """Close the split's admin client (the split is gone), if one is open."""
        async with self._lock(split):
            entry = self._admins.get(split)
            if entry is not None:
                await self._retire(split, entry)
                log.info("kafka admin client closed: the split is gone", split=split)

    async def close(self) -> None:
        for split in list(self._admins):
            async with self._lock(split):
                entry = self._admins.get(split)
                if entry is not None:
                    await self._retire(split, entry)

    def __len__(self) -> int:
        return len(self._admins)


class Splits:
    """Joins, leaves and hands back QueueSplits (see the module docstring)."""

    def __init__(self, kube: Kube, settings: Settings, *, shared_sqs: bool = False) -> None:
        self.kube = kube
        self.settings = settings
        self.operator = settings.operator
        self.name_format = settings.sqs.name_format
        self.endpoint = SqsEndpoint(url=settings.sqs.endpoint_url, region=settings.sqs.region)
        self.objects: Objects = kube.objects(QueueSplit.RESOURCE, self.operator.namespace)
        self.writer = SplitWriter(self.objects, ATTEMPTS)
        """Every write to a QueueSplit goes through it: one at a time per split, batched."""
        self.shared_sqs = shared_sqs
        """One SQS client for every call (opened on first use, closed by :meth:`close`)
        instead of one per call: making a client loads botocore's service model and an
        SSL context, about half of the operator's CPU when each join and leave made one."""
        self._sqs_client: SqsClient | None = None
        self._sqs_stack = AsyncExitStack()
        self._sqs_lock = asyncio.Lock()
        self.kafka_admins = _KafkaAdmins()
        """The Kafka admin clients, one per split (``kafka_admins.opened`` counts them)."""

    @asynccontextmanager
    async def sqs(self) -> AsyncIterator[SqsClient]:
        """The SQS client to use (see ``shared_sqs``)."""
        if not self.shared_sqs:
            async with connect(self.endpoint) as one:
                yield one
            return
        async with self._sqs_lock:
            if self._sqs_client is None:
                self._sqs_client = await self._sqs_stack.enter_async_context(connect(self.endpoint))
        yield self._sqs_client

    async def close(self) -> None:
        """Close the shared SQS client, if one was opened, and the Kafka admin clients (the
        next use opens others)."""
        self._sqs_client = None
        stack, self._sqs_stack = self._sqs_stack, AsyncExitStack()
        try:
            await stack.aclose()
        finally:
            await self.kafka_admins.close()

    @asynccontextmanager
    async def kafka_topics(
        self, split: str, client_config: str, original: str
    ) -> AsyncIterator[KafkaTopics]:
        """The topics of Kafka split ``split`` over its cached admin client (the client
        config is resolved each time: an edit takes effect on the next call)."""
        properties = await client_properties(self.kube, self.settings, client_config)
        async with self.kafka_admins.use(split, properties) as entry:
            yield KafkaTopics(entry.clients, entry.admin, self.settings, original)

    # --- join -------------------------------------------------------------------------------

    async def join(self, plan: SessionPlan, queue: PlannedQueue, sequence: int) -> Joined:
        """One step further for ``queue`` of ``plan``; ``ready`` once the worker routes it."""
        if queue.kind == "SQS":
            async with self.sqs() as client:
                side = _SqsSide(self, client, queue)
                return await _Join(self, side, plan, queue, sequence).run()
        try:
            original = str((await self.objects.get(queue.split))["spec"]["original"])
        except NotFoundError:
            original = queue.original
        config = kafka_client_config(queue)
        async with self.kafka_topics(queue.split, config, original) as topics:
            return await _Join(self, _KafkaSide(topics), plan, queue, sequence).run()

    @asynccontextmanager
    async def _side_of(self, obj: Obj) -> AsyncIterator[_Side]:
        """The broker side of an existing QueueSplit."""
        spec = obj.get("spec") or {}
        if spec.get("kind") != "Kafka":
            async with self.sqs() as client:
                yield _SqsSide(self, client, None)
            return
        config = spec.get("clientConfig")
        if not config:
            raise SplitError(
                f"QueueSplit {self.operator.namespace}/{obj['metadata']['name']} is a Kafka "
                "split without spec.clientConfig; set it to the topic's MirrordKafkaClientConfig"
            )
        name = str(obj["metadata"]["name"])
        async with self.kafka_topics(name, str(config), str(spec["original"])) as t:
            yield _KafkaSide(t)

    # --- leave ------------------------------------------------------------------------------

    async def leave(self, split: str, session_ref: str) -> bool:
        """Remove the session's route; True once its end is finished (see the docstring)."""
        try:
            obj = await self.writer.update(split, lambda o: without_route(o, session_ref))
        except NotFoundError:
            await self.kafka_admins.forget(split)
            return True
        fault_point("route-removed")
        record = record_of(obj, session_ref)
        if record is None:
            return True
        status = obj.get("status") or {}
        ended = session_ref in (status.get("endedSessions") or ())
        async with self._side_of(obj) as side:
            if not ended and not await self._never_routed(side, obj, record):
                return False
            await self._delete_recorded(side, split, record)
        log.info("session left the split", split=split, session=session_ref, ended_by_worker=ended)
        return True

    async def _never_routed(self, side: _Side, obj: Obj, record: Obj) -> bool:
        """No worker routed to the recorded queue, nor will: no worker was made, or the worker
        applied a spec without the route and never routed there (``_Side.unrouted``)."""
        if not (obj.get("status") or {}).get("workerDeployment"):
            return True
        if not applied(obj):
            return False
        return await side.unrouted(record)

    # --- hand-back --------------------------------------------------------------------------

    async def reconcile_split(self, name: str) -> None:
        """Finish the hand-back of QueueSplit ``name`` once the worker says Done."""
        try:
            obj = await self.objects.get(name)
        except NotFoundError:
            await self.kafka_admins.forget(name)
            return
        if not (obj.get("spec") or {}).get("handBack"):
            return
        status = obj.get("status") or {}
        done = (status.get("handBack") or {}).get("phase") == "Done"
        if not done and status.get("workerDeployment"):
            await ensure_worker(self.kube, QueueSplit.model_validate(obj), self.operator)
            return  # the worker drains and hands back; its status write wakes us
        target = QueueSplit.model_validate(obj).spec.target
        ref = WorkloadRef(target.kind, target.namespace, target.name)
        kinds = self._kinds(target.kind, target.api_version)
        await self._restore(name, ref, kinds)
        fault_point("env-restored")
        async with self._side_of(obj) as side:
            for record in records(obj):
                await self._delete_recorded(side, name, record)
        await delete_worker(self.kube, name, self.operator)
        meta = obj["metadata"]
        await self.objects.delete(name, missing_ok=True, uid=meta.get("uid"))
        await self.kafka_admins.forget(name)
        log.info("split handed back and deleted", split=name)

    async def _restore(self, name: str, ref: WorkloadRef, kinds: WorkloadKinds) -> None:
        await self._write_status(name, lambda o: _workload_state(o, "Restoring"))
        if await restore_env(self.kube, ref, owner=name, kinds=kinds) is not None:
            await wait_rolled_out(
                self.kube,
                ref,
                kinds,
                timeout=self.operator.workload_restart_timeout,
                on_progress=lambda m: log.info("restore rolling out", workload=str(ref), status=m),
            )
        await self._write_status(name, lambda o: _workload_state(o, "Restored"))

    def _kinds(self, kind: str, api_version: str) -> WorkloadKinds:
        kinds = self.operator.kinds()
        return kinds.with_api_versions(**{kinds.canonical(kind): api_version})

    # --- shared steps -----------------------------------------------------------------------

    async def _delete_recorded(self, side: _Side, split: str, record: Obj) -> None:
        """Delete a recorded queue/topic if it is pymirror's, then drop the record."""
        await side.delete(split, record)
        name = record["name"]
        await self._write_status(split, lambda o: _without_record(o, name))

    async def _write_status(self, name: str, change: Callable[[Obj], Obj | None]) -> Obj:
        """Merge ``change(obj)`` (a status body, None: nothing to do) into the status,
        guarded by the resourceVersion read; a 409 reads again (``SplitWriter.status``:
        batched with the other changes of this split waiting meanwhile)."""
        return await self.writer.status(name, change)


def without_route(obj: Obj, session: str) -> Obj | None:
    spec = obj.setdefault("spec", {})
    routes = [r for r in spec.get("routes") or () if r.get("session") != session]
    changed = len(routes) != len(spec.get("routes") or ())
    if not routes and not spec.get("handBack") and (changed or record_of(obj, session)):
        spec["handBack"] = True  # the last session went: hand the queue back
        changed = True
    if not changed:
        return None
    spec["routes"] = routes
    return obj


def _without_record(obj: Obj, name: str) -> Obj | None:
    kept = [r for r in records(obj) if r.get("name") != name]
    if len(kept) == len(records(obj)):
        return None
    return {"temporaryResources": kept}


def _workload_state(obj: Obj, state: str) -> Obj | None:
    current = (obj.get("status") or {}).get("workload") or {}
    if current.get("state") == state:
        return None
    return {"workload": {"state": state}}


class _SqsSide:
    """SQS queues: tagged, attributes copied, deleted only with pymirror's tag."""

    def __init__(self, splits: Splits, client: SqsClient, queue: PlannedQueue | None) -> None:
        self.s = splits
        self.client = client
        self.queue = queue
        self._plans: dict[str, QueuePlan] = {}

    def complete(self, record: Obj) -> bool:
        return bool(record.get("url"))

    async def original_is_temporary(self, original: str, what: str) -> bool:
        try:
            tags = await self.client.tags(await self.client.queue_url(original))
        except SqsQueueMissingError as e:
            raise SqsQueueMissingError(
                f"original queue {original!r} of {what} does not exist; check the queue name "
                "in the registry and the SQS endpoint/region the operator uses"
            ) from e
        return tags.get(TAG_CREATED_BY) == CREATED_BY

    async def new_name(self, original: str, session: str | None) -> str:
        plan = await self._plan(original, session, None)
        self._plans[plan.name] = plan
        return plan.name

    async def create(self, original: str, session: str | None, name: str) -> Obj:
        plan = self._plans.get(name)
        if plan is None:
            fallback = session is None
            digits = digits_of(
                name,
                lambda d: self.s.name_format.render(
                    queue_name(original), fallback=fallback, random_digits=d
                ),
            )
            plan = await self._plan(original, session, digits)
        created = await create_planned_queue(self.client, plan)
        what = "the fallback" if session is None else f"session {session!r}:"
        await check_owned(
            self.client,
            created.url,
            self.s.name_format,
            original,
            fallback=session is None,
            what=what,
        )
        return {"url": created.url}

    async def _plan(self, original: str, session: str | None, digits: str | None) -> QueuePlan:
        assert self.queue is not None, "queues are planned by a join only"
        return await plan_temporary_queue(
            self.client,
            original,
            self.s.name_format,
            fallback=session is None,
            session=session,
            registry_tags=self.queue.tags,
            random_digits=digits,
            mode=self.queue.mode if session is not None else None,
        )

    def address(self, record: Obj) -> str:
        return str(record["url"])

    async def unrouted(self, record: Obj) -> bool:
        url = record.get("url")
        if not url:
            return True
        try:
            tags = await self.client.tags(str(url))
        except SqsQueueMissingError:
            return True
        return tags.get(TAG_ROUTED) != "true"

    async def delete(self, split: str, record: Obj) -> None:
        client = self.client
        url = record.get("url")
        try:
            url = str(url) if url else await client.queue_url(str(record["name"]))
            tags = await client.tags(url)
        except SqsQueueMissingError:
            tags = None  # gone already (the worker deleted it, or it was never created)
        if tags is not None and tags.get(TAG_CREATED_BY) != CREATED_BY:
            log.warning(
                "recorded queue lacks pymirror's bookkeeping tag: not pymirror's, left alone",
                split=split,
                queue=url,
                tag=f"{TAG_CREATED_BY}={CREATED_BY}",
            )
        elif tags is not None:
            await delete_temporary_queue(client, str(url))  # checks the tag again
            log.info("temporary queue deleted", split=split, queue=url, role=record.get("role"))


class _KafkaSide:
    """Kafka topics (``kafka_splits.KafkaTopics``): named by the topic format."""

    def __init__(self, topics: KafkaTopics) -> None:
        self.topics = topics

    def complete(self, record: Obj) -> bool:
        return True

    async def original_is_temporary(self, original: str, what: str) -> bool:
        if self.topics.is_temporary(original):
            return True  # the env still names a fallback (gone or not): wait for the restore
        await self.topics.check_original(what)
        return False

    async def new_name(self, original: str, session: str | None) -> str:
        return self.topics.new_name(fallback=session is None)

    async def create(self, original: str, session: str | None, name: str) -> Obj:
        await self.topics.create(name, fallback=session is None)
        return {}

    def address(self, record: Obj) -> str:
        return str(record["name"])

    async def unrouted(self, record: Obj) -> bool:
        return await self.topics.never_held_records(str(record["name"]))

    async def delete(self, split: str, record: Obj) -> None:
        await self.topics.delete(str(record["name"]), fallback=record.get("role") == "fallback")


class _Join:
    """The steps of one ``Splits.join`` call (each re-reads what it needs)."""

    def __init__(
        self,
        splits: Splits,
        side: _Side,
        plan: SessionPlan,
        queue: PlannedQueue,
        sequence: int,
    ) -> None:
        self.s = splits
        self.side = side
        self.plan = plan
        self.queue = queue
        self.sequence = sequence
        self.name = queue.split
        self.session = plan.session_ref

    def wait(self, step: str, *, polled: bool = False) -> Joined:
        return Joined(False, step, None, None, polled)

    async def run(self) -> Joined:
        obj = await self._split()
        if obj is None:
            return self.wait(
                f"waiting: the env of {self.plan.workload.label} still names a temporary queue "
                f"of pymirror ({self.queue.original}); a hand-back is under way",
                polled=True,
            )
        if handing_back(obj):
            return self.wait(f"waiting for the hand-back of {self.name}")
        original = str(obj["spec"]["original"])
        mine = await self._temporary(obj, original, self.session)
        fallback = await self._temporary(obj, original, None)
        obj = await self._spec_fallback(str(fallback["name"]))
        obj, rolled_out = await self._patched(obj, original, fallback)
        if handing_back(obj):
            return self.wait(f"waiting for the hand-back of {self.name}")
        if not rolled_out:
            return self.wait(f"waiting for the rollout of {self.plan.workload.label}", polled=True)
        await self._worker(obj)
        obj = await self._route(self.side.address(mine))
        fault_point("route-added")
        value = await self._value(original, mine)
        if handing_back(obj):
            return self.wait(f"waiting for the hand-back of {self.name}")
        if not applied(obj):
            return Joined(False, f"waiting for the worker of {self.name}", mine["name"], value)
        return Joined(True, "ready", str(mine["name"]), value)

    # --- the QueueSplit ---------------------------------------------------------------------

    async def _split(self) -> Obj | None:
        """The QueueSplit, created under its fixed name when absent (None: the original is
        itself one of pymirror's temporary queues: the env is still patched)."""
        try:
            return await self.s.objects.get(self.name)
        except NotFoundError:
            pass
        if await self.side.original_is_temporary(self.queue.original, self.plan.workload.label):
            return None
        body = split_body(self.plan, self.queue, self.s.operator.namespace)
        try:
            created: Obj = await self.s.objects.create(body)
        except AlreadyExistsError:
            return await self.s.objects.get(self.name)
        log.info("split created", split=self.name, original=self.queue.original)
        fault_point("split-created")
        return created

    # --- temporary queues -------------------------------------------------------------------

    async def _temporary(self, obj: Obj, original: str, session: str | None) -> Obj:
        """The recorded queue/topic (fallback when ``session`` is None), recorded then
        created (created again under the recorded name when the record is not marked)."""
        record = record_of(obj, session)
        if record is not None and record.get("created") and self.side.complete(record):
            return record
        if record is None:
            record = await self._record(await self.side.new_name(original, session), session)
            fault_point("session-queue-recorded" if session else "fallback-recorded")
        extra = await self.side.create(original, session, str(record["name"]))
        fault_point("session-queue-created" if session else "fallback-created")
        done = {**record, **extra, "created": True}
        await self.s._write_status(self.name, lambda o: _replaced_record(o, done))
        log.info(
            "temporary queue created",
            split=self.name,
            queue=done["name"],
            role=done["role"],
            session=session,
        )
        return done

    async def _record(self, name: str, session: str | None) -> Obj:
        """Record ``name`` unless a queue of that role is recorded already: the record that
        stands (ours or the one another join wrote first)."""
        new: Obj = {
            "name": name,
            "role": "session" if session else "fallback",
            "created": False,
        }
        if session is not None:
            new["session"] = session

        def add(obj: Obj) -> Obj | None:
            if record_of(obj, session) is not None:
                return None
            return {"temporaryResources": [*records(obj), new]}

        written = await self.s._write_status(self.name, add)
        found = record_of(written, session)
        assert found is not None
        return found

    async def _spec_fallback(self, fallback: str) -> Obj:
        def set_fallback(obj: Obj) -> Obj | None:
            if obj["spec"].get("fallback") == fallback:
                return None
            obj["spec"]["fallback"] = fallback
            return obj

        return await self.s.writer.update(self.name, set_fallback)

    # --- the workload -----------------------------------------------------------------------

    async def _patched(self, obj: Obj, original: str, fallback: Obj) -> tuple[Obj, bool]:
        """Patch the env to the fallback (once), then whether the rollout finished; raises
        ``RolloutTimeoutError`` after workloadRestartTimeout."""
        if ((obj.get("status") or {}).get("workload") or {}).get("state") == "RolledOut":
            return obj, True
        value = in_form(original, str(fallback["name"]), self.side.address(fallback))
        obj = await self.s._write_status(self.name, _patching)
        if handing_back(obj):
            return obj, False  # the last session left meanwhile: patch nothing more
        workload = await self._workload()
        for container, values in self._values(workload, original, value).items():
            await patch_env(self.s.kube, workload, container, values, owner=self.name)
        fault_point("env-patched")
        status = await rollout_status(self.s.kube, workload.ref, self.plan.kinds)
        if status.done:
            obj = await self.s._write_status(self.name, _rolled_out)
            log.info("workload patched and rolled out", split=self.name, workload=workload.label)
            return obj, True
        self._check_timeout(obj, workload, status.message)
        return obj, False

    async def _workload(self) -> Workload:
        ref = self.plan.workload.ref
        return await get_workload(self.s.kube, self.plan.kinds, ref.namespace, ref.kind, ref.name)

    def _values(self, workload: Workload, original: str, value: str) -> dict[str, dict[str, str]]:
        """container -> var -> the fallback's value, for every var that names the original."""
        q = self.queue
        values: dict[str, dict[str, str]] = {}
        for container, var in ((q.container, q.env_var), *q.also_env_vars):
            if q.json_key is not None and (container, var) == (q.container, q.env_var):
                what = f"env var {var} of container {container} of {workload.label}"
                current = env_value(workload, container, var)
                item = json_value(current, q.json_key, value, what)
            else:
                item = value
            values.setdefault(container, {})[var] = item
        return values

    async def _value(self, original: str, mine: Obj) -> str:
        """What the local process's env var gets: the session's queue in the original's form;
        for ``namesFromJsonMap`` the workload's original JSON object with the key replaced."""
        value = in_form(original, str(mine["name"]), self.side.address(mine))
        q = self.queue
        if q.json_key is None:
            return value
        workload = await self._workload()
        recorded = read_originals(workload.template_owner_obj, workload.label)
        item = recorded.get(self.name, {}).get(q.container, {}).get(q.env_var) or {}
        current = item.get("value") if isinstance(item.get("value"), str) else None
        what = f"env var {q.env_var} of container {q.container} of {workload.label}"
        return json_value(current, q.json_key, value, what)

    def _check_timeout(self, obj: Obj, workload: Workload, missing: str) -> None:
        since = patched_since(obj)
        timeout = self.queue.restart_timeout or self.s.operator.workload_restart_timeout
        if since is None or (datetime.now(UTC) - since).total_seconds() <= timeout:
            return
        ref = workload.ref
        raise RolloutTimeoutError(
            f"{ref} did not finish its rollout within {timeout:g} s after its env was patched "
            f"to the fallback of {self.name}: {missing}. Check why its pods do not become "
            f"ready (kubectl -n {ref.namespace} describe {ref.kind.lower()} {ref.name}), or "
            "give it more time: workloadRestartTimeout (seconds) in its "
            "MirrordWorkloadQueueRegistry",
            workload=str(ref),
            missing=missing,
        )

    # --- worker and route -------------------------------------------------------------------

    async def _worker(self, obj: Obj) -> None:
        wanted = worker_name(self.name)

        def record(o: Obj) -> Obj | None:
            if (o.get("status") or {}).get("workerDeployment") == wanted:
                return None
            return {"workerDeployment": wanted}

        obj = await self.s._write_status(self.name, record)
        await ensure_worker(self.s.kube, QueueSplit.model_validate(obj), self.s.operator)
        fault_point("worker-created")

    async def _route(self, destination: str) -> Obj:
        wanted = route_body(self.session, self.sequence, destination, self.queue)

        def put(obj: Obj) -> Obj | None:
            if handing_back(obj) or route_of(obj, self.session) == wanted:
                return None
            routes = [
                r for r in obj["spec"].get("routes") or () if r.get("session") != self.session
            ]
            obj["spec"]["routes"] = sorted([*routes, wanted], key=lambda r: int(r["sequence"]))
            return obj

        return await self.s.writer.update(self.name, put)


def _replaced_record(obj: Obj, record: Obj) -> Obj | None:
    current = records(obj)
    if record in current:
        return None
    kept = [r for r in current if r.get("name") != record["name"]]
    return {"temporaryResources": [*kept, record]}


def _patching(obj: Obj) -> Obj | None:
    if ((obj.get("status") or {}).get("workload") or {}).get("state") == "Patching":
        return None
    message = "the workload's env points to the fallback; waiting for its rollout"
    return {
        "workload": {"state": "Patching"},
        "conditions": with_condition(obj, False, "RollingOut", message),
    }


def _rolled_out(obj: Obj) -> Obj:
    return {
        "workload": {"state": "RolledOut"},
        "conditions": with_condition(obj, True, "RolledOut", "the workload reads the fallback"),
    }
