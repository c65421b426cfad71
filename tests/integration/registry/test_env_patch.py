"""registry.env_patch on the real test API server: env patch and exact restore, rollout waits.

Workloads are the stand-in Deployment/StatefulSet CRDs and the cut-down Argo Rollout
CRD (tests/kube/README.md); no controller runs there, so a rollout finishes only when
the test writes the workload's status (status subresource), as a controller would.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from registry.env_patch import (
    ORIGINAL_ENV_ANNOTATION,
    env_owners,
    patch_env,
    restore_env,
    rollout_status,
    wait_rolled_out,
)
from registry.errors import EnvAnnotationError, RolloutTimeoutError, WorkloadError
from registry.objects import Kube, Obj, Objects
from registry.resources import Resource
from registry.workloads import Workload, WorkloadRef, get_workload
from tests.integration.registry.test_workloads import SHAPES, STAND_IN_WORKLOADS, create_workload
from tests.servers.kube import KubeApi

pytestmark = pytest.mark.integration

KINDS = STAND_IN_WORKLOADS
URL_FROM = {"configMapKeyRef": {"name": "queues", "key": "url", "optional": True}}


def main_container() -> dict[str, Any]:
    return {
        "name": "main",
        "image": "app:1",
        "env": [
            {"name": "BEFORE", "value": "1"},
            {"name": "QUEUE_NAME", "value": "orders"},
            {"name": "QUEUE_URL", "valueFrom": URL_FROM},
            {"name": "AFTER", "value": "2"},
        ],
        "envFrom": [{"configMapRef": {"name": "more"}}],
        "ports": [{"containerPort": 8080}],
    }


def containers() -> list[dict[str, Any]]:
    sidecar = {"name": "sidecar", "image": "s:1", "env": [{"name": "QUEUE_NAME", "value": "s"}]}
    return [sidecar, main_container()]


async def setup(
    kube: Kube, namespace: str, shape: str = "Deployment", cs: list[dict[str, Any]] | None = None
) -> Workload:
    kind, _ = await create_workload(kube, namespace, shape, "app", cs or containers())
    return await get_workload(kube, KINDS, namespace, kind, "app")


def owner_objects(kube: Kube, workload: Workload) -> Objects:
    owner = workload.template_owner
    return kube.objects(KINDS.resource(owner.kind), owner.namespace)


async def template_owner(kube: Kube, workload: Workload) -> Obj:
    return await owner_objects(kube, workload).get(workload.template_owner.name)


def container(obj: Obj, name: str = "main") -> dict[str, Any]:
    found: dict[str, Any] = next(
        c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == name
    )
    return found


def env(obj: Obj, name: str = "main") -> dict[str, Any]:
    """The container's env as name -> the item without its name, in order."""
    return {
        e["name"]: {k: v for k, v in e.items() if k != "name"} for e in container(obj, name)["env"]
    }


def annotation(obj: Obj) -> Any:
    text = (obj["metadata"].get("annotations") or {}).get(ORIGINAL_ENV_ANNOTATION)
    return None if text is None else json.loads(text)


def exact(obj: Obj) -> str:
    """The pod template's containers, byte for byte."""
    return json.dumps(obj["spec"]["template"]["spec"]["containers"])


