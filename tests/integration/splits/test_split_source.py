"""QueueSplitSource against the real test API server (pymirror/worker/split_source.py).

Each test creates its QueueSplit in a namespace of its own and waits on what the
source did (an ``apply`` call, the status it wrote, the watch ending), never on a
wall-clock budget; ``HANG`` only bounds a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from pymirror.worker.runtime import run_worker
from pymirror.worker.split_source import QueueSplitError, QueueSplitSource
from registry.objects import Kube, Objects
from registry.session_models import QueueSplit
from splitter.filters import MessageView
from splitter.routing import SessionRoute
from tests.servers.kube import KubeApi

pytestmark = pytest.mark.integration

HANG = 60.0
NAME = "orders"


@pytest.fixture
async def kube(kube_api: KubeApi, kube_crds: list[str]) -> AsyncIterator[Kube]:
    async with Kube.from_kubeconfig(kube_api.kubeconfig) as client:
        yield client


@pytest.fixture
def splits(kube: Kube, unique_name: str) -> Objects:
    return kube.objects(QueueSplit.RESOURCE, unique_name)


def route(session: str, sequence: int, **extra: Any) -> dict[str, Any]:
    user = session.rpartition("/")[2]
    return {
        "session": session,
        "sequence": sequence,
        "destination": f"tmp-{user}",
        "messageFilter": {"user": f"^{user}$"},
        **extra,
    }


def split_body(*routes: dict[str, Any]) -> dict[str, Any]:
    return {
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
            "routes": list(routes),
        },
    }


def sessions(routes: list[SessionRoute]) -> list[str]:
    return [r.session_id for r in routes]


class Applier:
    """``apply`` that records each call (sessions, and the appliedGeneration the object had
    at that moment) and answers from ``answers`` (True once they run out)."""

    def __init__(self, splits: Objects, *answers: bool) -> None:
        self.splits = splits
        self.answers = list(answers)
        self.calls: asyncio.Queue[tuple[list[str], int | None]] = asyncio.Queue()
        self.count = 0

    async def __call__(self, routes: list[SessionRoute]) -> bool:
        obj = await self.splits.get(NAME)
        self.count += 1
        await self.calls.put((sessions(routes), applied(obj)))
        return self.answers.pop(0) if self.answers else True

    async def next(self) -> tuple[list[str], int | None]:
        async with asyncio.timeout(HANG):
            return await self.calls.get()


def applied(obj: dict[str, Any]) -> int | None:
    return (obj.get("status") or {}).get("appliedGeneration")


async def wait_applied(splits: Objects, generation: int) -> None:
    """Until the object's status.appliedGeneration is ``generation`` (watched, not polled)."""
    async with asyncio.timeout(HANG), splits.watch(field_selector=f"metadata.name={NAME}") as w:
        async for event in w:
            if applied(event.object) == generation:
                return


async def generation_of(splits: Objects) -> int:
    return int((await splits.get(NAME))["metadata"]["generation"])


class Running:
    """``source.watch(apply, done)`` in a task."""

    def __init__(self, source: QueueSplitSource, apply: Applier) -> None:
        self.done = asyncio.Event()
        self.task = asyncio.create_task(source.watch(apply, self.done))

    async def ended(self) -> None:
        async with asyncio.timeout(HANG):
            await self.task

    async def stop(self) -> None:
        self.done.set()
        await self.ended()


@pytest.fixture
async def running() -> AsyncIterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        if not r.task.done():
            await r.stop()


async def test_open_reads_the_routes_in_sequence_order_with_compiled_filters(
    kube: Kube, splits: Objects, unique_name: str, running: list[Running]
) -> None:
    await splits.create(split_body(route("dev/carol", 7), route("dev/alice", 2)))
    source = QueueSplitSource(kube, unique_name, NAME)
    routes = await source.open()
    assert source.load() == routes
    assert [(r.session_id, r.sequence, r.destination) for r in routes] == [
        ("dev/alice", 2, "tmp-alice"),
        ("dev/carol", 7, "tmp-carol"),
    ]
    assert routes[0].filter.matches(MessageView({"user": ("Alice",)}, None))
    assert not routes[0].filter.matches(MessageView({"user": ("carol",)}, None))
    assert routes[0].filter.mode == "steal"
    # Once watching, the source acknowledges the generation the worker started with.
    running.append(Running(source, Applier(splits)))
    await wait_applied(splits, await generation_of(splits))


