"""Worker Deployments on the real test API server (pymirror/operator/worker_deployments.py).

The end-to-end test runs the sandbox's local runtime (pymirror/sandbox/runtime.py) in the
test's event loop: the Deployment ``ensure_worker`` creates for a real QueueSplit runs as
a real ``pymirror worker sqs --split`` process against moto, which acknowledges the
split's routes (``status.appliedGeneration``) and forwards a matching message to the
session's queue; ``delete_worker`` then stops it (SIGTERM, exit 0). The other tests need
only the API server: an unchanged worker is not rewritten, a changed one is, and a
Deployment of that name that is not ours is neither adopted, changed nor deleted, and
a Kafka worker gets the properties of its resolved client config.

Waits are on what happened (status written, a message arrived, a process exited);
``HANG`` only bounds a hang, and the worker's log is shown when one happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pymirror.operator.settings import OperatorSettings
from pymirror.operator.worker_deployments import (
    CONFIG_DIGEST_ANNOTATION,
    SPEC_ANNOTATION,
    WORKER_LABEL,
    WorkerDeploymentError,
    config_digest,
    delete_worker,
    ensure_worker,
    worker_name,
    worker_ready,
)
from pymirror.sandbox.groups import GroupId
from pymirror.sandbox.pods import RestartPolicy
from pymirror.sandbox.runtime import LocalRuntime, RuntimeConfig
from pymirror.sandbox.workloads import STAND_IN_KINDS
from registry.errors import NotFoundError
from registry.models import API_VERSION as MODELS_API_VERSION
from registry.models import MirrordKafkaClientConfig
from registry.objects import Kube, Objects
from registry.session_models import QueueSplit
from splitter.sqs.client import SqsClient
from tests.fixtures.kube import STAND_INS
from tests.integration.operator.support import queue_split_body
from tests.integration.sqs.support import (
    Outgoing,
    attribute,
    client_for,
    make_queue,
    mid_of,
    receive_some,
    send,
    temporary,
)
from tests.servers.kube import KubeApi
from tests.servers.sqs import SqsEndpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

HANG = 90.0
SPLIT = "shop-meme-app-orders"
T = TypeVar("T")


def operator_settings(namespace: str, **overrides: Any) -> OperatorSettings:
    values: dict[str, Any] = {
        "namespace": namespace,
        "workload_kinds": {"Deployment": STAND_IN_KINDS.deployment.api_version},
        "worker_command": [sys.executable, "-m", "pymirror"],
        "worker_metrics_port": None,  # parallel workers on one host would share the port
        **overrides,
    }
    return OperatorSettings.model_validate(values)


def split_body(
    fallback: str, routes: list[dict[str, Any]], original: str = "orders"
) -> dict[str, Any]:
    return queue_split_body(
        SPLIT, original, target="meme-app", queueId="orders", fallback=fallback, routes=routes
    )


def deployments(kube: Kube, namespace: str) -> Objects:
    return kube.objects(STAND_IN_KINDS.deployment, namespace)


# --- the local runtime -------------------------------------------------------------------


@dataclass
class Runtime:
    runtime: LocalRuntime
    log_dir: Path

    def worker_pids(self, namespace: str) -> list[int]:
        controller = self.runtime.controllers.get(("Deployment", namespace, worker_name(SPLIT)))
        return [] if controller is None else [pid for p in controller.pods for pid in p.pids]

    def logs(self) -> str:
        files = sorted(self.log_dir.glob("*.log")) if self.log_dir.exists() else []
        return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in files) or "(no logs)"


@pytest.fixture
async def local_runtime(
    kube_api: KubeApi, kube_crds: list[str], unique_name: str, tmp_path: Path
) -> AsyncIterator[Runtime]:
    """The sandbox's local runtime watching namespace ``unique_name``, in this event loop."""
    config = RuntimeConfig(
        namespaces=[unique_name],
        log_dir=tmp_path / "logs",
        kinds=STAND_IN_KINDS,
        groups_dir=tmp_path / "groups",
        restart=RestartPolicy(first=0.2, ceiling=1.0),
    )
    async with Kube.from_kubeconfig(kube_api.kubeconfig) as kube:
        runtime = LocalRuntime(kube, config)
        task = asyncio.create_task(runtime.run())
        async with asyncio.timeout(HANG):
            await runtime.ready.wait()
        try:
            yield Runtime(runtime, config.log_dir)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(what: str, check: Callable[[], Awaitable[T | None]], rt: Runtime) -> T:
    """Poll ``check`` until it returns something truthy; a hang fails with the worker log."""
    try:
        async with asyncio.timeout(HANG):
            while True:
                result = await check()
                if result:
                    return result
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"still waiting for {what}; the logs:\n{rt.logs()}") from None


# --- end to end --------------------------------------------------------------------------


