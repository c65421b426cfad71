"""SplitWriter on the real API server: many concurrent changes of one QueueSplit.

Each test starts 30 writers at once on one QueueSplit (what 30 sessions joining one
split do) and checks that every change landed, none was lost to a 409, and that the
changes waiting meanwhile went out in fewer writes than changes.
"""

from __future__ import annotations

import asyncio

import pytest

from pymirror.operator.split_writes import SplitWriter, composed, merged
from registry.errors import NotFoundError
from registry.objects import Kube, Obj, Objects
from registry.session_models import QueueSplit
from tests.integration.operator.support import queue_split_body

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MANY = 30


@pytest.fixture
async def objects(kube: Kube, unique_name: str) -> Objects:
    """The QueueSplits of the test's namespace, holding one: ``orders``."""
    splits = kube.objects(QueueSplit.RESOURCE, unique_name)
    await splits.create(queue_split_body("orders"))
    return splits


def route(i: int) -> Obj:
    return {"session": f"shop/dev{i:02d}", "sequence": i + 1, "destination": f"q{i}"}


async def test_concurrent_route_changes_all_land_in_fewer_writes(
    objects: Objects,
) -> None:
    writer = SplitWriter(objects, attempts=8)

    def add(i: int):  # type: ignore[no-untyped-def]
        def put(obj: Obj) -> Obj | None:
            routes = obj["spec"].get("routes") or []
            if any(r["session"] == route(i)["session"] for r in routes):
                return None
            obj["spec"]["routes"] = sorted([*routes, route(i)], key=lambda r: r["sequence"])
            return obj

        return put

    results = await asyncio.gather(*(writer.update("orders", add(i)) for i in range(MANY)))
    stored = await objects.get("orders")
    assert [r["session"] for r in stored["spec"]["routes"]] == [
        route(i)["session"] for i in range(MANY)
    ]
    assert 1 <= writer.writes < MANY
    for i, written in enumerate(results):  # each caller gets an object holding its change
        assert route(i)["session"] in [r["session"] for r in written["spec"]["routes"]]
    assert stored["metadata"]["generation"] == 1 + writer.writes


async def test_concurrent_status_changes_compose_and_one_failing_change_fails_alone(
    objects: Objects,
) -> None:
    writer = SplitWriter(objects, attempts=8)

    def record(i: int):  # type: ignore[no-untyped-def]
        def add(obj: Obj) -> Obj | None:
            have = (obj.get("status") or {}).get("temporaryResources") or []
            mine = {"name": f"q{i}", "role": "session", "session": f"shop/dev{i:02d}"}
            return None if mine in have else {"temporaryResources": [*have, mine]}

        return add

    def broken(obj: Obj) -> Obj | None:
        raise ValueError("this change is wrong")

    changes = [writer.status("orders", record(i)) for i in range(MANY)]
    changes.insert(MANY // 2, writer.status("orders", broken))
    changes.append(writer.status("orders", lambda o: {"workload": {"state": "RolledOut"}}))
    results = await asyncio.gather(*changes, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1
    assert isinstance(failed[0], ValueError)
    status = (await objects.get("orders"))["status"]
    assert sorted(r["name"] for r in status["temporaryResources"]) == sorted(
        f"q{i}" for i in range(MANY)
    )
    assert status["workload"] == {"state": "RolledOut"}
    assert 1 <= writer.writes < MANY


async def test_a_missing_split_fails_every_caller_and_leaves_nothing_behind(
    kube: Kube, unique_name: str
) -> None:
    objects = kube.objects(QueueSplit.RESOURCE, unique_name)
    writer = SplitWriter(objects, attempts=8)
    results = await asyncio.gather(
        *(writer.status("absent", lambda o: {"workerDeployment": "w"}) for _ in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(r, NotFoundError) for r in results)
    assert writer.writes == 0
    assert not writer._pending
    assert not writer._locks


def test_merge_patches_compose_like_applying_them_in_turn() -> None:
    target = {"a": {"x": 1, "y": 2}, "b": [1], "c": 3}
    first = {"a": {"x": None, "z": 4}, "b": [2]}
    then = {"a": {"y": 5}, "c": None}
    assert merged(merged(target, first), then) == merged(target, composed(first, then))
    assert merged(target, composed(first, then)) == {"a": {"y": 5, "z": 4}, "b": [2]}
