"""registry.watching against the real test API server: resume after a cut, re-list on 410.

The watch goes through ``CuttableProxy`` (conftest.py), so the test can reset its
connection and refuse new ones, as a restarting API server would, while changes
are made directly. Every wait is on an event, bounded only against hangs.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from registry.errors import NotFoundError, UnavailableError
from registry.models import MirrordWorkloadQueueRegistry
from registry.objects import Kube
from registry.resources import Resource
from registry.watching import Watch, object_key
from tests.integration.registry.conftest import CuttableProxy, registry_body
from tests.servers.kube import KubeApi

pytestmark = pytest.mark.integration

REGISTRIES = MirrordWorkloadQueueRegistry.RESOURCE
HANG = 60.0  # a bound against hangs only; every wait ends on an event


async def next_events(watch: Watch, n: int) -> list[tuple[str, str]]:
    async with asyncio.timeout(HANG):
        return [(e.type, e.name) for e in [await anext(watch) for _ in range(n)]]


async def test_a_watch_lists_first_then_follows_changes(kube: Kube, unique_name: str) -> None:
    objs = kube.objects(REGISTRIES, unique_name)
    await objs.create(registry_body("a"))
    await objs.create(registry_body("b"))
    async with objs.watch() as watch:
        assert sorted(await next_events(watch, 2)) == [("ADDED", "a"), ("ADDED", "b")]
        await objs.merge_patch("a", {"metadata": {"labels": {"x": "1"}}})
        await objs.delete("b")
        await objs.create(registry_body("c"))
        assert await next_events(watch, 3) == [
            ("MODIFIED", "a"),
            ("DELETED", "b"),
            ("ADDED", "c"),
        ]
    assert (watch.reconnects, watch.relists) == (0, 0)
    # Leaving the watch shuts its connection: the reader thread ends.
    readers = [t for t in threading.enumerate() if t.name == f"watch-{REGISTRIES.plural}"]
    for reader in readers:
        await asyncio.to_thread(reader.join, HANG)
    assert not any(r.is_alive() for r in readers)


async def test_a_watch_resumes_from_its_resource_version_after_a_cut(
    kube: Kube, kube_api: KubeApi, proxy: CuttableProxy, unique_name: str, tmp_path: Path
) -> None:
    direct = kube.objects(REGISTRIES, unique_name)
    await direct.create(registry_body("before"))
    config = proxy.kubeconfig(kube_api.kubeconfig, tmp_path / "kubeconfig")
    async with (
        Kube.from_kubeconfig(config) as proxied,
        proxied.objects(REGISTRIES, unique_name).watch() as watch,
    ):
        assert await next_events(watch, 1) == [("ADDED", "before")]
        await direct.create(registry_body("first"))
        assert await next_events(watch, 1) == [("ADDED", "first")]  # the stream is up
        seen_version = watch.resource_version
        connections = proxy.accepted

        await proxy.cut()  # the stream resets; reconnects are refused
        await direct.create(registry_body("during"))
        await direct.delete("before")
        await proxy.resume()

        # Exactly the changes made while it was cut, once each: resumed, not re-listed.
        assert await next_events(watch, 2) == [("ADDED", "during"), ("DELETED", "before")]
        assert watch.reconnects >= 1
        assert watch.relists == 0
        assert proxy.accepted > connections
        assert int(watch.resource_version or 0) > int(seen_version or 0)


async def test_a_watch_reconnects_when_the_server_ends_its_stream(
    kube: Kube, unique_name: str
) -> None:
    objs = kube.objects(REGISTRIES, unique_name)
    async with objs.watch(timeout_seconds=1) as watch:  # the server ends each stream after 1 s
        pending = asyncio.create_task(anext(watch))
        async with asyncio.timeout(HANG):
            # No event marks a reconnect: poll the counter (bounded by HANG, not a fixed wait).
            while watch.reconnects < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await objs.create(registry_body("late"))
        async with asyncio.timeout(HANG):
            event = await pending
    assert (event.type, event.name) == ("ADDED", "late")
    assert watch.relists == 0


async def test_a_watch_gives_up_after_failing_for_retry_for(
    kube: Kube, kube_api: KubeApi, proxy: CuttableProxy, unique_name: str, tmp_path: Path
) -> None:
    config = proxy.kubeconfig(kube_api.kubeconfig, tmp_path / "kubeconfig")
    async with Kube.from_kubeconfig(config) as proxied:
        watch = proxied.objects(REGISTRIES, unique_name).watch(retry_for=0.3)
        await proxy.cut()  # never comes back
        with pytest.raises(UnavailableError, match=r"watch gave up after 0\.3 s"):
            async with asyncio.timeout(HANG):
                await anext(watch)
    assert watch.reconnects >= 1


async def test_a_too_old_resource_version_is_gone_so_the_watch_relists(
    kube: Kube, unique_name: str
) -> None:
    objs = kube.objects(REGISTRIES, unique_name)
    await objs.create(registry_body("a"))
    # resourceVersion 1 is older than anything the server keeps: 410 Gone.
    async with objs.watch(resource_version="1") as watch:
        assert await next_events(watch, 1) == [("ADDED", "a")]
        assert watch.relists == 1
        await objs.create(registry_body("b"))
        assert await next_events(watch, 1) == [("ADDED", "b")]


async def test_a_relist_yields_the_difference_with_what_the_watch_saw(
    kube: Kube, unique_name: str
) -> None:
    objs = kube.objects(REGISTRIES, unique_name)
    kept = await objs.create(registry_body("kept"))
    changed = await objs.create(registry_body("changed"))
    gone = await objs.create(registry_body("gone"))
    watch = objs.watch(resource_version="1")  # 410 Gone: it re-lists
    # What an earlier connection of this watch had seen (before "changed" changed,
    # "gone" was deleted and "new" was created).
    watch._known = {object_key(o): o for o in (kept, changed, gone)}
    await objs.merge_patch("changed", {"metadata": {"labels": {"v": "2"}}})
    await objs.delete("gone")
    await objs.create(registry_body("new"))
    async with watch:
        events = [await anext(watch) for _ in range(3)]
    assert sorted((e.type, e.name) for e in events) == [
        ("ADDED", "new"),
        ("DELETED", "gone"),
        ("MODIFIED", "changed"),
    ]
    deleted = next(e for e in events if e.type == "DELETED")
    assert deleted.resource_version == gone["metadata"]["resourceVersion"]  # last seen
    assert watch.relists == 1


async def test_a_watch_of_an_unknown_resource_ends_with_its_error(
    kube: Kube, unique_name: str
) -> None:
    unknown = Resource(REGISTRIES.group, REGISTRIES.version, "nosuchthings")
    watch = kube.objects(unknown, unique_name).watch(resource_version="0")
    with pytest.raises(NotFoundError):
        async with asyncio.timeout(HANG):
            await anext(watch)


def mine(unique_name: str) -> dict[str, Any]:
    """A label scoping a watch of every namespace to this test's objects."""
    return {"labels": {"test": unique_name}}


