"""pymirror.operator.splits for Kafka topics, on the real test API server and real brokers
(noida-db and Tansu): join, leave, hand-back.

As in test_splits.py, the split worker's part is played by the test: where the worker
would write ``QueueSplit.status`` (``appliedGeneration``, ``endedSessions``,
``handBack``) and delete a session's topic, the test does exactly that; the Deployment
controller's part too (a rollout finishes when the test writes the workload's status).
The worker Deployment that ``Splits`` creates is a real object of the stand-in kind;
nothing runs it, except in the last test, which runs that Deployment's own command (the
real ``pymirror worker kafka --split``) as a local process. The topics, their partitions
and their deletes are real, on the broker.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from pymirror.operator.planning import PlannedQueue, SessionPlan, split_name
from pymirror.operator.settings import ConfigApiVersions
from pymirror.operator.splits import Joined, Splits
from pymirror.operator.worker_deployments import WORKER_LABEL, worker_name
from pymirror.settings import Settings
from registry.env_patch import ORIGINAL_ENV_ANNOTATION
from registry.errors import NotFoundError
from registry.models import API_VERSION as MODELS_API_VERSION
from registry.models import MirrordKafkaClientConfig
from registry.objects import Kube, Obj
from registry.resources import Resource
from registry.workloads import WorkloadKinds, get_workload
from splitter.errors import KafkaTopicError
from splitter.naming import NameFormat
from tests.fixtures.kube import STAND_INS
from tests.integration.kafka.support import (
    create_topics,
    list_topics,
    make_records,
    produce,
    read_all,
)
from tests.integration.operator import support
from tests.integration.operator.support import InNamespaces, container_env, splits_settings
from tests.servers.kafka import KafkaBroker, group_timeouts
from tests.servers.kube import KubeApi
from tests.servers.process import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KINDS = WorkloadKinds.from_mapping(STAND_INS)
DEPLOYMENT_API = KINDS.deployment.api_version
TOPIC_VAR = "TOPIC"
GROUP_VAR = "GROUP"
GROUP = "views-group"
CONFIG = "kafka-main"
PARTITIONS = 3
SECRETS = Resource(*STAND_INS["Secret"])
PASSWORD = "s3cr3t-not-on-any-command-line"
#: Bounds a hang only (each wait below ends on the state it waits for).
HANG = 60.0


@dataclass
class World(InNamespaces):
    kube: Kube
    broker: KafkaBroker
    splits: Splits
    settings: Settings
    namespace: str
    operator_namespace: str
    original: str
    env: list[dict[str, Any]]

    @property
    def name_format(self) -> NameFormat:
        return self.settings.kafka.name_format


def app_body(topic: str) -> Obj:
    env = [
        {"name": "BEFORE", "value": "1"},
        {"name": TOPIC_VAR, "value": topic},
        {"name": GROUP_VAR, "value": GROUP},
    ]
    return support.app_body(env)


@pytest.fixture
async def world(
    kube_api: KubeApi, kube_crds: list[str], kafka_broker: KafkaBroker, unique_name: str
) -> AsyncIterator[World]:
    """A namespace with Deployment ``app`` whose env holds the original topic (TOPIC) and
    its group id (GROUP), the topic on the broker, and an operator namespace with the
    MirrordKafkaClientConfig naming the broker."""
    operator = splits_settings(f"{unique_name}-ops")
    settings = Settings(operator=operator)
    original = f"{unique_name}.views"
    await create_topics(kafka_broker, PARTITIONS, original)
    async with Kube.from_kubeconfig(kube_api.kubeconfig) as kube:
        config = {
            "apiVersion": MODELS_API_VERSION,
            "kind": "MirrordKafkaClientConfig",
            "metadata": {"name": CONFIG},
            "spec": {
                "properties": [{"name": "bootstrap.servers", "value": kafka_broker.bootstrap}]
            },
        }
        await kube.objects(MirrordKafkaClientConfig.RESOURCE, operator.namespace).create(config)
        body = app_body(original)
        await kube.objects(KINDS.deployment, unique_name).create(body)
        env = body["spec"]["template"]["spec"]["containers"][0]["env"]
        splits = Splits(kube, settings)
        try:
            yield World(
                kube,
                kafka_broker,
                splits,
                settings,
                unique_name,
                operator.namespace,
                original,
                env,
            )
        finally:
            await splits.close()  # its clients (a Kafka split's admin client, if cached)


async def plan_for(w: World, session: str, *, original: str | None = None) -> SessionPlan:
    workload = await get_workload(w.kube, KINDS, w.namespace, "Deployment", "app")
    queue = PlannedQueue(
        id="views",
        kind="Kafka",
        split=split_name(workload.ref, "views", "Kafka"),
        original=original or w.original,
        env_var=TOPIC_VAR,
        container="main",
        message_filter={"user": f"^{session}$"},
        jq_filter=None,
        mode="steal",
        group_id=GROUP,
        group_id_env_var=GROUP_VAR,
        client_config=CONFIG,
    )
    return SessionPlan(w.namespace, session, workload, [queue], KINDS)


# --- the broker, the Deployment controller and the worker, played -----------------------------


async def temporary_topics(w: World) -> list[str]:
    """The topics on the broker that look like temporary topics of the original."""
    return sorted(
        t
        for t in await list_topics(w.broker)
        if t.startswith("mirrord-tmp-") and t.endswith(f"-{w.original}")
    )


async def partitions_of(w: World, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=w.broker.bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return len(described["partitions"])


async def delete_topic(w: World, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=w.broker.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def roll_out(w: World) -> None:
    """What the Deployment controller writes once every replica runs the current template."""
    await support.roll_out(w.deployments)


async def acknowledge(w: World, split: str) -> None:
    """The worker uses the split's current routes: ``appliedGeneration``."""
    obj = await w.queue_splits.get(split)
    await w.queue_splits.patch_status(split, {"appliedGeneration": obj["metadata"]["generation"]})