async def test_the_worker_deployment_runs_a_worker_that_follows_its_split(
    kube: Kube,
    kube_api: KubeApi,
    moto_endpoint: SqsEndpoint,
    local_runtime: Runtime,
    unique_name: str,
) -> None:
    """1. a QueueSplit with one route (alice) to a session queue, its fallback created;
    2. ``ensure_worker`` creates the worker Deployment; the local runtime runs it as
       ``pymirror worker sqs --split NS/NAME``;
    3. the worker acknowledges the routes: status.appliedGeneration = the generation;
    4. a message for alice sent to the original reaches alice's queue; the Deployment
       reports ready (``worker_ready``);
    5. ``delete_worker`` deletes it: the worker process gets SIGTERM and exits 0."""
    ns, rt = unique_name, local_runtime
    async with client_for(moto_endpoint) as sqs:
        original = f"orders-{ns}"
        await make_queue(sqs, original)
        fallback = await temporary(sqs, original)
        alice = await temporary(sqs, original, "dev/alice")
        settings = operator_settings(
            ns,
            worker_grace_seconds=10,
            worker_env={
                "KUBECONFIG": str(kube_api.kubeconfig),
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "PYMIRROR_SQS__ENDPOINT_URL": moto_endpoint.url,
                "PYMIRROR_SQS__REGION": moto_endpoint.region,
                "PYMIRROR_SQS__WAIT_SECONDS": "1",
                "PYMIRROR_SQS__SHUTDOWN_GRACE": "2",
                "PYMIRROR_KAFKA__FLUSH_TIMEOUT": "2",
                "PYMIRROR_LOG__FORMAT": "json",
            },
        )
        routes = [
            {
                "session": "dev/alice",
                "sequence": 1,
                "destination": alice,
                "messageFilter": {"user": "^alice$"},
            }
        ]
        splits = kube.objects(QueueSplit.RESOURCE, ns)
        created = await splits.create(split_body(fallback, routes, original))
        generation = created["metadata"]["generation"]

        obj = await ensure_worker(kube, QueueSplit.model_validate(created), settings)
        assert obj["metadata"]["labels"][WORKER_LABEL] == SPLIT
        assert obj["metadata"]["namespace"] == ns

        async def acknowledged() -> int | None:
            status = (await splits.get(SPLIT)).get("status") or {}
            return status.get("appliedGeneration") if status.get("appliedGeneration") else None

        assert await until("the worker to acknowledge the routes", acknowledged, rt) == generation
        [pid] = rt.worker_pids(ns)

        await send(
            sqs, await sqs.queue_url(original), [Outgoing("m1", {"user": attribute("alice")})]
        )
        got = await until("m1 in alice's queue", lambda: _received(sqs, alice), rt)
        assert [mid_of(m) for m in got] == ["m1"]

        async def ready() -> bool:
            return await worker_ready(kube, SPLIT, settings)

        assert await until("the worker Deployment to report ready", ready, rt)

        assert await delete_worker(kube, SPLIT, settings) is True
        with pytest.raises(NotFoundError):
            await deployments(kube, ns).get(worker_name(SPLIT))

        async def stopped() -> bool:
            group = GroupId.of(pid)
            return not rt.worker_pids(ns) and (group is None or not group.alive())

        assert await until("the worker process to stop", stopped, rt)

        # The runtime notes the stop once its terminate task resumes after the exit, which
        # may be a loop turn after the group is gone: wait for the note, then read it.
        async def stop_note() -> str | None:
            log = "\n".join(p.read_text() for p in rt.log_dir.glob(f"{ns}.*.worker.log"))
            return log if f"stopped pid {pid} (" in log else None

        log = await until("the runtime's note of the worker's stop", stop_note, rt)
        assert f"stopped pid {pid} (0)" in log, rt.logs()
        assert await delete_worker(kube, SPLIT, settings) is False  # nothing left to delete


async def _received(sqs: SqsClient, url: str) -> list[Any] | None:
    return await receive_some(sqs, url) or None


# --- the API server only -----------------------------------------------------------------


async def _split(kube: Kube, namespace: str) -> QueueSplit:
    created = await kube.objects(QueueSplit.RESOURCE, namespace).create(
        split_body("mirrord-tmp-0123456789-fallback-orders", [])
    )
    return QueueSplit.model_validate(created)


async def test_an_unchanged_worker_is_not_rewritten_and_a_changed_one_is(
    kube: Kube, unique_name: str
) -> None:
    split = await _split(kube, unique_name)
    settings = operator_settings(unique_name)
    first = await ensure_worker(kube, split, settings)
    again = await ensure_worker(kube, split, settings)
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert first["metadata"]["ownerReferences"][0]["uid"] == split.metadata.uid

    changed = operator_settings(unique_name, worker_image="pymirror:2", worker_replicas=2)
    updated = await ensure_worker(kube, split, changed)
    assert updated["metadata"]["generation"] > first["metadata"]["generation"]
    assert updated["spec"]["replicas"] == 2
    assert updated["spec"]["template"]["spec"]["containers"][0]["image"] == "pymirror:2"
    annotation = updated["metadata"]["annotations"][SPEC_ANNOTATION]
    assert annotation != first["metadata"]["annotations"][SPEC_ANNOTATION]
    stored = await deployments(kube, unique_name).get(worker_name(SPLIT))
    assert stored["metadata"]["annotations"][SPEC_ANNOTATION] == annotation
    assert not await worker_ready(kube, SPLIT, changed)  # nothing runs it: no status


