"""The operator end to end: SplitSessions on the real test API server, queues on moto.

Everything runs for real: the controller (``pymirror.operator.controller.build``, the same
wiring as ``pymirror operator``) in this test's event loop, the sandbox's local runtime
(pymirror/sandbox/runtime.py) running the meme app's stand-in Deployment and the split
workers' Deployments as local processes (``pymirror worker sqs --split``), and moto.
Each test has a namespace of its own for the sessions and another for the operator.
Every wait is on a watched status change or on moto's state; ``HANG`` only bounds a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pymirror.operator.controller import Controller
from pymirror.operator.gc import collect
from pymirror.operator.sessions import FINALIZER, KILLED_ANNOTATION
from pymirror.operator.splits import Splits
from pymirror.settings import Settings
from registry.env_patch import ORIGINAL_ENV_ANNOTATION, patch_env
from registry.errors import NotFoundError
from registry.objects import Kube, Obj
from registry.session_models import SplitSession
from registry.workloads import get_workload
from splitter.sqs.client import SqsClient
from tests.integration.operator.support import (
    APP,
    DEPLOYMENTS,
    HANG,
    MEME_VAR,
    REGISTRIES,
    Cluster,
    app_deployment,
    gone,
    meme_app,
    meme_registry,
    operator_settings,
    phase_is,
    session_body,
    wait_empty,
    watch_session,
)
from tests.servers.kube import KubeApi
from tests.servers.sqs import SqsEndpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@dataclass
class Operated(Cluster):
    """One test's world: its namespaces, the objects, moto, the running operator."""

    memes: str
    """The meme queue's name (what the app's env var holds)."""
    controller: Controller
    settings: Settings
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def app_env(self, obj: Obj) -> dict[str, str]:
        main = obj["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value", "") for e in main.get("env") or []}


@pytest.fixture
async def operated(cluster: Cluster) -> AsyncIterator[Operated]:
    settings = cluster.operator_settings()
    memes = await meme_app(cluster.kube, cluster.sqs, cluster.namespace)
    async with cluster.operating(settings) as controller:
        yield cluster.extended(
            Operated, memes=memes.rpartition("/")[2], controller=controller, settings=settings
        )


async def wait_session(env: Operated, name: str, check: Callable[[Obj | None], bool]) -> Obj | None:
    """:func:`watch_session`, every status seen appended to ``env.history[name]``."""
    return await watch_session(env.sessions, name, check, env.history.setdefault(name, []))


async def ready_session(env: Operated, name: str, *, lease: int = 30) -> Obj:
    await env.sessions.create(session_body(name, lease=lease))
    obj = await wait_session(env, name, phase_is("Ready", "Failed"))
    assert obj is not None
    assert obj["status"]["phase"] == "Ready", obj["status"]
    return obj


async def queue_exists(sqs: SqsClient, name: str) -> bool:
    return name in {url.rpartition("/")[2] for url in await sqs.list_queues(name)}


# --- tests ------------------------------------------------------------------------------------


async def test_a_session_goes_pending_then_ready_with_the_env_values_of_its_queue(
    operated: Operated,
) -> None:
    obj = await ready_session(operated, "alice")
    status = obj["status"]
    phases = [s.get("phase") for s in operated.history["alice"]]
    assert "Pending" in phases[: phases.index("Ready")]
    assert any(s.get("message") for s in operated.history["alice"] if s.get("phase") == "Pending")
    assert status["sequence"] >= 1
    assert FINALIZER in obj["metadata"]["finalizers"]
    (queue,) = status["queues"]
    assert (queue["id"], queue["kind"], queue["original"], queue["envVar"]) == (
        "meme-queue",
        "SQS",
        operated.memes,
        MEME_VAR,
    )
    assert queue["temporary"]
    assert queue["temporary"] != operated.memes
    assert queue["value"] == queue["temporary"]  # the env var held a name: a name again
    assert await queue_exists(operated.sqs, queue["temporary"])
    split = await operated.splits.get(queue["split"])
    routes = split["spec"]["routes"]
    assert [(r["session"], r["sequence"]) for r in routes] == [
        (f"{operated.namespace}/alice", status["sequence"])
    ]
    assert split["status"]["appliedGeneration"] >= split["metadata"]["generation"]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "Provisioned")
    app = await operated.deployments.get(APP)
    assert operated.app_env(app)[MEME_VAR] != operated.memes  # the app reads the fallback now
    metrics = operated.controller.metrics
    assert metrics is not None
    ready = {"phase": "Ready"}
    async with asyncio.timeout(HANG):  # counted on the controller's next lease tick
        while True:
            if metrics.registry.get_sample_value("pymirror_operator_sessions", ready) == 1:
                break
            await asyncio.sleep(0.05)


