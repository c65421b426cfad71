"""``Splits`` keeps one Kafka admin client per split, counted for real on the broker's
side: the split's MirrordKafkaClientConfig names a TCP proxy in front of the real broker
(noida-db and Tansu; tests/faults/kafka_proxy.py, which keeps the clients on itself),
and the proxy counts the connections it accepts and those still open.

Several sessions join and leave one split (the test plays the Deployment controller and
the worker, as test_kafka_splits.py does): after the first join, no further connection
is made, also not by the leave of a session the worker never routed to (its topic's end
offsets are asked over the same client); a broker away (the proxy gone) drops the cached
client and the next call opens a new one; the hand-back that deletes the split closes it
(no connection left open).
Every wait ends on the state it waits for; ``HANG`` only bounds a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from pymirror.operator.kafka_splits import open_topics
from pymirror.operator.planning import PlannedQueue, SessionPlan, split_name
from pymirror.operator.settings import OperatorSettings
from pymirror.operator.splits import Joined, Splits
from pymirror.settings import Settings
from registry.errors import NotFoundError
from registry.models import API_VERSION as MODELS_API_VERSION
from registry.models import MirrordKafkaClientConfig
from registry.objects import Kube, Obj, Objects
from registry.session_models import QueueSplit
from registry.workloads import WorkloadKinds, get_workload
from splitter.errors import KafkaUnavailableError
from tests.faults.kafka_proxy import KafkaProxy
from tests.fixtures.kube import STAND_INS
from tests.integration.kafka.support import create_topics, list_topics
from tests.integration.operator import support
from tests.servers.kafka import KafkaBroker
from tests.servers.kube import KubeApi

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

KINDS = WorkloadKinds.from_mapping(STAND_INS)
TOPIC_VAR = "TOPIC"
GROUP = "views-group"
CONFIG = "kafka-main"
PARTITIONS = 2
#: Bounds a hang only.
HANG = 60.0


@dataclass
class CountingProxy(KafkaProxy):
    """The Kafka proxy, counting the connections it accepted and those still open."""

    accepted: int = 0
    live: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._count(accepted=1, live=1)
        try:
            await super()._accept(reader, writer)
        finally:
            await self._count(live=-1)

    async def _count(self, accepted: int = 0, live: int = 0) -> None:
        async with self.changed:
            self.accepted += accepted
            self.live += live
            self.changed.notify_all()

    async def until_idle(self) -> None:
        """Until no connection is open."""
        try:
            async with asyncio.timeout(HANG), self.changed:
                await self.changed.wait_for(lambda: self.live == 0)
        except TimeoutError:
            raise AssertionError(f"{self.live} connections still open after {HANG} s") from None


@dataclass
class World:
    kube: Kube
    broker: KafkaBroker
    proxy: CountingProxy
    splits: Splits
    settings: Settings
    namespace: str
    original: str

    @property
    def queue_splits(self) -> Objects:
        return self.kube.objects(QueueSplit.RESOURCE, self.settings.operator.namespace)

    @property
    def deployments(self) -> Objects:
        return self.kube.objects(KINDS.deployment, self.namespace)


@pytest.fixture
async def world(
    kube_api: KubeApi, kube_crds: list[str], kafka_broker: KafkaBroker, unique_name: str
) -> AsyncIterator[World]:
    operator = OperatorSettings(
        namespace=f"{unique_name}-ops",
        workload_kinds={
            "Deployment": KINDS.deployment.api_version,
            "StatefulSet": KINDS.stateful_set.api_version,
        },
        worker_metrics_port=None,
        workload_restart_timeout=60.0,
    )
    settings = Settings(operator=operator)
    original = f"{unique_name}.views"
    await create_topics(kafka_broker, PARTITIONS, original)
    upstream = int(kafka_broker.bootstrap.rpartition(":")[2])
    proxy = await CountingProxy(upstream).start()
    assert isinstance(proxy, CountingProxy)
    async with Kube.from_kubeconfig(kube_api.kubeconfig) as kube:
        config = {
            "apiVersion": MODELS_API_VERSION,
            "kind": "MirrordKafkaClientConfig",
            "metadata": {"name": CONFIG},
            "spec": {"properties": [{"name": "bootstrap.servers", "value": proxy.bootstrap}]},
        }
        await kube.objects(MirrordKafkaClientConfig.RESOURCE, operator.namespace).create(config)
        container = {
            "name": "main",
            "image": "app:1",
            "env": [{"name": TOPIC_VAR, "value": original}],
        }
        app: Obj = {
            "apiVersion": KINDS.deployment.api_version,
            "kind": "Deployment",
            "metadata": {"name": "app"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "app"}},
                "template": {
                    "metadata": {"labels": {"app": "app"}},
                    "spec": {"containers": [container]},
                },
            },
        }
        await kube.objects(KINDS.deployment, unique_name).create(app)
        splits = Splits(kube, settings)
        w = World(kube, kafka_broker, proxy, splits, settings, unique_name, original)
        try:
            yield w
        finally:
            await splits.close()
            await w.proxy.close()


async def plan_for(w: World, session: str) -> SessionPlan:
    workload = await get_workload(w.kube, KINDS, w.namespace, "Deployment", "app")
    queue = PlannedQueue(
        id="views",
        kind="Kafka",
        split=split_name(workload.ref, "views", "Kafka"),
        original=w.original,
        env_var=TOPIC_VAR,
        container="main",
        message_filter={"user": f"^{session}$"},
        jq_filter=None,
        mode="steal",
        group_id=GROUP,
        group_id_env_var=None,
        client_config=CONFIG,
    )
    return SessionPlan(w.namespace, session, workload, [queue], KINDS)


# --- the Deployment controller and the worker, played ------------------------------------------


async def roll_out(w: World) -> None:
    await support.roll_out(w.deployments)


async def acknowledge(w: World, split: str) -> None:
    obj = await w.queue_splits.get(split)
    await w.queue_splits.patch_status(split, {"appliedGeneration": obj["metadata"]["generation"]})


async def join(w: World, plan: SessionPlan, sequence: int) -> Joined:
    """Join until ready, playing the controller and the worker whenever the join waits."""
    queue = plan.queues[0]
    steps = []
    for _ in range(8):
        joined = await asyncio.wait_for(w.splits.join(plan, queue, sequence), HANG)
        if joined.ready:
            return joined
        steps.append(joined.step)
        if joined.step.startswith("waiting for the rollout"):
            await roll_out(w)
        if joined.step.startswith("waiting for the worker"):
            await acknowledge(w, queue.split)
    raise AssertionError(f"the join did not become ready; steps: {steps}")


def session_topic(obj: Obj, session: str) -> str:
    records: list[dict[str, Any]] = obj["status"]["temporaryResources"]
    return str(next(r["name"] for r in records if r.get("session") == session))


async def end_and_leave(w: World, split: str, session: str) -> None:
    """The worker ends the session (deletes its topic, straight on the broker, and lists
    it in endedSessions); then the session leaves."""
    obj = await w.queue_splits.get(split)
    admin = AIOKafkaAdminClient(bootstrap_servers=w.broker.bootstrap)  # not via the proxy
    await admin.start()
    try:
        await admin.delete_topics([session_topic(obj, session)])
    finally:
        await admin.close()
    ended = sorted({*(obj["status"].get("endedSessions") or []), session})
    await w.queue_splits.patch_status(split, {"endedSessions": ended})
    assert await asyncio.wait_for(w.splits.leave(split, session), HANG) is True


# --- the test --------------------------------------------------------------------------------


async def test_one_admin_connection_serves_every_join_and_leave_of_a_split(world: World) -> None:
    w = world
    anchor = await plan_for(w, "anchor")
    split = anchor.queues[0].split
    await join(w, anchor, 1)
    assert w.splits.kafka_admins.opened == 1
    after_first = w.proxy.accepted
    assert after_first >= 1
    assert w.proxy.live >= 1  # the cached client stays connected

    # The way it was before: a client per call is a new connection each time.
    async with open_topics(w.kube, w.settings, CONFIG, w.original) as topics:
        assert await topics.admin.exists(w.original)
    assert w.proxy.accepted > after_first
    after_first = w.proxy.accepted

    for i in range(3):
        plan = await plan_for(w, f"dev{i}")
        await join(w, plan, i + 2)
        await end_and_leave(w, split, plan.session_ref)
    # A session the worker never routed to: its leave looks at the topic's end offsets
    # (never_held_records) over the same client, no reader of its own.
    quiet = await plan_for(w, "never-routed")
    await join(w, quiet, 5)
    topic = session_topic(await w.queue_splits.get(split), quiet.session_ref)
    assert await w.splits.leave(split, quiet.session_ref) is False  # removal not applied yet
    await acknowledge(w, split)
    assert await asyncio.wait_for(w.splits.leave(split, quiet.session_ref), HANG) is True
    assert topic not in await list_topics(w.broker)  # it never held a record: deleted
    assert w.splits.kafka_admins.opened == 1
    assert w.proxy.accepted == after_first, "a join or leave opened a new connection"
    assert len(w.splits.kafka_admins) == 1

    # The broker away: the call fails, the cached client is dropped; the next opens anew.
    port = w.proxy.port
    await w.proxy.close()
    await w.proxy.until_idle()
    with pytest.raises(KafkaUnavailableError):
        async with w.splits.kafka_topics(split, CONFIG, w.original) as topics:
            await topics.admin.exists(w.original)
    assert len(w.splits.kafka_admins) == 0
    proxy = await CountingProxy(w.proxy.upstream_port, port=port).start()
    assert isinstance(proxy, CountingProxy)
    w.proxy = proxy
    async with w.splits.kafka_topics(split, CONFIG, w.original) as topics:
        assert await topics.admin.exists(w.original)
    assert w.splits.kafka_admins.opened == 2
    reopened = w.proxy.accepted
    assert reopened >= 1
    last = await plan_for(w, "dev-last")
    await join(w, last, 9)
    await end_and_leave(w, split, last.session_ref)
    assert w.splits.kafka_admins.opened == 2
    assert w.proxy.accepted == reopened

    # The last session leaves, the worker hands back, the split is deleted: closed.
    await end_and_leave(w, split, anchor.session_ref)
    await w.queue_splits.patch_status(split, {"handBack": {"phase": "Done", "remaining": 0}})
    task = asyncio.create_task(w.splits.reconcile_split(split))
    async with asyncio.timeout(HANG):
        while not task.done():
            await roll_out(w)  # the env restore's rollout
            await asyncio.wait({task}, timeout=0.1)
    await task
    with pytest.raises(NotFoundError):
        await w.queue_splits.get(split)
    assert len(w.splits.kafka_admins) == 0
    await w.proxy.until_idle()  # the split's admin client closed
    assert w.proxy.accepted == reopened
    assert not [t for t in await list_topics(w.broker) if t.endswith(f"-{w.original}")]
