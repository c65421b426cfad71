"""Two developers' ``pymirror exec`` on one Kafka topic, through the real operator.

The operator (the controller in this test's loop, its split worker run by the sandbox's
local runtime as a local ``pymirror worker kafka --split`` process) on a real broker
(noida-db and Tansu, via ``kafka_broker``). Deployment ``app`` (an idle stand-in) reads
the topic named by its env var ``TOPIC``; its ``MirrordKafkaTopicsConsumer`` and the
operator namespace's ``MirrordKafkaClientConfig`` say so. alice and bob each run
``pymirror exec`` (a process) with their own header filter (``user``); the local command
is ``CONSUMER``: a kafka-python consumer (a client pymirror does not use) of the topic its
env names, printing each record's id. It reads with manual assignment (no consumer group:
noida-db 0.2.0 holds joins behind a member that stops polling) and closes cleanly when
the test tells it to on stdin. Records for alice, bob and nobody are produced to the
original topic: each consumer gets exactly its own; the workload's fallback topic (read
by the test, as the workload would) gets the rest. Then both commands exit 0, each exec
exits 0, the sessions and the split are gone, the temporary topics are deleted and the
app's env is restored. Every wait is on a watched change or on the processes' output;
``HANG`` only bounds a hang.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pymirror.sandbox.runtime import LocalRuntime
from pymirror.settings import Settings
from registry.objects import Kube, Obj
from tests.integration.exec.support import cli_env, next_json, reap, split_config, start_exec
from tests.integration.exec.test_status_kill import watch_until
from tests.integration.kafka.support import (
    list_topics,
    make_records,
    produce,
    read_all,
)
from tests.integration.operator.support import (
    HANG,
    KAFKA_TOPIC_ID,
    KAFKA_TOPIC_VAR,
    WithSessions,
    kafka_app,
    operating,
    operator_settings,
    wait_empty,
)
from tests.servers.kafka import KafkaBroker
from tests.servers.kube import KubeApi
from tests.servers.sqs import SqsEndpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

GROUP = "views-group"
PARTITIONS = 2
USERS = ["alice", "bob", "zed"]
# prints its env, then each record id of the topic its env names (all partitions,
# manual assignment) as JSON lines; on a line on stdin closes the consumer and exits 0
CONSUMER = """
import json, os, select, sys
from kafka import KafkaConsumer, TopicPartition
print(json.dumps({"env": dict(os.environ)}), flush=True)
topic = os.environ["TOPIC"]
consumer = KafkaConsumer(bootstrap_servers=os.environ["BOOTSTRAP"], group_id=None,
                         enable_auto_commit=False, auto_offset_reset="earliest",
                         fetch_max_wait_ms=100)
parts = None
while not parts:
    parts = consumer.partitions_for_topic(topic)
consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
while not select.select([sys.stdin], [], [], 0)[0]:
    for records in consumer.poll(timeout_ms=200).values():
        for r in records:
            print(json.dumps({"id": dict(r.headers)["id"].decode()}), flush=True)
consumer.close()
sys.exit(0)
"""


@dataclass
class World(WithSessions):
    """The namespaces' objects (sessions, splits, deployments), the broker, the topic."""

    kube: Kube
    namespace: str
    operator_namespace: str
    broker: KafkaBroker
    original: str


def app_topic(obj: Obj) -> str | None:
    for e in obj["spec"]["template"]["spec"]["containers"][0].get("env") or []:
        if e["name"] == KAFKA_TOPIC_VAR:
            return str(e.get("value"))
    return None


@pytest.fixture
async def world(
    kube: Kube,
    kube_api: KubeApi,
    moto_endpoint: SqsEndpoint,
    namespaces: tuple[str, str],
    local_runtime: LocalRuntime,
    kafka_broker: KafkaBroker,
    tmp_path: Path,
) -> AsyncIterator[World]:
    namespace, operator_namespace = namespaces
    original = f"{namespace}.views"
    await kafka_app(
        kube, kafka_broker, namespaces, original=original, group=GROUP, partitions=PARTITIONS
    )
    base = operator_settings(kube_api, moto_endpoint, operator_namespace)
    operator = base.operator.model_copy(
        update={
            "worker_state_dir": str(tmp_path),
            "worker_env": {**base.operator.worker_env, "PYMIRROR_KAFKA__DRAIN_TIMEOUT": "0"},
        }
    )
    settings: Settings = base.model_copy(update={"operator": operator})
    async with operating(kube, settings, namespace):
        yield World(kube, namespace, operator_namespace, kafka_broker, original)


