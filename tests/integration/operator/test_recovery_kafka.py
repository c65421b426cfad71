"""kill -9 at every named step of a Kafka split, a restart, and the same end state as a
clean run (test_recovery.py does the same for SQS splits).

``pymirror operator`` runs as a process with ``PYMIRROR_OPERATOR_KILL_AT=<point>``
(pymirror/operator/fault_points.py): it SIGKILLs itself when the code path reaches that
step of a Kafka session's provisioning (its creation) or of its end (its deletion once
Ready). The test waits for the exit by signal 9, restarts the operator without the
variable and drives the session to its end. The last test kills the split worker
instead (SIGKILL to the process the local runtime runs for the operator's worker
Deployment) while it forwards, and lets the runtime restart it.

The world: a real broker (``kafka_broker``: Tansu, and noida-db for the end points; see
``TANSU_ONLY``), the original topic,
the operator namespace's MirrordKafkaClientConfig, the idle Deployment ``app`` that
reads the topic named in its env with its group (``support.kafka_app``), the local
runtime running the app and the worker (``pymirror worker kafka --split``, drain timeout
0: at the hand-back what the workload did not consume on the fallback goes back to the
original). The test plays both consumers: alice's local process (her session's topic)
and the workload (the fallback), each reading from the start without committing.

The end state must be a clean run's: the session gone, no QueueSplit (so no recorded
topic), no worker Deployment, the app's pod template exactly as before and the
original-env annotation gone, no ``mirrord-tmp-*`` topic of the original on the broker.

The records, and the invariant on them: ``early`` (for nobody) are produced to the
original before the kill, before any worker exists; ``late`` (alice's and nobody's)
after the restart, once alice is Ready (for the end points: before the kill, also once
Ready). Then:

* alice's topic holds exactly her ``late`` records, each once (the right consumer,
  exactly), and nothing else;
* the fallback holds exactly ``early`` and nobody's ``late``, each once, and none of
  alice's (the workload gets what matches no session);
* after the hand-back, the original from the workload group's committed offsets on
  (where the restored workload resumes) holds every record of ``early`` and ``late``
  exactly once: nothing lost. Every record comes back there once by design (at least
  once for what a consumer did not commit): alice's consumer and the workload read
  without committing, so alice's end routes her records again (to the fallback: no
  session is left) and the hand-back moves the fallback's unconsumed records back.

A kill -9 of the worker re-reads from its last commit, so there "each once" becomes "at
least once" (duplicates, never a loss) on alice's topic, the fallback and the original;
which consumer gets a record stays exact.

Every wait is on a watched change, a process exit or records read; ``HANG`` only bounds
a hang.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from pymirror.operator.fault_points import POINTS
from pymirror.operator.kafka_splits import is_temporary_topic
from pymirror.operator.worker_deployments import worker_name
from pymirror.sandbox.runtime import LocalRuntime
from pymirror.settings import Settings
from registry.env_patch import ORIGINAL_ENV_ANNOTATION
from registry.objects import Obj
from tests.integration.kafka.support import (
    Got,
    Sent,
    committed_offsets,
    list_topics,
    make_records,
    produce,
)
from tests.integration.operator.support import (
    HANG,
    KAFKA_TOPIC_ID,
    Cluster,
    bounded,
    gone,
    kafka_app,
    killed_at,
    operator_process,
    phase_is,
    session_body,
    wait_empty,
    watch_session,
)
from tests.servers.kafka import KafkaBroker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
#: The provisioning points and the worker kill run on Tansu only: the kill points are the
#: operator's broker-independent steps, and the suite's time is bounded (both brokers: 24
#: cases, about 8 min under load). The end points run on both: the session's leave reads
#: the topic's offsets, and that is where noida-db once re-created a deleted topic.
TANSU_ONLY = pytest.mark.parametrize("kafka_broker", ["tansu"], indirect=True)

APP = "app"
SESSION = "alice"
GROUP = "views-group"
PARTITIONS = 2
USERS = ["alice", "nobody"]
#: Points a session's provisioning reaches (the kill comes while it is created), then
#: those its end reaches (the kill comes once it is deleted).
JOIN_POINTS = POINTS[: POINTS.index("session-ready") + 1]
END_POINTS = POINTS[len(JOIN_POINTS) :]


@dataclass
class World(Cluster):
    broker: KafkaBroker
    original: str
    logs: Path
    runtime: LocalRuntime

    def operator_settings(
        self, *, worker_env: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """The cluster's operator settings; the workers keep their member and hand-back
        files in ``logs`` (their emptyDir in a cluster: a directory that exists), skip the
        drain (the app reads nothing) and get ``worker_env`` too."""
        settings = super().operator_settings(**overrides)
        operator = settings.operator
        worker_env = {
            **operator.worker_env,
            "PYMIRROR_KAFKA__DRAIN_TIMEOUT": "0",
            **(worker_env or {}),
        }
        state = str(self.logs)
        operator = operator.model_copy(update={"worker_state_dir": state, "worker_env": worker_env})
        return settings.model_copy(update={"operator": operator})


@pytest.fixture
async def world(
    cluster: Cluster, kafka_broker: KafkaBroker, local_runtime: LocalRuntime, tmp_path: Path
) -> World:
    original = f"{cluster.namespace}.views"
    namespaces = (cluster.namespace, cluster.operator_namespace)
    await kafka_app(
        cluster.kube,
        kafka_broker,
        namespaces,
        original=original,
        group=GROUP,
        partitions=PARTITIONS,
    )
    return cluster.extended(
        World, broker=kafka_broker, original=original, logs=tmp_path, runtime=local_runtime
    )


def alice_session() -> Obj:
    return session_body(
        SESSION,
        KAFKA_TOPIC_ID,
        lease=120,
        target=APP,
        kind="Kafka",
        message_filter={"user": f"^{SESSION}$"},
    )


# --- reading topics as the consumers would -------------------------------------------------


async def read_until(w: World, topic: str, done: Callable[[list[Got]], bool]) -> list[Got]:
    """Every record of ``topic`` from the start (no group, nothing committed) until
    ``done(records)``, then one more short look for late extras."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=w.broker.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    await consumer.start()
    got: list[Got] = []

    async def fetch(timeout_ms: int) -> None:
        for tp, records in (await consumer.getmany(timeout_ms=timeout_ms)).items():
            got.extend(
                Got(tp.topic, tp.partition, r.offset, r.key, r.value, tuple(r.headers), r.timestamp)
                for r in records
            )

    try:
        async with asyncio.timeout(HANG):
            await fetch(200)  # at least once: aiokafka cannot stop a consumer never fetched
            while not done(got):
                await fetch(200)
        await fetch(300)
    except TimeoutError:
        raise AssertionError(f"{topic}: only {sorted(Counter(ids(got)).items())}") from None
    finally:
        await consumer.stop()
    return got


