"""The operator run with exactly what the chart renders, on the test API server and moto.

The chart is rendered with test values (moto's endpoint, the test API server's stand-in
kinds, a local worker command: all through the chart's own values ``operator.env`` and
``worker.env``); then

* ``test_the_rendered_operator_process_makes_a_session_ready_and_splits_its_queue`` starts
  the container's ``command`` + ``args`` as a local process with the container's ``env``
  (plus only PATH and HOME), beside the sandbox's local runtime running the app and the
  split workers' Deployments as processes: a SplitSession goes Ready, alice's message
  reaches her temporary queue and bob's the fallback the app now reads, the readiness
  probe's path answers, the session ends and the process exits 0 on SIGTERM;
* ``test_every_api_call_of_the_operator_is_granted_by_the_charts_rbac`` runs the same
  operator (``controller.build`` from the same env) in this event loop with a recording
  transport, through a session's whole life and a garbage collection, and checks every
  request it sent against registry/permissions.py (which test_rbac.py checks is the
  chart's RBAC): a call the rules do not grant fails the test, naming it.

Every wait is on a watched change or on moto's state; ``HANG`` only bounds a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pymirror.operator.controller import build
from pymirror.operator.gc import collect
from pymirror.settings import Settings, load_settings
from registry.kube import KubeTransport
from registry.objects import Kube, Objects
from registry.permissions import OPERATOR, allowed
from registry.session_models import QueueSplit, SplitSession
from splitter.sqs.client import SqsClient
from tests.integration.deploy.chart import Helm, container_env, operator_container
from tests.integration.deploy.recording import RecordingTransport, production
from tests.integration.operator.support import (
    APP,
    DEPLOYMENTS,
    HANG,
    MEME_VAR,
    bounded,
    gone,
    meme_app,
    phase_is,
    running,
    runtime_config,
    runtime_running,
    session_body,
    wait_empty,
    watch_session,
)
from tests.integration.sqs.support import Outgoing, client_for, mid_of, send
from tests.servers.kube import KubeApi
from tests.servers.process import REPO, free_port
from tests.servers.sqs import SqsEndpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


def chart_values(kube_api: KubeApi, sqs: SqsEndpoint, namespace: str) -> dict[str, Any]:
    """Test values: moto, the test API server, workers as local processes."""
    operator_env = {
        **CREDENTIALS,
        "KUBECONFIG": str(kube_api.kubeconfig),  # stands in for the pod's ServiceAccount
        "PYMIRROR_OPERATOR__WORKLOAD_KINDS": json.dumps(
            {"Deployment": DEPLOYMENTS.api_version, "StatefulSet": DEPLOYMENTS.api_version}
        ),
        "PYMIRROR_OPERATOR__CONFIG_KINDS": json.dumps(
            {"ConfigMap": "core.pymirror.test/v1", "Secret": "core.pymirror.test/v1"}
        ),
        "PYMIRROR_OPERATOR__WORKER_COMMAND": json.dumps([sys.executable, "-m", "pymirror"]),
    }
    return {
        "operator": {
            "sqsSplitting": True,
            "sessionNamespaces": [namespace],
            "drainTimeout": 0,
            "workloadRestartTimeout": 60,
            "resyncSeconds": 5,
            "metricsPort": free_port(),
            "env": [{"name": k, "value": v} for k, v in operator_env.items()],
        },
        "aws": {"region": sqs.region, "sqsEndpointUrl": sqs.url},
        "worker": {
            "metricsPort": free_port(),
            "env": {
                **CREDENTIALS,
                "KUBECONFIG": str(kube_api.kubeconfig),
                "PYTHONPATH": str(REPO),
                "PYMIRROR_SQS__WAIT_SECONDS": "1",
                "PYMIRROR_SQS__DRAIN_POLL": "0.2",
                "PYMIRROR_SQS__SHUTDOWN_GRACE": "5",
            },
        },
    }


@dataclass
class World:
    kube: Kube
    namespace: str
    operator_namespace: str
    sessions: Objects
    sqs: SqsClient
    memes: str
    """The original queue's name."""
    container: dict[str, Any]
    """The operator container as the chart renders it."""


@pytest.fixture
async def world(
    helm: Helm,
    kube_api: KubeApi,
    kube_crds: list[str],
    moto_endpoint: SqsEndpoint,
    unique_name: str,
    tmp_path: Path,
) -> AsyncIterator[World]:
    """The app, its registry, the rendered chart and the local runtime (app and workers)."""
    namespace, operator_namespace = unique_name, f"{unique_name}-ops"
    values = chart_values(kube_api, moto_endpoint, namespace)
    container = operator_container(helm.render(values, namespace=operator_namespace))
    config = runtime_config((namespace, operator_namespace), tmp_path, watch_kinds=("Deployment",))
    async with (
        Kube.from_kubeconfig(kube_api.kubeconfig) as kube,
        client_for(moto_endpoint) as sqs,
    ):
        memes = (await meme_app(kube, sqs, namespace)).rpartition("/")[2]
        async with runtime_running(kube, config):
            yield World(
                kube,
                namespace,
                operator_namespace,
                kube.objects(SplitSession.RESOURCE, namespace),
                sqs,
                memes,
                container,
            )