class Dev:
    """One developer's running ``pymirror exec`` and the ids its consumer printed."""

    def __init__(self, user: str, process: asyncio.subprocess.Process) -> None:
        self.user = user
        self.process = process
        self.ids: list[str] = []

    async def line(self) -> dict[str, object]:
        doc: dict[str, object] = await next_json(self.process, f"{self.user}'s command ended")
        return doc

    async def read(self, expect: int) -> None:
        while len(self.ids) < expect:
            self.ids.append(str((await self.line())["id"]))

    async def finish(self) -> tuple[int, str, str]:
        assert self.process.stdin is not None
        self.process.stdin.write(b"stop\n")
        await self.process.stdin.drain()
        async with asyncio.timeout(HANG):
            out, err = await self.process.communicate()
        assert self.process.returncode is not None
        return self.process.returncode, out.decode(), err.decode()


async def start(w: World, kube_api: KubeApi, tmp_path: Path, user: str) -> Dev:
    config = split_config(
        tmp_path / f"{user}.yaml",
        user,
        target="app",
        queue=KAFKA_TOPIC_ID,
        queue_type="Kafka",
        key="user",
    )
    env = cli_env(w.operator_namespace, user, BOOTSTRAP=w.broker.bootstrap)
    process = await start_exec(
        kube_api, w.namespace, config, [sys.executable, "-c", CONSUMER], env=env
    )
    return Dev(user, process)


async def test_two_developers_exec_on_one_kafka_topic_each_consumer_gets_exactly_its_records(
    world: World, kube_api: KubeApi, tmp_path: Path
) -> None:
    w = world
    devs = [await start(w, kube_api, tmp_path, "alice"), await start(w, kube_api, tmp_path, "bob")]
    try:
        topics: dict[str, str] = {}
        for dev in devs:
            env = (await dev.line())["env"]
            assert isinstance(env, dict)
            topics[dev.user] = env[KAFKA_TOPIC_VAR]
            assert topics[dev.user] != w.original  # the command got its session's topic
        assert topics["alice"] != topics["bob"]
        (split,) = (await w.splits.list()).items
        await watch_until(
            w.workers,
            split["status"]["workerDeployment"],
            lambda d: d.get("status", {}).get("readyReplicas") == 1,
        )
        app = await w.deployments.get("app")
        fallback = app_topic(app)
        assert fallback not in (None, w.original, *topics.values())  # the app reads the fallback
        assert fallback is not None

        records = make_records(15, PARTITIONS, USERS)
        await produce(w.broker, w.original, records)
        by_user = {
            u: sorted(r.id for r in records if dict(r.headers)["user"] == u.encode()) for u in USERS
        }
        async with asyncio.timeout(HANG):
            await asyncio.gather(*(d.read(len(by_user[d.user])) for d in devs))
        rest = await read_all(
            w.broker, fallback, PARTITIONS, expect=len(by_user["zed"]), within=HANG
        )

        for dev in devs:
            code, out, err = await dev.finish()
            assert code == 0, err
            dev.ids.extend(json.loads(line)["id"] for line in out.splitlines())  # none expected
            assert sorted(dev.ids) == by_user[dev.user]  # exactly its records, once each
        assert sorted(g.id for g in rest) == by_user["zed"]  # the workload gets the rest

        assert (await w.sessions.list()).items == []  # each exec waited until it was gone
        async with asyncio.timeout(HANG):
            await wait_empty(w.splits)  # the last one left: the topic was handed back
        app = await watch_until(w.deployments, "app", lambda o: app_topic(o) == w.original)
        assert app_topic(app) == w.original  # the env is restored
        left = set(await list_topics(w.broker))
        assert not left & {*topics.values(), fallback}  # the temporary topics are deleted
        assert w.original in left
    finally:
        for dev in devs:
            await reap(dev.process)
