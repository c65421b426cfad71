"""kill -9 of the operator at every named step, a restart, and the same end state.

``pymirror operator`` runs as a process (settings from the environment) with
``PYMIRROR_OPERATOR_KILL_AT=<point>`` (pymirror/operator/fault_points.py): it SIGKILLs
itself when the code path reaches that step. The test drives one session through (its
creation; for the teardown points also its deletion once Ready), waits for the exit by
signal 9, restarts the operator without the variable and drives the session to its end.
The end state must be a clean run's: the session gone, no QueueSplit, no worker
Deployment, the app's pod template exactly as before and the original-env annotation
gone, no temporary queue of the original left on moto; the message sent to the original
before the kill matches no session and must come out of the fallback (where the app
reads), which the test drains as the app would before the session's end. The app and
the split workers run as local processes (the sandbox's runtime, in this test's event
loop), as in test_operator.py.
Every wait is on a watched change, a process exit or moto's state; ``HANG`` only bounds
a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from registry.env_patch import ORIGINAL_ENV_ANNOTATION
from registry.objects import Obj
from tests.integration.operator.support import (
    APP,
    HANG,
    Cluster,
    gone,
    killed_at,
    meme_app,
    operator_process,
    phase_is,
    session_body,
    wait_empty,
    watch_session,
)
from tests.integration.sqs.support import Outgoing, attribute, receive_some, send

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

#: Points a session's provisioning reaches (the kill comes while it is created).
JOIN_POINTS = (
    "split-created",
    "session-queue-recorded",
    "session-queue-created",
    "fallback-recorded",
    "fallback-created",
    "env-patched",
    "worker-created",
    "route-added",
    "session-ready",
)
#: Points its end reaches (the kill comes once it is deleted).
END_POINTS = ("route-removed", "env-restored")
SESSION = "alice"


@dataclass
class World(Cluster):
    memes: str
    memes_url: str
    logs: Path


@pytest.fixture
async def world(cluster: Cluster, tmp_path: Path) -> World:
    memes_url = await meme_app(cluster.kube, cluster.sqs, cluster.namespace)
    return cluster.extended(
        World, memes=memes_url.rpartition("/")[2], memes_url=memes_url, logs=tmp_path
    )


def operator(
    world: World, kill_at: str | None, label: str
) -> contextlib.AbstractAsyncContextManager[asyncio.subprocess.Process]:
    """A running ``pymirror operator`` with the settings test_operator.py uses (log
    ``operator-<label>.log``); stopped with SIGTERM on exit if still running."""
    log = world.logs / f"operator-{label}.log"
    return operator_process(world, world.operator_settings(), log, kill_at)


async def temporary_queues(world: World) -> list[str]:
    """Temporary queues of the meme queue on moto (the format ends with the original)."""
    urls = await world.sqs.list_queues("mirrord-tmp")
    return sorted(u for u in urls if u.endswith(world.memes))


async def fallback_delivers(world: World, split: str, mid: str) -> None:
    """Until the split's fallback hands out the message ``mid``, received and deleted as the
    app would (the app here reads nothing; the hand-back waits for the fallback to drain)."""
    obj = await world.splits.get(split)
    (record,) = [r for r in obj["status"]["temporaryResources"] if r["role"] == "fallback"]
    async with asyncio.timeout(HANG):
        while True:
            got = await receive_some(world.sqs, str(record["url"]))
            if mid in [m["MessageAttributes"]["mid"]["StringValue"] for m in got]:
                return


async def ready(world: World) -> str:
    """Until the session is Ready, routed on its split, and the message sent before the
    kill came out of the fallback; the split's name."""
    obj = await watch_session(world.sessions, SESSION, phase_is("Ready", "Failed"))
    assert obj is not None
    assert obj["status"]["phase"] == "Ready", obj["status"]
    (queue,) = obj["status"]["queues"]
    assert queue["temporary"] in {u.rpartition("/")[2] for u in await temporary_queues(world)}
    split = await world.splits.get(queue["split"])
    assert [r["session"] for r in split["spec"]["routes"]] == [f"{world.namespace}/{SESSION}"]
    return str(queue["split"])


def template(obj: Obj) -> Any:
    return obj["spec"]["template"]


async def end_state_is_clean(world: World, before: Obj) -> None:
    assert await watch_session(world.sessions, SESSION, gone) is None
    async with asyncio.timeout(HANG):
        await wait_empty(world.splits)
        await wait_empty(world.workers)
    app = await world.deployments.get(APP)
    assert template(app) == template(before)
    assert ORIGINAL_ENV_ANNOTATION not in (app["metadata"].get("annotations") or {})
    assert await temporary_queues(world) == []


async def prepare(world: World) -> tuple[Obj, str]:
    """The app before any session, and the id of the message sent to the original."""
    before = await world.deployments.get(APP)
    mid = f"before-kill-{world.namespace}"
    await send(world.sqs, world.memes_url, [Outgoing(mid, {"author": attribute("nobody")})])
    return before, mid


@pytest.mark.parametrize("point", JOIN_POINTS)
async def test_a_kill_while_provisioning_converges_after_a_restart(
    world: World, point: str
) -> None:
    before, mid = await prepare(world)
    async with operator(world, point, "killed") as first:
        await world.sessions.create(session_body(SESSION, lease=120))
        await killed_at(first, world.logs / "operator-killed.log", point)
    async with operator(world, None, "restarted"):
        await fallback_delivers(world, await ready(world), mid)
        await world.sessions.delete(SESSION)
        await end_state_is_clean(world, before)


@pytest.mark.parametrize("point", END_POINTS)
async def test_a_kill_while_ending_converges_after_a_restart(world: World, point: str) -> None:
    before, mid = await prepare(world)
    async with operator(world, point, "killed") as first:
        await world.sessions.create(session_body(SESSION, lease=120))
        await fallback_delivers(world, await ready(world), mid)
        await world.sessions.delete(SESSION)
        await killed_at(first, world.logs / "operator-killed.log", point)
    async with operator(world, None, "restarted"):
        await end_state_is_clean(world, before)