def recorded(obj: Obj, session: str | None) -> Obj:
    role = "fallback" if session is None else "session"
    return next(
        r
        for r in obj["status"]["temporaryResources"]
        if r["role"] == role and r.get("session") == session
    )


async def end_session(w: World, split: str, session: str) -> None:
    """The worker ends a session: routes the leftovers again, deletes its topic, reports it."""
    obj = await w.queue_splits.get(split)
    await delete_topic(w, recorded(obj, session)["name"])
    ended = sorted({*(obj["status"].get("endedSessions") or []), session})
    await w.queue_splits.patch_status(split, {"endedSessions": ended})


async def hand_back_done(w: World, split: str) -> str:
    """The worker finishes the hand-back but leaves the fallback (``--keep-fallback``, or
    killed before its delete): phase Done. Returns the fallback topic."""
    obj = await w.queue_splits.get(split)
    await w.queue_splits.patch_status(split, {"handBack": {"phase": "Done", "remaining": 0}})
    return str(recorded(obj, None)["name"])


async def hand_back(w: World, split: str) -> None:
    """``reconcile_split`` while playing the Deployment controller for the restore."""
    await support.hand_back(w.splits, split, lambda: roll_out(w))


async def drive(w: World, plans: list[SessionPlan], sequences: list[int]) -> list[Joined]:
    """Join every plan at once until all are ready, playing the controller and the worker."""
    roll, ack = functools.partial(roll_out, w), functools.partial(acknowledge, w)
    return await support.drive(w.splits, plans, sequences, roll=roll, acknowledge=ack)


# --- join ---------------------------------------------------------------------------------------


