"""A Kafka split worker following its QueueSplit reports session ends and the hand-back.

Real servers: the test API server and noida-db/Tansu. ``pymirror worker kafka --split``
runs as a child process; every wait is on the status it writes (watched) or on records
read back; ``HANG`` only bounds a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from registry.objects import Kube, Objects
from registry.session_models import QueueSplit
from tests.integration.kafka.support import (
    create_topics,
    list_topics,
    make_records,
    produce,
    read_all,
    worker_argv,
)
from tests.servers.kafka import KafkaBroker
from tests.servers.kube import KubeApi

pytestmark = pytest.mark.integration

HANG = 120.0
NAME = "views"
ALICE = "dev/alice"
PARTITIONS = 2


@pytest.fixture
async def kube(kube_api: KubeApi, kube_crds: list[str]) -> AsyncIterator[Kube]:
    async with Kube.from_kubeconfig(kube_api.kubeconfig) as client:
        yield client


@pytest.fixture
def splits(kube: Kube, unique_name: str) -> Objects:
    return kube.objects(QueueSplit.RESOURCE, unique_name)


def split_body(original: str, fallback: str, group: str, alice: str) -> dict[str, Any]:
    return {
        "apiVersion": "pymirror.dev/v1alpha1",
        "kind": "QueueSplit",
        "metadata": {"name": NAME},
        "spec": {
            "kind": "Kafka",
            "original": original,
            "fallback": fallback,
            "groupId": group,
            "clientConfig": "base",
            "target": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "shop",
                "namespace": "shop",
            },
            "routes": [
                {
                    "session": ALICE,
                    "sequence": 1,
                    "destination": alice,
                    "messageFilter": {"user": "^alice$"},
                }
            ],
        },
    }


def status_of(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("status") or {}


@contextlib.asynccontextmanager
async def child(argv: list[str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """The worker process (output to ``log``); killed on exit if still running."""
    env = {**os.environ, "PYMIRROR_KAFKA__COMMIT_INTERVAL": "0.1"}
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_session_end_and_hand_back_are_reported_and_the_worker_exits_0(
    kafka_broker: KafkaBroker,
    kube_api: KubeApi,
    splits: Objects,
    unique_name: str,
    tmp_path: Path,
) -> None:
    """1. alice's route splits 40 records: 20 reach her topic, 20 the fallback;
    2. the hand-back: the route goes and ``spec.handBack`` is set; nobody consumes:
    3. alice's end is reported (her topic deleted), and the hand-back's phases come in
       order - ``Draining`` (the workload's lag, 40 once her leftovers are routed
       again), ``Returning``, ``Done`` - the fallback is deleted and the process exits 0."""
    original, fallback, alice = unique_name, f"{unique_name}-fb", f"{unique_name}-alice"
    group = f"{unique_name}-g"
    await create_topics(kafka_broker, PARTITIONS, original, fallback, alice)
    await splits.create(split_body(original, fallback, group, alice))
    argv = worker_argv(kafka_broker, original, group, fallback, tmp_path / "unused.json")
    at = argv.index("--sessions-file")
    argv[at : at + 2] = ["--split", f"{unique_name}/{NAME}"]
    argv += ["--kubeconfig", str(kube_api.kubeconfig), "--drain-timeout", "3"]
    argv += ["--hand-back-file", str(tmp_path / "hand-back")]
    log = tmp_path / "worker.log"
    async with child(argv, log) as proc:
        sent = make_records(40, PARTITIONS, ["alice", "bob"])
        await produce(kafka_broker, original, sent)
        await read_all(kafka_broker, alice, PARTITIONS, expect=20)
        await read_all(kafka_broker, fallback, PARTITIONS, expect=20)
        obj = await splits.get(NAME)
        assert status_of(obj).get("activeSessions") == 1, log.read_text()[-3000:]
        version = obj["metadata"]["resourceVersion"]
        await splits.merge_patch(NAME, {"spec": {"routes": [], "handBack": True}})
        phases: list[tuple[Any, Any]] = []
        ended_before_done = False
        async with (
            asyncio.timeout(HANG),
            splits.watch(resource_version=version, field_selector=f"metadata.name={NAME}") as w,
        ):
            async for event in w:
                status = status_of(event.object)
                hand_back = status.get("handBack") or {}
                phase = (hand_back.get("phase"), hand_back.get("remaining"))
                if phase[0] is not None and (not phases or phases[-1][0] != phase[0]):
                    phases.append(phase)
                if ALICE in (status.get("endedSessions") or []) and phase[0] != "Done":
                    ended_before_done = True
                if phase[0] == "Done":
                    break
        async with asyncio.timeout(HANG):
            code = await proc.wait()
    out = log.read_text()[-3000:]
    assert code == 0, out
    assert [p for p, _ in phases] == ["Draining", "Returning", "Done"], (phases, out)
    assert phases[0][1] == 40  # the fallback's 20 and alice's 20 routed again
    assert phases[-1][1] == 0
    assert ended_before_done, "alice's end was not reported before the hand-back finished"
    status = status_of(await splits.get(NAME))
    assert status["endedSessions"] == [ALICE]
    assert status["activeSessions"] == 0
    topics = await list_topics(kafka_broker)
    assert alice not in topics
    assert fallback not in topics