async def test_open_names_a_missing_object(kube: Kube, unique_name: str) -> None:
    source = QueueSplitSource(kube, unique_name, NAME)
    with pytest.raises(QueueSplitError, match=rf"QueueSplit {unique_name}/{NAME} does not exist"):
        await source.open()
    with pytest.raises(QueueSplitError, match="open"):
        source.load()


async def test_a_spec_change_is_applied_then_acknowledged(
    kube: Kube, splits: Objects, unique_name: str, running: list[Running]
) -> None:
    await splits.create(split_body(route("dev/alice", 1)))
    source = QueueSplitSource(kube, unique_name, NAME)
    await source.open()
    first = await generation_of(splits)
    apply = Applier(splits)
    running.append(Running(source, apply))
    await wait_applied(splits, first)
    await splits.merge_patch(
        NAME, {"spec": {"routes": [route("dev/alice", 1), route("dev/bob", 2)]}}
    )
    second = await generation_of(splits)
    assert second > first
    # apply saw the whole new list while the status still named the old generation ...
    assert await apply.next() == (["dev/alice", "dev/bob"], first)
    # ... and the new one is acknowledged after apply returned True.
    await wait_applied(splits, second)
    assert source.applied_generation == second


async def test_a_change_between_open_and_watch_is_not_missed(
    kube: Kube, splits: Objects, unique_name: str, running: list[Running]
) -> None:
    await splits.create(split_body(route("dev/alice", 1)))
    source = QueueSplitSource(kube, unique_name, NAME)
    assert sessions(await source.open()) == ["dev/alice"]
    await splits.merge_patch(NAME, {"spec": {"routes": [route("dev/bob", 3)]}})
    apply = Applier(splits)
    running.append(Running(source, apply))
    assert (await apply.next())[0] == ["dev/bob"]
    await wait_applied(splits, await generation_of(splits))


async def test_a_status_only_change_does_not_call_apply(
    kube: Kube, splits: Objects, unique_name: str, running: list[Running]
) -> None:
    await splits.create(split_body(route("dev/alice", 1)))
    source = QueueSplitSource(kube, unique_name, NAME)
    await source.open()
    first = await generation_of(splits)
    apply = Applier(splits)
    running.append(Running(source, apply))
    await wait_applied(splits, first)
    await splits.patch_status(NAME, {"activeSessions": 1, "counters": {"read": 5}})
    await splits.merge_patch(NAME, {"metadata": {"labels": {"seen": "yes"}}})  # no generation
    await splits.merge_patch(NAME, {"spec": {"routes": [route("dev/bob", 2)]}})
    # Events come in order: the first apply is the spec change; nothing came before it.
    assert await apply.next() == (["dev/bob"], first)
    assert apply.count == 1
    await wait_applied(splits, await generation_of(splits))
    assert apply.count == 1


async def test_a_refused_change_is_offered_again(
    kube: Kube, splits: Objects, unique_name: str, running: list[Running]
) -> None:
    await splits.create(split_body(route("dev/alice", 1)))
    source = QueueSplitSource(kube, unique_name, NAME, backoff=0.01)
    await source.open()
    first = await generation_of(splits)
    apply = Applier(splits, False, False)
    running.append(Running(source, apply))
    await wait_applied(splits, first)
    await splits.merge_patch(NAME, {"spec": {"routes": [route("dev/bob", 2)]}})
    second = await generation_of(splits)
    for _ in range(3):  # refused, refused, accepted: never acknowledged before that
        assert await apply.next() == (["dev/bob"], first)
    await wait_applied(splits, second)
    assert apply.count == 3


