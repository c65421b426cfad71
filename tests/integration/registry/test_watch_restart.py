"""A watch survives a restart of the real API server (etcd keeps the data).

Narrated: a private etcd + apiextensions-apiserver pair is started for this
test (the shared one must not restart under other tests); a watch is open on
registry objects; the API server process is stopped (its connections die,
reconnects are refused) and started again on the same port against the same
etcd; the changes made after the restart reach the watch once each, nothing
lost or repeated. A restarted server's watch cache may no longer serve the old
resourceVersion (410 Gone): then the watch re-lists and yields the difference,
which is the same two changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from registry.models import MirrordWorkloadQueueRegistry
from registry.objects import Kube
from tests.fixtures.kube import api_client, crd_files, install_crds
from tests.integration.registry.conftest import registry_body
from tests.servers.kube import RunningKube, start_kube

pytestmark = pytest.mark.integration

REGISTRIES = MirrordWorkloadQueueRegistry.RESOURCE
HANG = 120.0  # a bound against hangs only; every wait ends on an event


@pytest.fixture
def private_kube() -> Iterator[RunningKube]:
    running = start_kube("kube-restart")
    try:
        with api_client(running.api) as client:
            install_crds(client, crd_files())
        yield running
    finally:
        running.stop()


async def test_a_watch_survives_an_api_server_restart(
    private_kube: RunningKube, unique_name: str
) -> None:
    kubeconfig = private_kube.api.kubeconfig
    async with Kube.from_kubeconfig(kubeconfig) as kube:
        objs = kube.objects(REGISTRIES, unique_name)
        await objs.create(registry_body("before"))
        async with objs.watch(retry_for=HANG) as watch, asyncio.timeout(HANG):
            listed = await anext(watch)
            assert (listed.type, listed.name) == ("ADDED", "before")  # from the list
            await objs.create(registry_body("first"))
            streamed = await anext(watch)
            assert (streamed.type, streamed.name) == ("ADDED", "first")  # the stream is up

            await asyncio.to_thread(private_kube.apiserver.stop)
            await asyncio.to_thread(private_kube.apiserver.start)  # same port, same etcd

            await objs.create(registry_body("after"))
            await objs.delete("before")
            events = [await anext(watch) for _ in range(2)]
            assert sorted((e.type, e.name) for e in events) == [
                ("ADDED", "after"),
                ("DELETED", "before"),
            ]
            assert watch.reconnects + watch.relists >= 1


async def test_a_watch_of_every_namespace_survives_a_restart_with_same_named_objects(
    private_kube: RunningKube, unique_name: str
) -> None:
    mine = {"labels": {"test": unique_name}}
    async with Kube.from_kubeconfig(private_kube.api.kubeconfig) as kube:
        a, b = (kube.objects(REGISTRIES, f"{unique_name}-{x}") for x in "ab")
        await a.create(registry_body("twin", **mine))
        await b.create(registry_body("twin", **mine))
        everywhere = kube.objects(REGISTRIES, None)
        async with (
            everywhere.watch(retry_for=HANG, label_selector=f"test={unique_name}") as watch,
            asyncio.timeout(HANG),
        ):
            listed = sorted([(await anext(watch)).key for _ in range(2)])
            assert listed == [(f"{unique_name}-a", "twin"), (f"{unique_name}-b", "twin")]
            await b.create(registry_body("probe", **mine))
            streamed = await anext(watch)
            assert (streamed.type, streamed.key) == ("ADDED", (f"{unique_name}-b", "probe"))

            await asyncio.to_thread(private_kube.apiserver.stop)
            await asyncio.to_thread(private_kube.apiserver.start)  # same port, same etcd

            # Resumed or re-listed (410): the twin in b is gone, the one in a is not.
            await b.delete("twin")
            event = await anext(watch)
            assert (event.type, event.key) == ("DELETED", (f"{unique_name}-b", "twin"))
            await a.merge_patch("twin", {"metadata": {"labels": {"v": "2"}}})
            event = await anext(watch)
            assert (event.type, event.key) == ("MODIFIED", (f"{unique_name}-a", "twin"))
            assert watch.reconnects + watch.relists >= 1
