"""A second session on a workload the first one's splits already patched, end to end.

The operator runs for real as in test_operator.py (``controller.build``, the sandbox's
local runtime running the app and the split workers as processes, moto). Once a first
session is Ready, the app's env names fallback queues; a second session must still plan
the true originals (from the ``pymirror.dev/original-env`` annotation) and join the same
QueueSplits, whether the env var holds a queue URL or a name, and for ids naming several
queues (``regexPattern``, ``namesFromJsonMap``), whose split names include the original.
``namesFromJsonMap`` queues of one env var get one value: the JSON object with each key
set to the session's own temporary queue. Every wait is on a watched status change.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from pymirror.operator.planning import split_name
from registry.env_patch import ORIGINAL_ENV_ANNOTATION
from registry.objects import Obj
from registry.workloads import WorkloadRef
from tests.integration.operator.support import (
    APP,
    IDLE,
    REGISTRIES,
    Cluster,
    app_body,
    phase_is,
    registry_body,
    session_body,
    sqs_in,
    watch_session,
)
from tests.integration.sqs.support import make_queue

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MEMES_VAR, ADS_VAR, JSON_VAR = "MEMES_QUEUE_NAME", "ADS_QUEUE_NAME", "QUEUES_JSON"


@dataclass
class World(Cluster):
    memes: str
    """The meme queue's URL."""
    ads: str
    """The ad queue's URL."""

    @property
    def ref(self) -> WorkloadRef:
        return WorkloadRef("Deployment", self.namespace, APP)

    async def app_env(self) -> dict[str, str]:
        app = await self.deployments.get(APP)
        main = app["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value", "") for e in main.get("env") or []}

    async def ready(self, name: str, queue_id: str) -> Obj:
        await self.sessions.create(session_body(name, queue_id))
        obj = await watch_session(self.sessions, name, phase_is("Ready", "Failed"))
        assert obj is not None
        assert obj["status"]["phase"] == "Ready", obj["status"]
        return obj


def app_registry() -> Obj:
    """One id per way of naming queues: an env var, a regexPattern naming two, a JSON map."""
    named = {"queueType": "SQS", "nameSource": {"regexPattern": "_QUEUE_NAME$"}}
    json_map = {**sqs_in(JSON_VAR), "namesFromJsonMap": True}
    return registry_body(
        "app-queues", {"memes": sqs_in(MEMES_VAR), "named": named, "json": json_map}
    )


@pytest.fixture(params=["url", "name"])
async def world(request: pytest.FixtureRequest, cluster: Cluster) -> AsyncIterator[World]:
    """The app with its two queues in MEMES_QUEUE_NAME, ADS_QUEUE_NAME and QUEUES_JSON
    (as URLs or as names: the fixture's parameter), its registry, and the operator."""
    namespace = cluster.namespace
    memes = await make_queue(cluster.sqs, f"memes-{namespace}")
    ads = await make_queue(cluster.sqs, f"ads-{namespace}")

    def form(url: str) -> str:
        return url if request.param == "url" else url.rpartition("/")[2]

    names = json.dumps({"memes": form(memes), "ads": form(ads)})
    env = [
        {"name": MEMES_VAR, "value": form(memes)},
        {"name": ADS_VAR, "value": form(ads)},
        {"name": JSON_VAR, "value": names},
    ]
    await cluster.deployments.create(app_body(env, name=APP, image="local", command=IDLE))
    await cluster.kube.objects(REGISTRIES, namespace).create(app_registry())
    async with cluster.operating():
        yield cluster.extended(World, memes=form(memes), ads=form(ads))


def by_original(obj: Obj) -> dict[str, dict[str, Any]]:
    return {q["original"]: q for q in obj["status"]["queues"]}


async def routed_sessions(world: World, split: str) -> list[str]:
    routes = (await world.splits.get(split))["spec"].get("routes") or []
    return sorted(r["session"] for r in routes)


async def test_a_second_session_plans_the_true_original_of_an_env_var(world: World) -> None:
    alice = await world.ready("alice", "memes")
    assert (await world.app_env())[MEMES_VAR] != world.memes  # the app reads the fallback

    bob = await world.ready("bob", "memes")

    (first,), (second,) = alice["status"]["queues"], bob["status"]["queues"]
    assert first["original"] == second["original"] == world.memes
    assert first["split"] == second["split"] == split_name(world.ref, "memes")
    assert second["temporary"] not in (first["temporary"], world.memes)
    assert ("://" in second["value"]) == ("://" in world.memes)  # the original's form
    assert await routed_sessions(world, second["split"]) == [
        f"{world.namespace}/alice",
        f"{world.namespace}/bob",
    ]


async def test_a_second_session_joins_the_splits_of_a_regex_pattern_naming_two_queues(
    world: World,
) -> None:
    alice = await world.ready("alice", "named")
    env = await world.app_env()
    assert world.memes not in (env[MEMES_VAR], env[ADS_VAR])  # both patched to fallbacks
    app = await world.deployments.get(APP)
    assert ORIGINAL_ENV_ANNOTATION in app["metadata"]["annotations"]

    bob = await world.ready("bob", "named")

    expected = {
        world.memes: split_name(world.ref, f"named::{world.memes}"),
        world.ads: split_name(world.ref, f"named::{world.ads}"),
    }
    for obj in (alice, bob):
        queues = by_original(obj)
        assert {o: q["split"] for o, q in queues.items()} == expected
    for split in expected.values():
        assert await routed_sessions(world, split) == [
            f"{world.namespace}/alice",
            f"{world.namespace}/bob",
        ]
    assert len((await world.splits.list()).items) == 2  # no split for a fallback "original"


async def test_json_map_queues_get_one_merged_value_and_a_second_session_joins_them(
    world: World,
) -> None:
    alice = await world.ready("alice", "json")
    bob = await world.ready("bob", "json")

    for obj in (alice, bob):
        queues = by_original(obj)
        assert set(queues) == {world.memes, world.ads}
        memes, ads = queues[world.memes], queues[world.ads]
        assert memes["split"] == split_name(world.ref, f"json::{world.memes}")
        assert ads["split"] == split_name(world.ref, f"json::{world.ads}")
        assert memes["envVar"] == ads["envVar"] == JSON_VAR
        assert memes["value"] == ads["value"]  # one value for the one env var
        value = json.loads(memes["value"])
        assert set(value) == {"memes", "ads"}  # each key set to the session's own queue
        assert value["memes"].rpartition("/")[2] == memes["temporary"]
        assert value["ads"].rpartition("/")[2] == ads["temporary"]
        assert ("://" in value["memes"]) == ("://" in world.memes)  # the original's form
    assert (
        by_original(alice)[world.memes]["temporary"] != by_original(bob)[world.memes]["temporary"]
    )
    patched = json.loads((await world.app_env())[JSON_VAR])
    assert set(patched) == {"memes", "ads"}
    assert not {world.memes, world.ads} & set(patched.values())  # the app reads fallbacks