async def test_hand_back_applies_no_sessions(
    kube: Kube, splits: Objects, unique_name: str, running: list[Running]
) -> None:
    await splits.create(split_body(route("dev/alice", 1)))
    source = QueueSplitSource(kube, unique_name, NAME)
    await source.open()
    apply = Applier(splits)
    running.append(Running(source, apply))
    await splits.merge_patch(NAME, {"spec": {"handBack": True}})
    assert (await apply.next())[0] == []
    await wait_applied(splits, await generation_of(splits))


async def test_a_bad_regex_rejects_that_route_only(
    kube: Kube, splits: Objects, unique_name: str, running: list[Running]
) -> None:
    bad = route("dev/bob", 2, messageFilter={"user": "^(bob$"})
    await splits.create(split_body(route("dev/alice", 1), bad, route("dev/carol", 3)))
    source = QueueSplitSource(kube, unique_name, NAME)
    assert sessions(await source.open()) == ["dev/alice", "dev/carol"]
    assert [r.session for r in source.rejected] == ["dev/bob"]
    assert "dev/bob" in source.rejected[0].error
    apply = Applier(splits)
    running.append(Running(source, apply))
    bad_jq = route("dev/dave", 4, jqFilter=".user ===")
    await splits.merge_patch(NAME, {"spec": {"routes": [route("dev/alice", 1), bad_jq]}})
    assert (await apply.next())[0] == ["dev/alice"]
    assert [r.session for r in source.rejected] == ["dev/dave"]


async def test_the_objects_deletion_ends_the_watch(
    kube: Kube, splits: Objects, unique_name: str
) -> None:
    await splits.create(split_body(route("dev/alice", 1)))
    stopped = asyncio.Event()
    source = QueueSplitSource(kube, unique_name, NAME, on_deleted=stopped.set)
    await source.open()
    apply = Applier(splits)
    watching = Running(source, apply)
    await wait_applied(splits, await generation_of(splits))
    await splits.delete(NAME)
    await watching.ended()  # returns by itself: ``done`` was never set
    assert stopped.is_set()
    assert not watching.done.is_set()
    assert apply.count == 0  # no [] applied: the worker is stopped, not handed back


async def test_report_writes_the_counters(kube: Kube, splits: Objects, unique_name: str) -> None:
    await splits.create(split_body(route("dev/alice", 1), route("dev/bob", 2)))
    source = QueueSplitSource(kube, unique_name, NAME)
    await source.report({"read": 10, "fallback": 3, "forwarded": {"dev/alice": 4, "dev/bob": 3}})
    await source.report({"read": 12, "lag": 1, "forwarded": {"dev/alice": 6}})
    status = (await splits.get(NAME))["status"]
    assert status["counters"] == {
        "read": 12,
        "fallback": 3,
        "lag": 1,
        "forwarded": {"dev/alice": 6},
    }


class StandInWorker:
    """The least a ``SplitWorker`` is: runs until stopped, records its routes."""

    stats = None

    def __init__(self) -> None:
        self.stopped = asyncio.Event()
        self.routes: asyncio.Queue[list[str]] = asyncio.Queue()

    async def run(self) -> None:
        await self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()

    def set_routes(self, routes: Sequence[SessionRoute]) -> None:
        self.routes.put_nowait(sessions(list(routes)))


async def test_under_the_runtime_a_change_is_set_and_the_deletion_stops_the_worker(
    kube: Kube, splits: Objects, unique_name: str
) -> None:
    await splits.create(split_body(route("dev/alice", 1)))
    source = QueueSplitSource(kube, unique_name, NAME)
    await source.open()
    worker = StandInWorker()
    source.on_deleted = worker.stop
    task = asyncio.create_task(run_worker(worker, source))
    await wait_applied(splits, await generation_of(splits))
    await splits.merge_patch(NAME, {"spec": {"routes": [route("dev/bob", 2)]}})
    async with asyncio.timeout(HANG):
        assert await worker.routes.get() == ["dev/bob"]
    await wait_applied(splits, await generation_of(splits))
    await splits.delete(NAME)
    async with asyncio.timeout(HANG):
        await task  # the worker's own stop: run_worker returns normally
    assert worker.stopped.is_set()
    assert worker.routes.empty()
