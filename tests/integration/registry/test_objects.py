"""registry.objects against the real test API server: every operation, and its errors.

Each test works in its own namespace (``unique_name``); the API server is the
session's etcd + apiextensions-apiserver (tests/fixtures/kube.py).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from registry.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidError,
    KubeConfigError,
    NotFoundError,
    UnavailableError,
)
from registry.models import MirrordWorkloadQueueRegistry
from registry.objects import Kube
from registry.resources import Resource
from tests.integration.registry.conftest import DEPLOYMENTS, deployment_body, registry_body
from tests.servers.kube import KubeApi

pytestmark = pytest.mark.integration

REGISTRIES = MirrordWorkloadQueueRegistry.RESOURCE


async def test_create_get_list_and_delete(kube: Kube, unique_name: str) -> None:
    objs = kube.objects(REGISTRIES, unique_name)
    created = await objs.create(registry_body("a", labels={"team": "x"}), field_manager="tests")
    assert created["metadata"]["namespace"] == unique_name
    assert created["metadata"]["resourceVersion"]
    for name in ("b", "c", "d", "e"):
        await objs.create(registry_body(name))

    got = await objs.get("a")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    listed = await objs.list(page_size=2)  # three pages, one snapshot
    assert sorted(o["metadata"]["name"] for o in listed.items) == ["a", "b", "c", "d", "e"]
    assert int(listed.resource_version) >= int(created["metadata"]["resourceVersion"])
    selected = await objs.list(label_selector="team=x")
    assert [o["metadata"]["name"] for o in selected.items] == ["a"]

    with pytest.raises(AlreadyExistsError, match="already exists") as taken:
        await objs.create(registry_body("a"))
    assert (taken.value.status, taken.value.reason) == (409, "AlreadyExists")

    await objs.delete("a")
    with pytest.raises(NotFoundError, match=r'"a" not found'):
        await objs.get("a")
    with pytest.raises(NotFoundError):
        await objs.delete("a")
    assert await objs.delete("a", missing_ok=True) is None


async def test_all_namespaces_lists_every_namespace_and_refuses_the_rest(
    kube: Kube, unique_name: str
) -> None:
    mine = {"labels": {"test": unique_name}}  # other tests' objects share the cluster
    for namespace in (f"{unique_name}-a", f"{unique_name}-b"):
        await kube.objects(REGISTRIES, namespace).create(registry_body("twin", **mine))
    await kube.objects(REGISTRIES, f"{unique_name}-b").create(registry_body("solo", **mine))
    everywhere = kube.objects(REGISTRIES, None)
    assert everywhere.all_namespaces
    listed = await everywhere.list(label_selector=f"test={unique_name}", page_size=1)
    assert sorted((o["metadata"]["namespace"], o["metadata"]["name"]) for o in listed.items) == [
        (f"{unique_name}-a", "twin"),
        (f"{unique_name}-b", "solo"),
        (f"{unique_name}-b", "twin"),
    ]
    assert int(listed.resource_version) > 0
    with pytest.raises(ValueError, match="across all namespaces"):
        await everywhere.get("twin")
    with pytest.raises(ValueError, match=r"kube.objects\(resource, <the object's namespace>\)"):
        await everywhere.create(registry_body("new"))
    with pytest.raises(ValueError, match="across all namespaces"):
        await everywhere.delete("twin")
    # Nothing was created or deleted by the refused calls.
    again = await everywhere.list(label_selector=f"test={unique_name}")
    assert len(again.items) == 3


async def test_a_422_names_the_fields_the_server_rejected(kube: Kube, unique_name: str) -> None:
    body = registry_body("bad")
    body["spec"]["queues"]["q"]["queueType"] = ""  # any non-empty type is kept
    body["spec"]["consumer"]["workloadType"] = "Job"
    with pytest.raises(InvalidError) as rejected:
        await kube.objects(REGISTRIES, unique_name).create(body)
    error = rejected.value
    assert error.status == 422
    # (the server may add a "<nil>" cause: rules it skipped because the object was invalid)
    assert {field for field, _ in error.causes} >= {
        "spec.queues.q.queueType",
        "spec.consumer.workloadType",
    }
    assert "spec.queues.q.queueType" in str(error)
    assert "spec.consumer.workloadType" in str(error)


async def test_server_side_apply_conflicts_unless_forced(kube: Kube, unique_name: str) -> None:
    deployments = kube.objects(DEPLOYMENTS, unique_name)
    await deployments.create(deployment_body("app"), field_manager="helm")
    group_version = DEPLOYMENTS.api_version
    patch = {
        "apiVersion": group_version,
        "kind": "Deployment",
        "metadata": {"name": "app"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "main", "env": [env("QUEUE", "tmp")]}]}}
        },
    }
    with pytest.raises(ConflictError, match="conflict") as conflict:
        await deployments.apply(patch, field_manager="pymirror")
    assert not isinstance(conflict.value, AlreadyExistsError)

    applied = await deployments.apply(patch, field_manager="pymirror", force=True)
    (main,) = applied["spec"]["template"]["spec"]["containers"]
    assert main["env"] == [env("A", "1"), env("QUEUE", "tmp")]  # list-map: A kept
    managers = {(m["manager"], m["operation"]) for m in applied["metadata"]["managedFields"]}
    assert ("pymirror", "Apply") in managers


def env(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


async def test_json_patch_is_guarded_by_its_test_op(kube: Kube, unique_name: str) -> None:
    deployments = kube.objects(DEPLOYMENTS, unique_name)
    await deployments.create(deployment_body("app"))
    path = "/spec/template/spec/containers/0/env/1"
    ops = [
        {"op": "test", "path": f"{path}/value", "value": "orig"},
        {"op": "replace", "path": f"{path}/value", "value": "tmp-1"},
    ]
    patched = await deployments.json_patch("app", ops)
    assert patched["spec"]["template"]["spec"]["containers"][0]["env"][1] == env("QUEUE", "tmp-1")
    with pytest.raises(InvalidError):  # the test op no longer holds
        await deployments.json_patch("app", ops)


async def test_merge_patch_sets_and_removes_keys(kube: Kube, unique_name: str) -> None:
    objs = kube.objects(REGISTRIES, unique_name)
    await objs.create(registry_body("r", labels={"keep": "1", "drop": "1"}))
    patched = await objs.merge_patch(
        "r", {"metadata": {"labels": {"drop": None, "new": "2"}}, "spec": {"consumer": {}}}
    )
    assert patched["metadata"]["labels"] == {"keep": "1", "new": "2"}
    assert patched["spec"]["consumer"] == {"name": "app", "workloadType": "Deployment"}


async def test_status_patch_touches_only_the_status(kube: Kube, unique_name: str) -> None:
    deployments = kube.objects(DEPLOYMENTS, unique_name)
    created = await deployments.create(deployment_body("app"))
    patched = await deployments.patch_status("app", {"replicas": 1, "readyReplicas": 1})
    assert patched["status"] == {"replicas": 1, "readyReplicas": 1}
    assert patched["spec"] == created["spec"]
    # Through the main resource, status is ignored (the status subresource is enabled).
    merged = await deployments.merge_patch("app", {"status": {"replicas": 7}})
    assert merged["status"]["replicas"] == 1


async def test_update_is_retried_on_a_409_until_it_succeeds(
    kube: Kube, kube_client: k8s.ApiClient, unique_name: str
) -> None:
    objs = kube.objects(REGISTRIES, unique_name)
    await objs.create(registry_body("r"))
    other = k8s.CustomObjectsApi(kube_client)
    seen: list[dict[str, Any]] = []

    def add_label(obj: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(obj["metadata"].get("labels") or {}))
        if len(seen) == 1:  # someone else writes between our read and our write
            other.patch_namespaced_custom_object(
                REGISTRIES.group,
                REGISTRIES.version,
                unique_name,
                REGISTRIES.plural,
                "r",
                {"metadata": {"labels": {"other": "1"}}},
                _content_type="application/merge-patch+json",
            )
        obj["metadata"].setdefault("labels", {})["mine"] = "1"
        return obj

    updated = await objs.update("r", add_label)
    assert seen == [{}, {"other": "1"}]  # the retry read the other writer's change
    assert updated["metadata"]["labels"] == {"other": "1", "mine": "1"}
    assert (await objs.get("r"))["metadata"]["labels"] == {"other": "1", "mine": "1"}


async def test_update_gives_up_after_its_attempts(
    kube: Kube, kube_client: k8s.ApiClient, unique_name: str
) -> None:
    objs = kube.objects(REGISTRIES, unique_name)
    await objs.create(registry_body("r"))
    other = k8s.CustomObjectsApi(kube_client)
    calls = 0

    def always_raced(obj: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        other.patch_namespaced_custom_object(
            REGISTRIES.group,
            REGISTRIES.version,
            unique_name,
            REGISTRIES.plural,
            "r",
            {"metadata": {"labels": {"n": str(calls)}}},
            _content_type="application/merge-patch+json",
        )
        return obj

    with pytest.raises(ConflictError, match="after 3 attempts"):
        await objs.update("r", always_raced, attempts=3)
    assert calls == 3


async def test_update_without_a_change_writes_nothing(kube: Kube, unique_name: str) -> None:
    objs = kube.objects(REGISTRIES, unique_name)
    created = await objs.create(registry_body("r"))
    same = await objs.update("r", lambda obj: None)
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_finalizers_hold_a_deleted_object_until_removed(kube: Kube, unique_name: str) -> None:
    objs = kube.objects(REGISTRIES, unique_name)
    await objs.create(registry_body("r"))
    added = await objs.add_finalizer("r", "pymirror.dev/cleanup")
    again = await objs.add_finalizer("r", "pymirror.dev/cleanup")  # idempotent: no write
    assert added["metadata"]["finalizers"] == ["pymirror.dev/cleanup"]
    assert again["metadata"]["resourceVersion"] == added["metadata"]["resourceVersion"]

    await objs.delete("r")
    held = await objs.get("r")
    assert held["metadata"]["deletionTimestamp"]
    await objs.remove_finalizer("r", "pymirror.dev/cleanup")
    with pytest.raises(NotFoundError):
        await objs.get("r")
    assert await objs.remove_finalizer("r", "pymirror.dev/cleanup") is None


async def test_delete_preconditions_are_checked(kube: Kube, unique_name: str) -> None:
    objs = kube.objects(REGISTRIES, unique_name)
    created = await objs.create(registry_body("r"))
    await objs.merge_patch("r", {"metadata": {"labels": {"changed": "1"}}})
    with pytest.raises(ConflictError):
        await objs.delete("r", resource_version=created["metadata"]["resourceVersion"])
    await objs.delete("r", uid=created["metadata"]["uid"])
    assert await objs.delete("r", missing_ok=True) is None


async def test_an_unknown_resource_is_not_found(kube: Kube, unique_name: str) -> None:
    unknown = Resource(REGISTRIES.group, REGISTRIES.version, "nosuchthings")
    with pytest.raises(NotFoundError):
        await kube.objects(unknown, unique_name).list()


async def test_a_server_nobody_answers_is_unavailable(
    kube_api: KubeApi, proxy: Any, tmp_path: Path
) -> None:
    config = proxy.kubeconfig(kube_api.kubeconfig, tmp_path / "kubeconfig")
    await proxy.cut()  # nothing listens on the proxy's port now
    async with Kube.from_kubeconfig(config) as kube:
        with pytest.raises(UnavailableError) as down:
            await kube.objects(REGISTRIES, "default").get("r")
    assert down.value.retriable
    assert down.value.__cause__ is not None  # translated at the seam, the vendor error chained


async def test_requests_queue_for_the_bounded_pool(kube_api: KubeApi, unique_name: str) -> None:
    async with Kube.from_kubeconfig(kube_api.kubeconfig, max_concurrency=2) as kube:
        objs = kube.objects(REGISTRIES, unique_name)
        await objs.create(registry_body("r"))
        got = await asyncio.gather(*(objs.get("r") for _ in range(20)))
        workers = {t.name for t in threading.enumerate() if t.name.startswith("kube")}
    assert {o["metadata"]["name"] for o in got} == {"r"}
    assert 1 <= len(workers) <= 2


def test_outside_a_pod_there_is_no_in_cluster_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeConfigError, match="in-cluster"):
        Kube.in_cluster()


def test_a_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="cannot load kubeconfig"):
        Kube.from_kubeconfig(tmp_path / "nope")