# --- patch and restore ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
async def test_patch_then_restore_gives_back_the_exact_containers(
    kube: Kube, unique_name: str, shape: str
) -> None:
    workload = await setup(kube, unique_name, shape)
    before = copy.deepcopy(workload.template_owner_obj)
    values = {"QUEUE_NAME": "fallback", "QUEUE_URL": "http://sqs/fallback", "NEW_VAR": "added"}

    patched = await patch_env(kube, workload, "main", values, owner="split-a")

    assert patched["metadata"]["name"] == workload.template_owner.name
    assert env(patched) == {
        "BEFORE": {"value": "1"},
        "QUEUE_NAME": {"value": "fallback"},
        "QUEUE_URL": {"value": "http://sqs/fallback"},
        "AFTER": {"value": "2"},
        "NEW_VAR": {"value": "added"},
    }
    assert list(env(patched)) == ["BEFORE", "QUEUE_NAME", "QUEUE_URL", "AFTER", "NEW_VAR"]
    assert container(patched, "sidecar") == container(before, "sidecar")
    assert annotation(patched) == {
        "split-a": {
            "main": {
                "NEW_VAR": None,
                "QUEUE_NAME": {"value": "orders"},
                "QUEUE_URL": {"valueFrom": URL_FROM},
            }
        }
    }
    assert patched["metadata"]["generation"] == before["metadata"]["generation"] + 1
    if shape == "Rollout with workloadRef":  # the Deployment holding the template is patched
        rollout = await kube.objects(KINDS.rollout, unique_name).get("app")
        assert rollout["metadata"]["generation"] == workload.obj["metadata"]["generation"]
        assert rollout["spec"] == workload.obj["spec"]

    restored = await restore_env(kube, workload.ref, owner="split-a", kinds=KINDS)

    assert restored is not None
    assert exact(restored) == exact(before)
    assert restored["spec"] == before["spec"]
    assert "annotations" not in restored["metadata"]
    assert env_owners(restored) == set()


async def test_a_second_patch_by_the_same_owner_keeps_the_first_originals(
    kube: Kube, unique_name: str
) -> None:
    workload = await setup(kube, unique_name)
    before = workload.template_owner_obj
    first = await patch_env(kube, workload, "main", {"QUEUE_NAME": "f1"}, owner="split-a")

    again = await patch_env(kube, workload, "main", {"QUEUE_NAME": "f1"}, owner="split-a")
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]  # no write

    changed = await patch_env(
        kube, workload, "main", {"QUEUE_NAME": "f2", "QUEUE_URL": "u2"}, owner="split-a"
    )
    assert env(changed)["QUEUE_NAME"] == {"value": "f2"}
    assert annotation(changed) == {
        "split-a": {
            "main": {"QUEUE_NAME": {"value": "orders"}, "QUEUE_URL": {"valueFrom": URL_FROM}}
        }
    }

    restored = await restore_env(kube, workload.ref, owner="split-a", kinds=KINDS)
    assert restored is not None
    assert exact(restored) == exact(before)


async def test_two_owners_restore_independently(kube: Kube, unique_name: str) -> None:
    workload = await setup(kube, unique_name)
    before = workload.template_owner_obj
    await patch_env(kube, workload, "main", {"QUEUE_NAME": "fallback-a"}, owner="split-a")
    await patch_env(kube, workload, "main", {"QUEUE_URL": "fallback-b"}, owner="split-b")
    both = await patch_env(kube, workload, "sidecar", {"QUEUE_NAME": "sidecar-b"}, owner="split-b")
    assert env_owners(both) == {"split-a", "split-b"}

    after_a = await restore_env(kube, workload.ref, owner="split-a", kinds=KINDS)

    assert after_a is not None
    assert env(after_a)["QUEUE_NAME"] == {"value": "orders"}
    assert env(after_a)["QUEUE_URL"] == {"value": "fallback-b"}
    assert env(after_a, "sidecar") == {"QUEUE_NAME": {"value": "sidecar-b"}}
    assert annotation(after_a) == {
        "split-b": {
            "main": {"QUEUE_URL": {"valueFrom": URL_FROM}},
            "sidecar": {"QUEUE_NAME": {"value": "s"}},
        }
    }
    again = await restore_env(kube, workload.ref, owner="split-a", kinds=KINDS)  # no-op
    assert again is not None
    assert again["metadata"]["resourceVersion"] == after_a["metadata"]["resourceVersion"]

    after_b = await restore_env(kube, workload.ref, owner="split-b", kinds=KINDS)

    assert after_b is not None
    assert exact(after_b) == exact(before)
    assert "annotations" not in after_b["metadata"]