async def test_a_second_session_gets_a_later_sequence_on_the_same_split(
    operated: Operated,
) -> None:
    first = await ready_session(operated, "alice")
    second = await ready_session(operated, "bob")
    assert second["status"]["sequence"] > first["status"]["sequence"]
    assert second["status"]["queues"][0]["split"] == first["status"]["queues"][0]["split"]
    split = await operated.splits.get(first["status"]["queues"][0]["split"])
    assert sorted(r["session"] for r in split["spec"]["routes"]) == [
        f"{operated.namespace}/alice",
        f"{operated.namespace}/bob",
    ]


async def test_an_unknown_queue_id_fails_the_session_and_creates_nothing(
    operated: Operated,
) -> None:
    before = set(await operated.sqs.list_queues(""))
    await operated.sessions.create(session_body("carol", "orders"))
    obj = await wait_session(operated, "carol", phase_is("Failed", "Ready"))
    assert obj is not None
    status = obj["status"]
    assert (status["phase"], status["endReason"]) == ("Failed", "Failed")
    assert status["message"].startswith("spec.queues[0].id: 'orders'")
    assert "meme-queue" in status["message"]  # names the ids there are
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("False", "Invalid")
    assert not status.get("queues")
    assert (await operated.splits.list()).items == []
    assert set(await operated.sqs.list_queues("")) == before
    app = await operated.deployments.get(APP)
    assert operated.app_env(app)[MEME_VAR] == operated.memes
    # deleting it: the finalizer goes at once (there is nothing to end)
    await operated.sessions.delete("carol")
    assert await wait_session(operated, "carol", gone) is None


async def test_deleting_a_ready_session_ends_it_and_its_finalizer_goes(
    operated: Operated,
) -> None:
    obj = await ready_session(operated, "alice")
    queue = obj["status"]["queues"][0]
    await operated.sessions.delete("alice")
    ending = await wait_session(operated, "alice", phase_is("Ending"))
    assert ending is not None
    assert ending["status"]["endReason"] == "Completed"
    assert await wait_session(operated, "alice", gone) is None
    assert not await queue_exists(operated.sqs, queue["temporary"])
    with contextlib.suppress(NotFoundError):  # the last session: the split is handed back
        split = await operated.splits.get(queue["split"])
        routes = split["spec"].get("routes") or []
        assert f"{operated.namespace}/alice" not in [r["session"] for r in routes]


async def test_a_lapsed_lease_ends_the_session_expired_and_the_operator_deletes_it(
    operated: Operated,
) -> None:
    obj = await ready_session(operated, "dave", lease=6)
    assert obj["spec"].get("renewTime") is None  # never renewed
    ending = await wait_session(operated, "dave", phase_is("Ending"))
    assert ending is not None
    assert ending["status"]["endReason"] == "Expired"
    ended = {c["type"]: c for c in ending["status"]["conditions"]}["Ended"]
    assert (ended["status"], ended["reason"]) == ("True", "Expired")
    assert await wait_session(operated, "dave", gone) is None
    assert not await queue_exists(operated.sqs, obj["status"]["queues"][0]["temporary"])


async def test_a_session_killed_before_its_deletion_ends_killed(operated: Operated) -> None:
    await ready_session(operated, "erin")
    patch = {"metadata": {"annotations": {KILLED_ANNOTATION: "ops@admin-box"}}}
    await operated.sessions.merge_patch("erin", patch)
    await operated.sessions.delete("erin")
    ending = await wait_session(operated, "erin", phase_is("Ending"))
    assert ending is not None
    assert (ending["status"]["endReason"], ending["status"]["message"]) == (
        "Killed",
        "killed by ops@admin-box",
    )
    assert await wait_session(operated, "erin", gone) is None