async def test_a_deployment_of_that_name_that_is_not_ours_is_left_alone(
    kube: Kube, unique_name: str
) -> None:
    """A Deployment named like the worker but without our label (or with another split's)
    makes ensure_worker and delete_worker fail naming it; it is unchanged afterwards."""
    split = await _split(kube, unique_name)
    settings = operator_settings(unique_name)
    group, version, _ = STAND_INS["Deployment"]
    foreign = {
        "apiVersion": f"{group}/{version}",
        "kind": "Deployment",
        "metadata": {"name": worker_name(SPLIT), "labels": {"app": "theirs"}},
        "spec": {
            "selector": {"matchLabels": {"app": "theirs"}},
            "template": {
                "metadata": {"labels": {"app": "theirs"}},
                "spec": {"containers": [{"name": "main", "image": "theirs:1"}]},
            },
        },
    }
    objects = deployments(kube, unique_name)
    before = await objects.create(foreign)
    with pytest.raises(WorkerDeploymentError, match=r"has no pymirror\.dev/split label") as caught:
        await ensure_worker(kube, split, settings)
    assert f"Deployment {unique_name}/{worker_name(SPLIT)}" in str(caught.value)
    assert "rename or delete that Deployment" in str(caught.value)
    with pytest.raises(WorkerDeploymentError, match="neither adopts nor changes it"):
        await delete_worker(kube, SPLIT, settings)
    assert not await worker_ready(kube, SPLIT, settings)
    after = await objects.get(worker_name(SPLIT))
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    # labelled for another split: refused too
    await objects.merge_patch(worker_name(SPLIT), {"metadata": {"labels": {WORKER_LABEL: "x"}}})
    with pytest.raises(WorkerDeploymentError, match=r"labelled pymirror\.dev/split=x"):
        await ensure_worker(kube, split, settings)
    assert (await objects.get(worker_name(SPLIT)))["spec"] == before["spec"]


async def test_a_kafka_worker_gets_its_resolved_client_config(kube: Kube, unique_name: str) -> None:
    """The Kafka worker is given the split's MirrordKafkaClientConfig by name (it resolves
    the chain itself), the digest of the resolved chain on its pod template; a config
    without bootstrap.servers gets no Deployment."""
    configs = kube.objects(MirrordKafkaClientConfig.RESOURCE, unique_name)
    for name, props in (
        ("base", [{"name": "bootstrap.servers", "value": "kafka:9092"}]),
        ("child", [{"name": "client.id", "value": "views"}]),
        ("empty", [{"name": "client.id", "value": "x"}]),
    ):
        spec: dict[str, Any] = {"properties": props}
        if name == "child":
            spec["parent"] = "base"
        await configs.create(
            {
                "apiVersion": MODELS_API_VERSION,
                "kind": "MirrordKafkaClientConfig",
                "metadata": {"name": name},
                "spec": spec,
            }
        )
    body = split_body("mirrord-tmp-0123456789-fallback-views", [], original="views")
    body["spec"] |= {"kind": "Kafka", "groupId": "views-consumer", "clientConfig": "child"}
    splits = kube.objects(QueueSplit.RESOURCE, unique_name)
    split = QueueSplit.model_validate(await splits.create(body))
    settings = operator_settings(unique_name)

    obj = await ensure_worker(kube, split, settings)
    command = obj["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[3:5] == ["worker", "kafka"]
    assert "--property" not in command
    assert command[command.index("--client-config") + 1] == "child"
    digest = obj["spec"]["template"]["metadata"]["annotations"][CONFIG_DIGEST_ANNOTATION]
    assert digest == config_digest({"bootstrap.servers": "kafka:9092", "client.id": "views"})
    assert command[command.index("--group-id") + 1] == "views-consumer"

    await delete_worker(kube, SPLIT, settings)
    await splits.merge_patch(SPLIT, {"spec": {"clientConfig": "empty"}})
    split = QueueSplit.model_validate(await splits.get(SPLIT))
    with pytest.raises(WorkerDeploymentError, match=r"'empty' resolves to no bootstrap\.servers"):
        await ensure_worker(kube, split, settings)
    with pytest.raises(NotFoundError):
        await deployments(kube, unique_name).get(worker_name(SPLIT))


async def test_two_reconciles_at_once_make_one_worker(kube: Kube, unique_name: str) -> None:
    split = await _split(kube, unique_name)
    settings = operator_settings(unique_name)
    results = await asyncio.gather(*(ensure_worker(kube, split, settings) for _ in range(4)))
    assert {r["metadata"]["uid"] for r in results} == {results[0]["metadata"]["uid"]}
    listed = await deployments(kube, unique_name).list(label_selector=f"{WORKER_LABEL}={SPLIT}")
    assert [d["metadata"]["name"] for d in listed.items] == [worker_name(SPLIT)]