def ids(records: Iterable[Got | Sent]) -> list[str]:
    return [r.id for r in records]


def covers(wanted: Iterable[Sent]) -> Callable[[list[Got]], bool]:
    want = set(ids(wanted))
    return lambda got: want <= set(ids(got))


def check_holds(got: list[Got], wanted: list[Sent], *, exact: bool, where: str) -> None:
    """``got`` holds exactly the ids of ``wanted``: each once (``exact``), else at least once."""
    counts = Counter(ids(got))
    assert set(counts) == set(ids(wanted)), f"{where}: {sorted(counts)}"
    if exact:
        assert all(n == 1 for n in counts.values()), f"{where}: twice {counts.most_common(3)}"


def of(records: list[Sent], user: str) -> list[Sent]:
    return [r for r in records if dict(r.headers)["user"] == user.encode()]


# --- the steps -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    """The split's temporary topics while alice is Ready."""

    split: str
    mine: str
    fallback: str


async def ready(w: World) -> Topics:
    """Until alice is Ready and routed on her split; its topics (both on the broker)."""
    obj = await watch_session(w.sessions, SESSION, phase_is("Ready", "Failed"))
    assert obj is not None
    assert obj["status"]["phase"] == "Ready", obj["status"]
    (queue,) = obj["status"]["queues"]
    split = await w.splits.get(queue["split"])
    assert [r["session"] for r in split["spec"]["routes"]] == [f"{w.namespace}/{SESSION}"]
    (fallback,) = [r for r in split["status"]["temporaryResources"] if r["role"] == "fallback"]
    topics = Topics(str(queue["split"]), str(queue["temporary"]), str(fallback["name"]))
    assert {topics.mine, topics.fallback} <= set(await list_topics(w.broker))
    return topics


async def delivered(
    w: World, topics: Topics, early: list[Sent], late: list[Sent], *, exact: bool
) -> list[Got]:
    """Alice's topic holds her ``late`` records, the fallback ``early`` and the rest;
    what alice's topic held."""
    mine = of(late, SESSION)
    got = await read_until(w, topics.mine, covers(mine))
    check_holds(got, mine, exact=exact, where="alice's topic")
    rest = early + of(late, "nobody")
    in_fallback = await read_until(w, topics.fallback, covers(rest))
    check_holds(in_fallback, rest, exact=exact, where="the fallback")
    return got


async def temporary_topics(w: World) -> list[str]:
    name_format = w.operator_settings().kafka.name_format
    return [
        t
        for t in await list_topics(w.broker)
        if t.endswith(w.original) and is_temporary_topic(t, name_format)
    ]


async def end_state_is_clean(w: World, before: Obj) -> None:
    assert await watch_session(w.sessions, SESSION, gone) is None
    await bounded(wait_empty(w.splits))
    await bounded(wait_empty(w.workers))
    app = await w.deployments.get(APP)
    assert app["spec"]["template"] == before["spec"]["template"]
    assert ORIGINAL_ENV_ANNOTATION not in (app["metadata"].get("annotations") or {})


async def no_temporary_topic_left(w: World) -> None:
    assert await temporary_topics(w) == []