async def test_a_var_two_owners_patch_gets_its_true_original_back_when_the_last_leaves(
    kube: Kube, unique_name: str
) -> None:
    workload = await setup(kube, unique_name)
    before = workload.template_owner_obj
    await patch_env(kube, workload, "main", {"QUEUE_NAME": "for-a"}, owner="split-a")
    both = await patch_env(kube, workload, "main", {"QUEUE_NAME": "for-b"}, owner="split-b")
    assert annotation(both)["split-b"] == {"main": {"QUEUE_NAME": {"value": "orders"}}}

    after_a = await restore_env(kube, workload.ref, owner="split-a", kinds=KINDS)
    assert after_a is not None
    assert env(after_a)["QUEUE_NAME"] == {"value": "for-b"}  # split-b still uses it

    after_b = await restore_env(kube, workload.ref, owner="split-b", kinds=KINDS)
    assert after_b is not None
    assert exact(after_b) == exact(before)


async def test_restore_leaves_a_users_edits_of_other_vars_alone(
    kube: Kube, unique_name: str
) -> None:
    workload = await setup(kube, unique_name)
    patched = await patch_env(
        kube, workload, "main", {"QUEUE_NAME": "fallback", "ADDED": "x"}, owner="split-a"
    )
    objects = owner_objects(kube, workload)
    await objects.json_patch(  # a user edits the workload meanwhile
        "app",
        [
            {"op": "replace", "path": "/spec/template/spec/containers/1/env/0/value", "value": "9"},
            {"op": "add", "path": "/spec/template/spec/containers/1/env/-", "value": {"name": "U"}},
            {"op": "add", "path": "/metadata/annotations/team", "value": "shop"},
        ],
    )
    assert annotation(await objects.get("app")) == annotation(patched)

    restored = await restore_env(kube, workload.ref, owner="split-a", kinds=KINDS)

    assert restored is not None
    assert env(restored) == {
        "BEFORE": {"value": "9"},
        "QUEUE_NAME": {"value": "orders"},
        "QUEUE_URL": {"valueFrom": URL_FROM},
        "AFTER": {"value": "2"},
        "U": {},
    }
    assert restored["metadata"]["annotations"] == {"team": "shop"}


async def test_a_container_without_env_gets_it_added_and_removed(
    kube: Kube, unique_name: str
) -> None:
    workload = await setup(kube, unique_name, "StatefulSet", [{"name": "main", "image": "a:1"}])
    before = workload.template_owner_obj

    patched = await patch_env(kube, workload, "main", {"Q": "fallback"}, owner="split-a")
    assert container(patched)["env"] == [{"name": "Q", "value": "fallback"}]
    assert annotation(patched) == {"split-a": {"main": {"Q": None}}}

    restored = await restore_env(kube, workload.ref, owner="split-a", kinds=KINDS)
    assert restored is not None
    assert container(restored) == {"name": "main", "image": "a:1"}
    assert exact(restored) == exact(before)


class InterferingObjects(Objects):
    """Objects whose first ``get`` is followed by another writer's change (a real write to
    the real server), so the env patch computed from that read meets a changed object."""

    interfered = 0

    async def get(self, name: str) -> Obj:
        obj = await super().get(name)
        if not InterferingObjects.interfered:
            InterferingObjects.interfered += 1
            await self.json_patch(
                name, [{"op": "add", "path": "/metadata/labels", "value": {"edited": "meanwhile"}}]
            )
        return obj


class InterferingKube(Kube):
    def objects(self, resource: Resource, namespace: str) -> Objects:
        return InterferingObjects(self, resource, namespace)


@pytest.fixture
async def interfering(kube_api: KubeApi, kube_crds: list[str]) -> AsyncIterator[Kube]:
    InterferingObjects.interfered = 0
    async with InterferingKube.from_kubeconfig(kube_api.kubeconfig) as client:
        yield client