async def test_a_watch_of_every_namespace_tells_same_named_objects_apart(
    kube: Kube, unique_name: str
) -> None:
    a, b = (kube.objects(REGISTRIES, f"{unique_name}-{x}") for x in "ab")
    await a.create(registry_body("twin", **mine(unique_name)))
    everywhere = kube.objects(REGISTRIES, None)
    async with everywhere.watch(label_selector=f"test={unique_name}") as watch:
        async with asyncio.timeout(HANG):
            listed = await anext(watch)
            assert (listed.type, listed.key) == ("ADDED", (f"{unique_name}-a", "twin"))
            await b.create(registry_body("twin", **mine(unique_name)))
            added = await anext(watch)
            assert (added.type, added.key) == ("ADDED", (f"{unique_name}-b", "twin"))
            await a.delete("twin")
            deleted = await anext(watch)
        assert (deleted.type, deleted.key) == ("DELETED", (f"{unique_name}-a", "twin"))
        assert watch._known.keys() == {(f"{unique_name}-b", "twin")}


async def test_a_relist_of_every_namespace_keeps_same_named_objects_apart(
    kube: Kube, unique_name: str
) -> None:
    a, b, c = (kube.objects(REGISTRIES, f"{unique_name}-{x}") for x in "abc")
    twin_a = await a.create(registry_body("twin", **mine(unique_name)))
    twin_b = await b.create(registry_body("twin", **mine(unique_name)))
    kept_b = await b.create(registry_body("kept", **mine(unique_name)))
    # resourceVersion 1 is older than anything the server keeps: 410 Gone, a re-list.
    watch = kube.objects(REGISTRIES, None).watch(
        resource_version="1", label_selector=f"test={unique_name}"
    )
    # What an earlier connection had seen: both twins and "kept"; since then the twin in
    # b was deleted, the one in a changed, and a third twin appeared in c.
    watch._known = {object_key(o): o for o in (twin_a, twin_b, kept_b)}
    await b.delete("twin")
    await a.merge_patch("twin", {"metadata": {"labels": {"v": "2"}}})
    await c.create(registry_body("twin", **mine(unique_name)))
    async with watch:
        got = await next_keyed(watch, 3)
        assert watch.relists == 1
        assert sorted(got) == [
            ("ADDED", f"{unique_name}-c", "twin"),
            ("DELETED", f"{unique_name}-b", "twin"),
            ("MODIFIED", f"{unique_name}-a", "twin"),
        ]
        # And the stream goes on after the re-list, across namespaces.
        await b.create(registry_body("twin", **mine(unique_name)))
        assert await next_keyed(watch, 1) == [("ADDED", f"{unique_name}-b", "twin")]
    assert set(watch._known) == {
        (f"{unique_name}-a", "twin"),
        (f"{unique_name}-b", "twin"),
        (f"{unique_name}-b", "kept"),
        (f"{unique_name}-c", "twin"),
    }


async def test_a_first_list_of_every_namespace_yields_each_same_named_object(
    kube: Kube, unique_name: str
) -> None:
    for x in "ab":
        await kube.objects(REGISTRIES, f"{unique_name}-{x}").create(
            registry_body("twin", **mine(unique_name))
        )
    watch = kube.objects(REGISTRIES, None).watch(
        resource_version="1", label_selector=f"test={unique_name}"
    )
    async with watch:
        assert sorted(await next_keyed(watch, 2)) == [
            ("ADDED", f"{unique_name}-a", "twin"),
            ("ADDED", f"{unique_name}-b", "twin"),
        ]
    assert watch.relists == 1


async def next_keyed(watch: Watch, n: int) -> list[tuple[str, str, str]]:
    async with asyncio.timeout(HANG):
        return [(e.type, *e.key) for e in [await anext(watch) for _ in range(n)]]