async def test_two_sessions_share_one_fallback_topic_patch_and_worker(world: World) -> None:
    w = world
    plans = [await plan_for(w, "alice"), await plan_for(w, "bob")]
    split = plans[0].queues[0].split
    joined = await drive(w, plans, [1, 2])

    obj = await w.queue_splits.get(split)
    assert obj["spec"]["kind"] == "Kafka"
    assert (obj["spec"]["groupId"], obj["spec"]["clientConfig"]) == (GROUP, CONFIG)
    records = obj["status"]["temporaryResources"]
    fallback = recorded(obj, None)
    sessions = {r["session"]: r for r in records if r["role"] == "session"}
    assert [r["role"] for r in records].count("fallback") == 1
    assert set(sessions) == {p.session_ref for p in plans}
    assert all(r["created"] is True and "url" not in r for r in records)
    assert obj["spec"]["fallback"] == fallback["name"]
    assert re.fullmatch(rf"mirrord-tmp-\d{{10}}-fallback-{re.escape(w.original)}", fallback["name"])
    # every recorded topic exists on the broker, shaped like the original
    assert await temporary_topics(w) == sorted(r["name"] for r in records)
    for record in records:
        assert await partitions_of(w, record["name"]) == PARTITIONS
    # routes name the session topics
    routes = obj["spec"]["routes"]
    assert [(r["session"], r["sequence"]) for r in routes] == [
        (p.session_ref, i + 1) for i, p in enumerate(plans)
    ]
    assert [r["destination"] for r in routes] == [sessions[r["session"]]["name"] for r in routes]
    assert routes[0]["messageFilter"] == {"user": "^alice$"}
    # the topic var is patched to the fallback; the group id stays the workload's own
    app = await w.deployments.get("app")
    env = {e["name"]: e["value"] for e in container_env(app)}
    assert env == {"BEFORE": "1", TOPIC_VAR: fallback["name"], GROUP_VAR: GROUP}
    saved = json.loads(app["metadata"]["annotations"][ORIGINAL_ENV_ANNOTATION])
    assert saved == {split: {"main": {TOPIC_VAR: {"value": w.original}}}}
    # one worker Deployment consuming the original with the workload's group
    [worker] = (await w.workers.list(label_selector=f"{WORKER_LABEL}={split}")).items
    assert worker["metadata"]["name"] == worker_name(split)
    command = worker["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("worker") + 1] == "kafka"
    assert command[command.index("--topic") + 1] == w.original
    assert command[command.index("--group-id") + 1] == GROUP
    assert command[command.index("--fallback-topic") + 1] == fallback["name"]
    assert command[command.index("--client-config") + 1] == CONFIG
    assert w.broker.bootstrap not in json.dumps(worker)  # the worker resolves the config
    # what the local processes get: their own topic
    for plan, result in zip(plans, joined, strict=True):
        assert result.temporary == sessions[plan.session_ref]["name"]
        assert result.value == sessions[plan.session_ref]["name"]


async def test_a_topic_recorded_but_not_created_is_created_under_its_name(world: World) -> None:
    """An operator killed between recording a session's topic and creating it: the next
    join creates it under the recorded name, and a re-run changes nothing."""
    w = world
    plan = await plan_for(w, "alice")
    queue = plan.queues[0]
    first = await w.splits.join(plan, queue, 1)
    assert first.step.startswith("waiting for the rollout")
    name = w.name_format.render(w.original, fallback=False, random_digits="0123456789")
    record = {"name": name, "role": "session", "session": plan.session_ref, "created": False}
    obj = await w.queue_splits.get(queue.split)
    await delete_topic(w, recorded(obj, plan.session_ref)["name"])
    others = [r for r in obj["status"]["temporaryResources"] if r["role"] == "fallback"]
    await w.queue_splits.patch_status(queue.split, {"temporaryResources": [*others, record]})
    await roll_out(w)
    waiting = await w.splits.join(plan, queue, 1)
    assert waiting.temporary == name
    assert name in await temporary_topics(w)
    assert await partitions_of(w, name) == PARTITIONS
    assert await w.splits.join(plan, queue, 1) == waiting
    assert len(await temporary_topics(w)) == 2  # the session's and the fallback


# --- leave and hand-back --------------------------------------------------------------------


async def test_leave_waits_for_the_worker_and_the_last_leave_hands_back(world: World) -> None:
    w = world
    plans = [await plan_for(w, "alice"), await plan_for(w, "bob")]
    split = plans[0].queues[0].split
    await drive(w, plans, [1, 2])
    alice, bob = (p.session_ref for p in plans)
    alice_topic = recorded(await w.queue_splits.get(split), alice)["name"]
    await produce(w.broker, alice_topic, make_records(3, PARTITIONS, ["alice"]))

    assert await w.splits.leave(split, alice) is False  # the worker has not applied it
    await acknowledge(w, split)
    assert await w.splits.leave(split, alice) is False  # routed to: the worker ends it
    assert alice_topic in await temporary_topics(w)
    await end_session(w, split, alice)
    assert await w.splits.leave(split, alice) is True

    assert await w.splits.leave(split, bob) is False
    obj = await w.queue_splits.get(split)
    assert obj["spec"]["handBack"] is True
    assert obj["spec"]["routes"] == []
    await w.splits.reconcile_split(split)  # not Done yet: nothing is undone
    assert (await w.workers.list(label_selector=f"{WORKER_LABEL}={split}")).items != []
    await end_session(w, split, bob)
    assert await w.splits.leave(split, bob) is True
    fallback = await hand_back_done(w, split)
    assert fallback in await temporary_topics(w)
    await hand_back(w, split)

    app = await w.deployments.get("app")
    assert container_env(app) == w.env
    assert ORIGINAL_ENV_ANNOTATION not in (app["metadata"].get("annotations") or {})
    assert await temporary_topics(w) == []  # the fallback, recorded and ours: deleted
    assert w.original in await list_topics(w.broker)
    assert (await w.workers.list(label_selector=f"{WORKER_LABEL}={split}")).items == []
    with pytest.raises(NotFoundError):
        await w.queue_splits.get(split)


async def test_a_session_the_worker_never_routed_to_leaves_once_it_applied_the_removal(
    world: World,
) -> None:
    """A route added and removed before the worker applied it: once the worker applied a
    spec without it, the session's topic never held a record, so it is deleted at once."""
    w = world
    alice = await plan_for(w, "alice")
    split = alice.queues[0].split
    await drive(w, [alice], [1])
    bob = await plan_for(w, "bob")
    waiting = await w.splits.join(bob, bob.queues[0], 2)
    assert waiting.step == f"waiting for the worker of {split}"
    assert waiting.temporary in await temporary_topics(w)

    assert await w.splits.leave(split, bob.session_ref) is False
    await acknowledge(w, split)  # the worker applied the spec without bob's route
    assert await w.splits.leave(split, bob.session_ref) is True
    assert waiting.temporary not in await temporary_topics(w)
    obj = await w.queue_splits.get(split)
    kept = sorted((r["role"], str(r.get("session"))) for r in obj["status"]["temporaryResources"])
    assert kept == [("fallback", "None"), ("session", alice.session_ref)]


async def test_a_recorded_topic_the_format_does_not_give_is_never_deleted(world: World) -> None:
    w = world
    plan = await plan_for(w, "alice")
    split = plan.queues[0].split
    await drive(w, [plan], [1])
    assert await w.splits.leave(split, plan.session_ref) is False
    await end_session(w, split, plan.session_ref)
    assert await w.splits.leave(split, plan.session_ref) is True
    fallback = await hand_back_done(w, split)
    foreign = f"{w.namespace}.someone-elses"
    await create_topics(w.broker, 1, foreign)
    record = {"name": foreign, "role": "fallback", "created": True}
    await w.queue_splits.patch_status(split, {"temporaryResources": [record]})
    await hand_back(w, split)
    assert foreign in await list_topics(w.broker)
    assert fallback in await temporary_topics(w)  # no longer recorded: not deleted either
    with pytest.raises(NotFoundError):
        await w.queue_splits.get(split)


async def test_a_missing_original_topic_is_a_clear_error_and_creates_nothing(
    world: World,
) -> None:
    w = world
    missing = f"{w.original}-gone"
    plan = await plan_for(w, "alice", original=missing)
    with pytest.raises(KafkaTopicError, match=f"original topic '{missing}' .* does not exist"):
        await w.splits.join(plan, plan.queues[0], 1)
    with pytest.raises(NotFoundError):
        await w.queue_splits.get(plan.queues[0].split)
    assert container_env(await w.deployments.get("app")) == w.env
    assert missing not in await list_topics(w.broker)


async def test_an_env_still_naming_a_fallback_waits_and_creates_nothing(world: World) -> None:
    """A plan read from an env still patched to a fallback (its split gone, the restore
    not rolled out yet) waits, whether that fallback topic still exists or not."""
    w = world
    fallback = w.name_format.render(w.original, fallback=True)
    plan = await plan_for(w, "alice", original=fallback)
    before = await list_topics(w.broker)
    joined = await w.splits.join(plan, plan.queues[0], 1)
    assert not joined.ready
    assert joined.step.startswith(f"waiting: the env of Deployment {w.namespace}/app still")
    with pytest.raises(NotFoundError):
        await w.queue_splits.get(plan.queues[0].split)
    assert sorted(await list_topics(w.broker)) == sorted(before)


# --- with the real worker process ---------------------------------------------------------------


async def on_split_events(w: World, split: str, step: Callable[[], Awaitable[bool]]) -> None:
    """Run ``step`` now and again on every change of QueueSplit ``split`` (the worker's
    status writes: appliedGeneration, endedSessions) until it returns True; ``HANG``
    bounds a hang only."""
    async with asyncio.timeout(HANG):
        version = (await w.queue_splits.get(split))["metadata"]["resourceVersion"]
        if await step():
            return
        watch = w.queue_splits.watch(
            resource_version=version, field_selector=f"metadata.name={split}"
        )
        async with watch as events:
            async for _event in events:
                if await step():
                    return
    raise AssertionError(f"the watch of {split} ended")


@pytest.mark.timeout(240)
async def test_the_real_worker_splits_ends_the_session_and_hands_back(
    world: World, kube_api: KubeApi, tmp_path: Path
) -> None:
    """The worker Deployment's own command runs as a local process (``pymirror worker kafka
    --split``): it acknowledges the routes, forwards alice's records to her topic and the
    rest to the fallback, ends her session when she leaves (her unread records routed
    again, her topic deleted), hands the topic back (drain timeout 0: the fallback's
    records move back to the original) and reports Done; the operator then restores the
    workload and deletes the split. Nothing is lost. The client config takes
    ``bootstrap.servers`` and a password from a Secret (``loadFromSecret``): neither is
    in the worker Deployment, the worker resolves them itself (``--client-config``)."""
    w = world
    timeouts = group_timeouts(w.broker.kind)
    properties = {
        "bootstrap.servers": w.broker.bootstrap,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": str(timeouts["session_timeout_ms"]),
        "heartbeat.interval.ms": str(timeouts["heartbeat_interval_ms"]),
    }
    secret = {"bootstrap.servers": w.broker.bootstrap, "sasl.password": PASSWORD}
    await w.kube.objects(SECRETS, w.operator_namespace).create(
        {
            "apiVersion": f"{SECRETS.group}/{SECRETS.version}",
            "kind": "Secret",
            "metadata": {"name": "kafka-auth"},
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in secret.items()},
        }
    )
    del properties["bootstrap.servers"]
    configs = w.kube.objects(MirrordKafkaClientConfig.RESOURCE, w.operator_namespace)
    body = {
        "properties": [{"name": k, "value": v} for k, v in properties.items()],
        "loadFromSecret": f"{w.operator_namespace}/kafka-auth",
    }
    await configs.merge_patch(CONFIG, {"spec": body})
    current = await configs.get(CONFIG)
    assert {p["name"] for p in current["spec"]["properties"]} == set(properties)
    operator = w.settings.operator.model_copy(
        update={
            "worker_command": [sys.executable, "-m", "pymirror"],
            "worker_state_dir": str(tmp_path),
            "config_kinds": ConfigApiVersions(
                {k: "/".join(STAND_INS[k][:2]) for k in ("ConfigMap", "Secret")}
            ),
            "worker_env": {
                "KUBECONFIG": str(kube_api.kubeconfig),
                "PYTHONPATH": str(REPO),
                "PYMIRROR_KAFKA__DRAIN_TIMEOUT": "0",
                "PYMIRROR_LOG__FORMAT": "json",
            },
        }
    )
    settings = w.settings.model_copy(update={"operator": operator})
    splits = Splits(w.kube, settings)
    plan = await plan_for(w, "alice")
    queue = plan.queues[0]
    split = queue.split

    first = await splits.join(plan, queue, 1)
    assert first.step.startswith("waiting for the rollout")
    await roll_out(w)
    waiting = await splits.join(plan, queue, 1)
    assert waiting.step == f"waiting for the worker of {split}"
    worker = await w.workers.get(worker_name(split))
    container = worker["spec"]["template"]["spec"]["containers"][0]
    assert w.broker.bootstrap not in json.dumps(worker)
    assert PASSWORD not in json.dumps(worker)
    assert container["command"][container["command"].index("--client-config") + 1] == CONFIG
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"]}}
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *container["command"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        await on_split_events(w, split, lambda: _ready(splits, plan, queue))
        records = make_records(12, PARTITIONS, ["alice", "bob"])
        await produce(w.broker, w.original, records)
        obj = await w.queue_splits.get(split)
        mine, fallback = recorded(obj, plan.session_ref)["name"], recorded(obj, None)["name"]
        alices = {r.id for r in records if dict(r.headers)["user"] == b"alice"}
        got = await read_all(w.broker, mine, PARTITIONS, expect=len(alices), within=HANG)
        assert {g.id for g in got} == alices
        assert len(got) == len(alices)

        await on_split_events(w, split, lambda: splits.leave(split, plan.session_ref))

        async def reported_ended() -> bool:
            # The worker deletes the session topic before its next status write lists the
            # end: leave() may finish in between (the topic is gone: nothing to wait for).
            status = (await w.queue_splits.get(split)).get("status") or {}
            return plan.session_ref in (status.get("endedSessions") or ())

        await on_split_events(w, split, reported_ended)
        async with asyncio.timeout(HANG):
            assert await process.wait() == 0, log_path.read_text()
        obj = await w.queue_splits.get(split)
        assert obj["status"]["handBack"]["phase"] == "Done"
        await hand_back(replace(w, splits=splits, settings=settings), split)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await splits.close()
    assert container_env(await w.deployments.get("app")) == w.env
    assert await temporary_topics(w) == []
    assert fallback not in await list_topics(w.broker)
    back = await read_all(w.broker, w.original, PARTITIONS, expect=2 * len(records), within=HANG)
    ids = [g.id for g in back]
    # every record is in the original twice: as produced, and moved back by the hand-back
    # (alice's, unread at her end, went to the fallback first); none is lost
    assert sorted(ids) == sorted([r.id for r in records] * 2)
    with pytest.raises(NotFoundError):
        await w.queue_splits.get(split)


async def _ready(splits: Splits, plan: SessionPlan, queue: PlannedQueue) -> bool:
    return (await splits.join(plan, queue, 1)).ready