async def test_a_patch_meeting_a_concurrent_change_is_retried_on_the_new_object(
    kube: Kube, interfering: Kube, unique_name: str
) -> None:
    workload = await setup(kube, unique_name)

    patched = await patch_env(interfering, workload, "main", {"QUEUE_NAME": "f"}, owner="split-a")

    assert InterferingObjects.interfered == 1
    assert patched["metadata"]["labels"] == {"edited": "meanwhile"}
    assert env(patched)["QUEUE_NAME"] == {"value": "f"}
    assert env_owners(patched) == {"split-a"}


async def test_concurrent_owners_all_land(kube: Kube, unique_name: str) -> None:
    workload = await setup(kube, unique_name)
    owners = [f"split-{i}" for i in range(5)]

    await asyncio.gather(
        *(patch_env(kube, workload, "main", {f"VAR_{o}": o}, owner=o) for o in owners)
    )

    obj = await template_owner(kube, workload)
    assert env_owners(obj) == set(owners)
    assert all(env(obj)[f"VAR_{o}"] == {"value": o} for o in owners)
    await asyncio.gather(*(restore_env(kube, workload.ref, owner=o, kinds=KINDS) for o in owners))
    assert exact(await template_owner(kube, workload)) == exact(workload.template_owner_obj)


async def test_errors_name_the_workload_and_the_fix(kube: Kube, unique_name: str) -> None:
    workload = await setup(kube, unique_name)
    with pytest.raises(WorkloadError, match=re.escape("has no container 'web' (its containers:")):
        await patch_env(kube, workload, "web", {"Q": "f"}, owner="split-a")

    await owner_objects(kube, workload).json_patch(
        "app",
        [{"op": "add", "path": "/metadata/annotations", "value": {ORIGINAL_ENV_ANNOTATION: "{"}}],
    )
    message = f"Deployment {unique_name}/app: annotation pymirror.dev/original-env is not JSON"
    with pytest.raises(EnvAnnotationError, match=re.escape(message)):
        await patch_env(kube, workload, "main", {"Q": "f"}, owner="split-a")
    with pytest.raises(EnvAnnotationError, match="put the env vars right by hand"):
        env_owners(await template_owner(kube, workload))


async def test_restore_of_a_gone_workload_or_unknown_owner_changes_nothing(
    kube: Kube, unique_name: str
) -> None:
    workload = await setup(kube, unique_name, "Rollout with workloadRef")
    untouched = await restore_env(kube, workload.ref, owner="split-a", kinds=KINDS)
    assert untouched is not None
    assert (
        untouched["metadata"]["resourceVersion"]
        == (workload.template_owner_obj["metadata"]["resourceVersion"])
    )

    await owner_objects(kube, workload).delete(workload.template_owner.name)
    assert await restore_env(kube, workload.ref, owner="split-a", kinds=KINDS) is None
    gone = WorkloadRef("Deployment", unique_name, "never-was")
    assert await restore_env(kube, gone, owner="split-a", kinds=KINDS) is None


# --- rollouts ------------------------------------------------------------------------------