async def nothing_lost(w: World, records: list[Sent], *, exact: bool) -> None:
    """The original from the workload group's committed offsets on (where the restored
    workload resumes) holds every record: each once (``exact``), else at least once."""
    committed = await committed_offsets(w.broker, GROUP, w.original, PARTITIONS)

    def resumed(got: list[Got]) -> list[Got]:
        return [g for g in got if g.offset >= committed.get(g.partition, 0)]

    got = await read_until(w, w.original, lambda g: covers(records)(resumed(g)))
    check_holds(resumed(got), records, exact=exact, where="the original after the hand-back")


async def prepare(w: World) -> tuple[Obj, list[Sent]]:
    """The app before any session, and the ``early`` records, produced to the original."""
    before = await w.deployments.get(APP)
    early = make_records(6, PARTITIONS, ["nobody"])
    await produce(w.broker, w.original, early)
    return before, early


def later(count: int, start: int) -> list[Sent]:
    return make_records(count, PARTITIONS, USERS, start=start)


async def routed_then_deleted(w: World, early: list[Sent]) -> list[Sent]:
    """Once alice is Ready: the ``late`` records produced and each delivered exactly to
    its consumer (with ``early`` on the fallback); then her session deleted. ``late``."""
    topics = await ready(w)
    late = later(12, 100)
    await produce(w.broker, w.original, late)
    await delivered(w, topics, early, late, exact=True)
    await w.sessions.delete(SESSION)
    return late


def log(w: World, label: str) -> Path:
    return w.logs / f"operator-{label}.log"


# --- the tests -------------------------------------------------------------------------------


@TANSU_ONLY
@pytest.mark.parametrize("point", JOIN_POINTS)
async def test_a_kill_while_provisioning_a_kafka_split_converges_after_a_restart(
    world: World, point: str
) -> None:
    w = world
    settings = w.operator_settings()
    before, early = await prepare(w)
    async with operator_process(w, settings, log(w, "killed"), point) as first:
        await w.sessions.create(alice_session())
        await killed_at(first, log(w, "killed"), point)
    async with operator_process(w, settings, log(w, "restarted")):
        late = await routed_then_deleted(w, early)
        await end_state_is_clean(w, before)
    await nothing_lost(w, early + late, exact=True)
    await no_temporary_topic_left(w)


@pytest.mark.parametrize("point", END_POINTS)
async def test_a_kill_while_ending_a_kafka_split_converges_after_a_restart(
    world: World, point: str
) -> None:
    w = world
    settings = w.operator_settings()
    before, early = await prepare(w)
    async with operator_process(w, settings, log(w, "killed"), point) as first:
        await w.sessions.create(alice_session())
        late = await routed_then_deleted(w, early)
        await killed_at(first, log(w, "killed"), point)
    async with operator_process(w, settings, log(w, "restarted")):
        await end_state_is_clean(w, before)
    await nothing_lost(w, early + late, exact=True)
    await no_temporary_topic_left(w)


def worker_pids(w: World, split: str) -> list[int]:
    """The pids of the worker Deployment's processes, as the local runtime runs them."""
    controller = w.runtime.controllers.get(("Deployment", w.operator_namespace, worker_name(split)))
    return [] if controller is None else [pid for pod in controller.pods for pid in pod.pids]


@TANSU_ONLY
async def test_a_worker_killed_mid_stream_loses_no_record_and_routes_each_rightly(
    world: World,
) -> None:
    """SIGKILL to the worker as soon as the first record of a batch reached alice's topic,
    a second batch while it is down; the local runtime restarts it (its member file
    removes the dead member from the group first, which noida-db would never expire). The
    workers commit only when they stop (a commit interval of an hour), so at the kill
    every record forwarded is uncommitted, and the restarted worker must forward the
    record seen before the kill again: the kill came mid-stream, whatever the machine's
    speed. Each record reaches the right consumer, at least once."""
    w = world
    settings = w.operator_settings(worker_env={"PYMIRROR_KAFKA__COMMIT_INTERVAL": "3600"})
    before, early = await prepare(w)
    async with operator_process(w, settings, log(w, "operator")):
        await w.sessions.create(alice_session())
        topics = await ready(w)
        first, second = later(200, 100), later(200, 300)
        await produce(w.broker, w.original, first)
        (seen, *_) = await read_until(w, topics.mine, bool)
        dead = worker_pids(w, topics.split)
        assert dead, "the local runtime runs no worker"
        for pid in dead:
            os.kill(pid, signal.SIGKILL)
        await produce(w.broker, w.original, second)
        got = await delivered(w, topics, early, first + second, exact=False)
        assert Counter(ids(got))[seen.id] >= 2, "the restarted worker did not resume before it"
        restarted = worker_pids(w, topics.split)
        assert restarted, "the local runtime did not restart the worker"
        assert not set(restarted) & set(dead)
        await w.sessions.delete(SESSION)
        await end_state_is_clean(w, before)
    await nothing_lost(w, early + first + second, exact=False)
    await no_temporary_topic_left(w)