async def test_a_session_whose_target_is_gone_ends_failed_and_says_so(
    operated: Operated,
) -> None:
    obj = await ready_session(operated, "fred")
    await operated.deployments.delete(APP)
    failed = await wait_session(operated, "fred", phase_is("Failed"))
    assert failed is not None
    status = failed["status"]
    assert status["endReason"] == "Failed"
    assert status["message"].startswith("the target is gone: ")
    ended = {c["type"]: c for c in status["conditions"]}["Ended"]
    assert ended["reason"] == "TargetGone"
    assert not await queue_exists(operated.sqs, obj["status"]["queues"][0]["temporary"])
    await operated.sessions.delete("fred")
    assert await wait_session(operated, "fred", gone) is None


async def test_the_operator_process_drives_sessions_and_stops_on_sigterm(
    kube: Kube,
    kube_api: KubeApi,
    moto_endpoint: SqsEndpoint,
    unique_name: str,
    tmp_path: Path,
) -> None:
    """``pymirror operator`` as a process, settings from the environment: it fails an
    invalid session (its message in status), then exits 0 on SIGTERM."""
    settings = operator_settings(kube_api, moto_endpoint, f"{unique_name}-ops").operator
    env = {
        **os.environ,
        "PYMIRROR_OPERATOR__NAMESPACE": settings.namespace,
        "PYMIRROR_OPERATOR__WORKLOAD_KINDS": json.dumps(dict(settings.workload_kinds)),
        "PYMIRROR_OPERATOR__CONFIG_KINDS": json.dumps(dict(settings.config_kinds)),
        "PYMIRROR_SQS__ENDPOINT_URL": moto_endpoint.url,
        "PYMIRROR_LOG__FORMAT": "json",
    }
    command = [sys.executable, "-m", "pymirror", "operator", "--namespace", unique_name]
    command += ["--kubeconfig", str(kube_api.kubeconfig)]
    await kube.objects(DEPLOYMENTS, unique_name).create(app_deployment("memes", "ads"))
    await kube.objects(REGISTRIES, unique_name).create(meme_registry())
    log = (tmp_path / "operator.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        sessions = kube.objects(SplitSession.RESOURCE, unique_name)
        await sessions.create(session_body("gina", "orders"))
        obj = await watch_session(sessions, "gina", phase_is("Failed", "Ready"))
        assert obj is not None
        assert obj["status"]["message"].startswith("spec.queues[0].id: 'orders'")
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(HANG):
            await process.wait()
        output = (tmp_path / "operator.log").read_text()
        assert process.returncode == 0, output[-2000:]
        assert "operator controller stopped" in output
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()


async def test_garbage_collection_restores_orphan_patches_and_leaves_routes_of_gone_sessions(
    operated: Operated,
) -> None:
    async with asyncio.timeout(HANG):  # the operator's own first collection is over
        await operated.controller.collected.wait()
    kinds = operated.settings.operator.kinds()
    workload = await get_workload(operated.kube, kinds, operated.namespace, "Deployment", APP)
    await patch_env(operated.kube, workload, "main", {MEME_VAR: "elsewhere"}, owner="ghost")
    orphan = {
        "apiVersion": "pymirror.dev/v1alpha1",
        "kind": "QueueSplit",
        "metadata": {"name": "orphan"},
        "spec": {
            "kind": "SQS",
            "original": operated.memes,
            "target": {
                "apiVersion": DEPLOYMENTS.api_version,
                "kind": "Deployment",
                "name": APP,
                "namespace": operated.namespace,
            },
            "routes": [
                {"session": f"{operated.namespace}/nobody", "sequence": 1, "destination": "x"}
            ],
        },
    }
    await operated.splits.create(orphan)
    done = await collect(
        operated.kube,
        Splits(operated.kube, operated.settings),
        namespaces=[operated.namespace],
        operator_namespace=operated.operator_namespace,
        kinds=kinds,
    )
    assert done.left == [("orphan", f"{operated.namespace}/nobody")]
    assert done.pending == []  # no worker ever routed to it
    assert done.restored == [(f"Deployment {operated.namespace}/{APP}", "ghost")]
    app = await operated.deployments.get(APP)
    assert operated.app_env(app)[MEME_VAR] == operated.memes
    assert ORIGINAL_ENV_ANNOTATION not in (app["metadata"].get("annotations") or {})
    async with asyncio.timeout(HANG):  # its last route left: handed back and deleted
        await wait_empty(operated.splits)