class Progress:
    """``on_progress`` messages, awaitable one by one."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._queue: asyncio.Queue[str] = asyncio.Queue()

    def __call__(self, message: str) -> None:
        self.messages.append(message)
        self._queue.put_nowait(message)

    async def next(self) -> str:
        return await self._queue.get()


async def test_waiting_for_a_deployment_ends_when_its_status_shows_the_new_pods_ready(
    kube: Kube, unique_name: str
) -> None:
    workload = await setup(kube, unique_name)
    objects = owner_objects(kube, workload)
    await objects.merge_patch("app", {"spec": {"replicas": 2}})
    patched = await patch_env(kube, workload, "main", {"QUEUE_NAME": "f"}, owner="split-a")
    generation = patched["metadata"]["generation"]
    progress = Progress()

    waiting = asyncio.create_task(
        wait_rolled_out(kube, workload.ref, KINDS, timeout=600, on_progress=progress, interval=0.05)
    )

    assert await progress.next() == (
        f"the Deployment controller has not observed generation {generation} yet (observed: none)"
    )
    first = {
        "observedGeneration": generation,
        "updatedReplicas": 1,
        "replicas": 3,
        "readyReplicas": 2,
    }
    steps = [
        (first, "1 of 2 replicas updated"),
        ({"updatedReplicas": 2}, "1 old replicas pending termination"),
        ({"replicas": 2, "readyReplicas": 1}, "1 of 2 updated replicas ready"),
        ({"readyReplicas": 2, "availableReplicas": 1}, "1 of 2 updated replicas available"),
    ]
    for status, message in steps:
        await objects.patch_status("app", status)
        assert await progress.next() == message
        assert not waiting.done()
    await objects.patch_status("app", {"availableReplicas": 2})

    await waiting
    assert progress.messages[-1] == "2 of 2 updated replicas ready"
    assert (await rollout_status(kube, workload.ref, KINDS)).done


async def test_waiting_times_out_naming_the_workload_what_is_missing_and_the_setting(
    kube: Kube, unique_name: str
) -> None:
    workload = await setup(kube, unique_name, "StatefulSet")
    objects = owner_objects(kube, workload)
    status = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 0}
    await objects.patch_status("app", status)
    progress = Progress()

    with pytest.raises(RolloutTimeoutError) as raised:
        await wait_rolled_out(
            kube, workload.ref, KINDS, timeout=0.3, on_progress=progress, interval=0.05
        )

    error = raised.value
    assert str(error).startswith(
        f"StatefulSet {unique_name}/app did not finish its rollout within 0.3 s: "
        "0 of 1 updated replicas ready."
    )
    assert "workloadRestartTimeout" in str(error)
    assert (error.workload, error.missing) == (
        f"StatefulSet {unique_name}/app",
        progress.messages[-1],
    )
    assert progress.messages == ["0 of 1 updated replicas ready"]  # reported once, not per poll


async def test_a_workload_ref_rollout_is_done_once_it_observed_the_patched_deployment(
    kube: Kube, unique_name: str
) -> None:
    workload = await setup(kube, unique_name, "Rollout with workloadRef")
    rollouts = kube.objects(KINDS.rollout, unique_name)
    # rolled out before the patch (Argo writes observedGeneration as a string)
    ready = {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}
    generation = workload.template_owner_obj["metadata"]["generation"]
    await rollouts.patch_status(
        "app",
        {"observedGeneration": "1", "workloadObservedGeneration": str(generation), **ready},
    )
    assert (await rollout_status(kube, workload.ref, KINDS)).done

    patched = await patch_env(kube, workload, "main", {"QUEUE_NAME": "f"}, owner="split-a")

    status = await rollout_status(kube, workload.ref, KINDS)
    assert not status.done
    assert status.message == (
        f"the Rollout controller has not observed generation {generation + 1} of Deployment "
        f"{workload.template_owner.name} (spec.workloadRef) yet (observed: {generation})"
    )
    progress = Progress()
    waiting = asyncio.create_task(
        wait_rolled_out(kube, workload.ref, KINDS, timeout=600, on_progress=progress, interval=0.05)
    )
    assert await progress.next() == status.message
    await rollouts.patch_status(
        "app",
        {
            "workloadObservedGeneration": str(patched["metadata"]["generation"]),
            "updatedReplicas": 0,
            "phase": "Paused",
            "message": "CanaryPauseStep",
        },
    )
    assert (
        await progress.next() == "0 of 1 replicas updated; the Rollout is Paused: CanaryPauseStep"
    )
    await rollouts.patch_status("app", {"updatedReplicas": 1, "phase": "Healthy"})
    await waiting
    assert progress.messages[-1] == "1 of 1 updated replicas ready"
