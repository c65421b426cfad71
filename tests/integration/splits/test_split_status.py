"""QueueSplitSource's status writes against the real test API server.

Two replicas' ``endedSessions`` add up (guarded read-modify-write, not a blind merge of
the list); the writer writes a change at once and the counters every interval; the
status left by an earlier worker is kept by the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pymirror.worker.split_source import QueueSplitSource
from registry.objects import Kube, Objects
from registry.session_models import QueueSplit
from tests.servers.kube import KubeApi

pytestmark = pytest.mark.integration

HANG = 60.0
NAME = "orders"


@pytest.fixture
async def kube(kube_api: KubeApi, kube_crds: list[str]) -> AsyncIterator[Kube]:
    async with Kube.from_kubeconfig(kube_api.kubeconfig) as client:
        yield client


@pytest.fixture
async def splits(kube: Kube, unique_name: str) -> Objects:
    objects = kube.objects(QueueSplit.RESOURCE, unique_name)
    await objects.create(
        {
            "apiVersion": "pymirror.dev/v1alpha1",
            "kind": "QueueSplit",
            "metadata": {"name": NAME},
            "spec": {
                "kind": "SQS",
                "original": "orders",
                "target": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "shop",
                    "namespace": "shop",
                },
                "routes": [
                    {"session": "dev/bob", "sequence": 1, "destination": "tmp-bob"},
                ],
            },
        }
    )
    return objects


async def status(splits: Objects) -> dict[str, Any]:
    return (await splits.get(NAME)).get("status") or {}


async def until(splits: Objects, check: Callable[[dict[str, Any]], bool]) -> None:
    """Until the object's status satisfies ``check`` (read, then watched)."""
    obj = await splits.get(NAME)
    if check(obj.get("status") or {}):
        return
    version = obj["metadata"]["resourceVersion"]
    async with (
        asyncio.timeout(HANG),
        splits.watch(resource_version=version, field_selector=f"metadata.name={NAME}") as w,
    ):
        async for event in w:
            if check(event.object.get("status") or {}):
                return


async def test_two_replicas_ended_sessions_add_up(
    kube: Kube, splits: Objects, unique_name: str
) -> None:
    one = QueueSplitSource(kube, unique_name, NAME)
    two = QueueSplitSource(kube, unique_name, NAME)
    await one.open()
    await two.open()
    one.session_ended("dev/alice")
    two.session_ended("dev/carol")
    await asyncio.gather(one.write_status(), two.write_status())
    got = await status(splits)
    assert got["endedSessions"] == ["dev/alice", "dev/carol"]
    assert got["activeSessions"] == 1


async def test_a_restarted_worker_keeps_what_the_earlier_one_reported(
    kube: Kube, splits: Objects, unique_name: str
) -> None:
    earlier = QueueSplitSource(kube, unique_name, NAME)
    await earlier.open()
    earlier.session_ended("dev/alice")
    await earlier.write_status()
    later = QueueSplitSource(kube, unique_name, NAME)
    await later.open()
    assert later.ended_sessions == ["dev/alice"]
    later.session_ended("dev/dave")
    await later.final_report()
    assert (await status(splits))["endedSessions"] == ["dev/alice", "dev/dave"]


async def test_the_writer_writes_a_change_at_once_and_the_counters_every_interval(
    kube: Kube, splits: Objects, unique_name: str
) -> None:
    read = 0

    def counters() -> dict[str, Any]:
        return {"read": read, "forwarded": {"dev/bob": read}}

    source = QueueSplitSource(kube, unique_name, NAME, report_interval=0.1, counters=counters)
    await source.open()
    done = asyncio.Event()
    writer = asyncio.create_task(source.run_reports(done))
    try:
        await until(splits, lambda s: s.get("counters", {}).get("read") == 0)
        read = 7  # no change to write: the periodic write carries it
        await until(splits, lambda s: s.get("counters", {}).get("read") == 7)
        source.hand_back_progress("Draining", 2)
        await until(splits, lambda s: s.get("handBack") == {"phase": "Draining", "remaining": 2})
    finally:
        done.set()
        writer.cancel()
    got = await status(splits)
    assert got["counters"] == {"read": 7, "forwarded": {"dev/bob": 7}}
    assert got["activeSessions"] == 0


async def test_a_deleted_split_ends_the_final_report_without_retrying(
    kube: Kube, splits: Objects, unique_name: str
) -> None:
    source = QueueSplitSource(kube, unique_name, NAME)
    await source.open()
    await splits.delete(NAME)
    source.session_ended("dev/alice")
    async with asyncio.timeout(HANG):
        assert await source.final_report() is False
