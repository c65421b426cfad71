"""Garbage collection of orphan workers and queues (pymirror/operator/gc.py), for real.

QueueSplits and the stand-in worker Deployments live on the real test API server, the
temporary queues on moto. ``collect`` is called directly: an orphan worker Deployment
(its QueueSplit gone) is deleted while a live split's worker, a look-alike not named as
ours and an unlabelled Deployment stay; of the temporary queues of a known original,
the ones no QueueSplit records are deleted while a recorded one, an untagged one fitting
the format and the queues of an original the operator never saw stay. The controller
test runs ``Controller`` with a cluster-wide session watch (no namespaces): same-named
sessions in two namespaces are both reconciled, a deleted QueueSplit's original reaches
the GC through the split watch, and the GC's actions are counted in
``pymirror_gc_actions_total``. Every wait is on an event; ``HANG`` only bounds a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pymirror.operator.controller import Controller, Metrics
from pymirror.operator.gc import Collected, KnownOriginals, QueueSweep, collect
from pymirror.operator.sessions import Outcome
from pymirror.operator.worker_deployments import APP_LABELS, WORKER_LABEL, worker_name
from registry.errors import NotFoundError
from registry.objects import Kube, Obj, Objects
from registry.resources import Resource
from registry.session_models import QueueSplit, SplitSession
from registry.workloads import WorkloadKinds
from splitter.sqs.client import SqsClient
from splitter.sqs.client import SqsEndpoint as ClientEndpoint
from splitter.sqs.queue_names import queue_name
from tests.fixtures.kube import STAND_INS
from tests.integration.operator.support import queue_split_body
from tests.integration.sqs.support import FORMAT, client_for, make_queue, temporary
from tests.servers.sqs import SqsEndpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HANG = 60.0
DEPLOYMENTS = STAND_INS["Deployment"]


def kube_resource() -> Resource:
    return Resource(*DEPLOYMENTS)


class NoLeaves:
    """A ``Leaver`` for splits without routes: never called."""

    async def leave(self, split: str, session_ref: str) -> bool:
        raise AssertionError(f"no route should be left ({split}: {session_ref})")


@pytest.fixture
async def sqs(moto_endpoint: SqsEndpoint) -> AsyncIterator[SqsClient]:
    async with client_for(moto_endpoint) as client:
        yield client


def sweep(moto: SqsEndpoint, originals: KnownOriginals) -> QueueSweep:
    endpoint = ClientEndpoint(moto.url, moto.region, "test", "test")
    return QueueSweep(endpoint, FORMAT, originals)


def split_body(name: str, original: str, app_namespace: str = "shop") -> Obj:
    api_version = f"{DEPLOYMENTS[0]}/{DEPLOYMENTS[1]}"
    return queue_split_body(name, original, namespace=app_namespace, api_version=api_version)


def worker_body(name: str, labels: dict[str, str]) -> Obj:
    group, version, _ = DEPLOYMENTS
    return {
        "apiVersion": f"{group}/{version}",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "worker", "image": "pymirror"}]},
            },
        },
    }


async def collect_in(kube: Kube, ns: str, **kwargs: Any) -> Collected:
    kinds = WorkloadKinds().with_api_versions(Deployment=f"{DEPLOYMENTS[0]}/{DEPLOYMENTS[1]}")
    return await collect(
        kube, NoLeaves(), namespaces=[ns], operator_namespace=ns, kinds=kinds, **kwargs
    )


async def names(objects: Objects) -> set[str]:
    return {str(o["metadata"]["name"]) for o in (await objects.list()).items}


async def test_an_orphan_worker_deployment_is_deleted_and_nothing_else(
    kube: Kube, unique_name: str
) -> None:
    ns = unique_name
    deployments = kube.objects(kube_resource(), ns)
    await kube.objects(QueueSplit.RESOURCE, ns).create(split_body("live", "orders"))
    await deployments.create(worker_body(worker_name("live"), {**APP_LABELS, WORKER_LABEL: "live"}))
    await deployments.create(worker_body(worker_name("gone"), {**APP_LABELS, WORKER_LABEL: "gone"}))
    # Labelled for the gone split but not named as its worker: not ours to delete.
    await deployments.create(worker_body("look-alike", {WORKER_LABEL: "gone"}))
    await deployments.create(worker_body(worker_name("other"), {"app": "x"}))  # no label

    done = await collect_in(kube, ns, workers=kube_resource())
    assert done.workers == [(worker_name("gone"), "gone")]
    assert done.counts() == {
        "route_left": 0,
        "env_restored": 0,
        "worker_deleted": 1,
        "queue_deleted": 0,
    }
    with pytest.raises(NotFoundError):  # no finalizers on the stand-in kind: gone at once
        await deployments.get(worker_name("gone"))
    assert await names(deployments) == {worker_name("live"), "look-alike", worker_name("other")}
    again = await collect_in(kube, ns, workers=kube_resource())
    assert again.workers == []


async def test_orphan_temporary_queues_of_a_known_original_are_deleted_and_only_those(
    kube: Kube, sqs: SqsClient, moto_endpoint: SqsEndpoint, unique_name: str
) -> None:
    ns = unique_name
    original = await make_queue(sqs, f"orders-{unique_name}")
    unknown = await make_queue(sqs, f"ads-{unique_name}")
    recorded = await temporary(sqs, original, f"{ns}/alice")
    orphan_session = await temporary(sqs, original, f"{ns}/bob")
    orphan_fallback = await temporary(sqs, original)
    unknowns = await temporary(sqs, unknown)  # an original no split of ours names
    untagged = await sqs.create_queue(
        FORMAT.render(queue_name(original), fallback=False, random_digits="0123456789"), {}, {}
    )
    splits = kube.objects(QueueSplit.RESOURCE, ns)
    await splits.create(split_body("live", queue_name(original)))
    record = {"name": queue_name(recorded), "url": recorded, "role": "session"}
    await splits.patch_status(
        "live", {"temporaryResources": [{**record, "session": f"{ns}/alice", "created": True}]}
    )
    originals = KnownOriginals()

    done = await collect_in(kube, ns, queues=sweep(moto_endpoint, originals))
    assert originals.names == {queue_name(original)}  # from the listing
    assert sorted(done.queues) == sorted(
        [
            (queue_name(orphan_session), queue_name(original)),
            (queue_name(orphan_fallback), queue_name(original)),
        ]
    )
    assert done.counts()["queue_deleted"] == 2
    left = {queue_name(u) for u in await sqs.list_queues(FORMAT.template.split("{{")[0])}
    assert queue_name(orphan_session) not in left
    assert queue_name(orphan_fallback) not in left
    for kept in (recorded, unknowns, untagged):
        assert queue_name(kept) in left
    assert (await collect_in(kube, ns, queues=sweep(moto_endpoint, originals))).queues == []


class Recorder:
    """Session and split reconcilers that note what they were given."""

    def __init__(self) -> None:
        self.sessions: set[tuple[str, str]] = set()
        self.changed = asyncio.Event()

    async def reconcile_session(self, obj: Obj) -> Outcome:
        meta = obj["metadata"]
        self.sessions.add((meta["namespace"], meta["name"]))
        self.changed.set()
        return Outcome("none")

    async def reconcile_split(self, name: str) -> None:
        return None


def session_body(name: str, label: str) -> Obj:
    return {
        "apiVersion": "pymirror.dev/v1alpha1",
        "kind": "SplitSession",
        "metadata": {"name": name, "labels": {"test": label}},
        "spec": {
            "target": {
                "apiVersion": f"{DEPLOYMENTS[0]}/{DEPLOYMENTS[1]}",
                "kind": "Deployment",
                "name": "app",
                "container": "main",
            },
            "owner": {"username": name, "hostname": "laptop", "k8sUsername": f"{name}@x.com"},
            "queues": [{"id": "q", "kind": "SQS", "messageFilter": {"a": "^b$"}}],
            "leaseSeconds": 30,
        },
    }


async def test_the_controller_watches_every_namespace_and_counts_gc_actions(
    kube: Kube, sqs: SqsClient, moto_endpoint: SqsEndpoint, unique_name: str
) -> None:
    ops = f"{unique_name}-ops"
    original = await make_queue(sqs, f"memes-{unique_name}")
    orphan = await temporary(sqs, original)
    registry = CollectorRegistry()
    recorder = Recorder()
    originals = KnownOriginals()
    go_collect, split_seen = asyncio.Event(), asyncio.Event()

    def on_split(obj: Obj) -> None:
        originals.remember(obj)
        split_seen.set()

    async def gc() -> Collected:
        await go_collect.wait()
        return await collect_in(kube, ops, queues=sweep(moto_endpoint, originals))

    controller = Controller(
        kube,
        recorder,
        recorder,
        namespaces=[],  # every namespace
        operator_namespace=ops,
        resync_seconds=60.0,
        metrics=Metrics(registry),
        gc=gc,
        gc_seconds=3600.0,
        on_split=on_split,
    )
    splits = kube.objects(QueueSplit.RESOURCE, ops)
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    try:
        async with asyncio.timeout(HANG):
            await controller.started.wait()
            assert controller.watching == {
                (SplitSession.RESOURCE.plural, "(all namespaces)"),
                (QueueSplit.RESOURCE.plural, ops),
            }
            wanted = {(f"{unique_name}-{x}", "twin") for x in "ab"}
            for namespace, name in sorted(wanted):
                await kube.objects(SplitSession.RESOURCE, namespace).create(
                    session_body(name, unique_name)
                )
            while not wanted <= recorder.sessions:
                recorder.changed.clear()
                await recorder.changed.wait()
            # A split seen and deleted: the GC learns its original from the watch alone.
            await splits.create(split_body("gone", queue_name(original)))
            await splits.delete("gone")
            while queue_name(original) not in originals.names:
                split_seen.clear()
                await split_seen.wait()
            go_collect.set()
            await controller.collected.wait()
    finally:
        stop.set()
        await task
    assert queue_name(orphan) not in {
        queue_name(u) for u in await sqs.list_queues(FORMAT.template.split("{{")[0])
    }
    value = registry.get_sample_value("pymirror_gc_actions_total", {"action": "queue_deleted"})
    assert value == 1.0