async def split_a_queue(w: World) -> None:
    """alice's session goes Ready; her message reaches her queue, bob's the fallback; then
    the session is deleted and everything it made goes."""
    await w.sessions.create(session_body("alice"))
    obj = await watch_session(w.sessions, "alice", phase_is("Ready", "Failed"))
    assert obj is not None
    assert obj["status"]["phase"] == "Ready", obj["status"]
    (queue,) = obj["status"]["queues"]
    app = await w.kube.objects(DEPLOYMENTS, w.namespace).get(APP)
    env = {
        e["name"]: e.get("value") for e in app["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    fallback = env[MEME_VAR]
    assert fallback not in (w.memes, queue["temporary"])
    original = await w.sqs.queue_url(w.memes)
    await send(
        w.sqs,
        original,
        [
            Outgoing("m-alice", {"author": {"DataType": "String", "StringValue": "alice"}}),
            Outgoing("m-bob", {"author": {"DataType": "String", "StringValue": "bob"}}),
        ],
    )
    mine = await w.sqs.queue_url(queue["temporary"])
    theirs = await w.sqs.queue_url(fallback)
    got = {"alice": await receive_one(w.sqs, mine), "fallback": await receive_one(w.sqs, theirs)}
    assert got == {"alice": "m-alice", "fallback": "m-bob"}
    await w.sessions.delete("alice")
    assert await watch_session(w.sessions, "alice", gone) is None
    async with asyncio.timeout(HANG):
        await wait_empty(w.kube.objects(QueueSplit.RESOURCE, w.operator_namespace))
    assert not await w.sqs.exists(mine)


async def receive_one(sqs: SqsClient, url: str) -> str:
    """The mid of the first message to arrive at ``url`` (deleted); bounded by HANG."""
    async with asyncio.timeout(HANG):
        while True:
            messages = await sqs.receive(url, max_messages=1, wait_seconds=1)
            if messages:
                await sqs.delete_batch(url, [("0", messages[0]["ReceiptHandle"])])
                return mid_of(messages[0])


@pytest.fixture
def helm(helm_bin: Path, tmp_path: Path) -> Helm:
    home = tmp_path / "helm"
    home.mkdir()
    return Helm(helm_bin, home)


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ holding exactly ``env`` for the PYMIRROR_/OPERATOR_/AWS_ names."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("PYMIRROR_", "OPERATOR_", "AWS_")) or name == "KUBECONFIG":
            del os.environ[name]
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def http_answer(port: int, path: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return int(response.status)


async def probe_ready(port: int, path: str, process: asyncio.subprocess.Process) -> None:
    """Until the readiness probe's GET ``path`` answers 200 (the process may still start,
    an error status is asked again)."""
    async with asyncio.timeout(HANG):
        while True:
            assert process.returncode is None, "the operator exited"
            try:
                status = await asyncio.to_thread(http_answer, port, path)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            assert status == 200
            return


async def test_the_rendered_operator_process_makes_a_session_ready_and_splits_its_queue(
    world: World, tmp_path: Path
) -> None:
    w = world
    command = [*w.container["command"], *w.container["args"]]
    assert command[0] == "pymirror"
    executable = Path(sys.executable).with_name("pymirror")  # the console script
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/"),
        **container_env(w.container),
    }
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(executable), *command[1:], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            port = int(w.container["ports"][0]["containerPort"])
            probe = w.container["readinessProbe"]["httpGet"]
            assert probe["port"] == w.container["ports"][0]["name"]  # the port probed above
            await probe_ready(port, probe["path"], process)
            await split_a_queue(w)
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(HANG):
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    output = log_path.read_text()
    assert process.returncode == 0, output[-3000:]
    assert "operator controller stopped" in output


async def run_recorded(operator_kube: Kube, settings: Settings, w: World) -> None:
    """The controller on ``operator_kube`` through alice's session and one GC, then stopped."""
    assert settings.operator.namespace == w.operator_namespace
    controller = build(
        operator_kube,
        settings,
        namespaces=settings.operator.session_namespaces,
        registry=CollectorRegistry(),
    )
    stop = asyncio.Event()
    try:
        async with running(lambda: controller.run(stop)) as task:
            await bounded(controller.started.wait())
            await split_a_queue(w)
            await collect(
                operator_kube,
                controller.splits,  # type: ignore[arg-type]  # the Splits build made
                namespaces=settings.operator.session_namespaces,
                operator_namespace=settings.operator.namespace,
                kinds=settings.operator.kinds(),
                workers=settings.operator.worker_resource(),
                queues=None,
            )
            stop.set()
            await bounded(task)
    finally:
        operator_kube.close()


async def test_every_api_call_of_the_operator_is_granted_by_the_charts_rbac(
    world: World, kube_api: KubeApi
) -> None:
    w = world
    recording = RecordingTransport(KubeTransport.from_kubeconfig(kube_api.kubeconfig))
    operator_kube = Kube(recording)  # type: ignore[arg-type]  # duck-typed KubeTransport
    with environment(container_env(w.container)):  # as in the pod, for the whole run
        settings: Settings = load_settings()
        await run_recorded(operator_kube, settings, w)
    seen = {production(a) for a in recording.accesses}
    refused = sorted(str(a) for a in seen if not allowed(OPERATOR, a, w.operator_namespace))
    assert not refused, f"the chart's RBAC does not grant: {refused} (registry/permissions.py)"
    verbs = {(a.group, a.resource, a.verb) for a in seen}
    print("recorded:", *sorted(str(a) for a in seen), sep="\n  ")  # shown with -s / on failure
    # the calls a session's life must make were recorded (the recording works)
    for wanted in [
        ("pymirror.dev", "splitsessions", "watch"),
        ("pymirror.dev", "splitsessions", "update"),
        ("pymirror.dev", "splitsessions/status", "patch"),
        ("pymirror.dev", "queuesplits", "create"),
        ("pymirror.dev", "queuesplits", "delete"),
        ("apps", "deployments", "patch"),
        ("apps", "deployments", "create"),
        ("apps", "deployments", "delete"),
        ("queues.mirrord.metalbear.co", "mirrordworkloadqueueregistries", "list"),
    ]:
        assert wanted in verbs, (wanted, sorted(verbs))
