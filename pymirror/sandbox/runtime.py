"""The local runtime: a stand-in for the kubelet and the Deployment controller.

The sandbox's API server has no controllers and no nodes, so nothing would
ever run a Deployment. The local runtime does, on this machine: it watches
Deployments, StatefulSets and Argo Rollouts (through ``registry``'s adapter,
each kind at a configurable API group: :class:`~registry.workloads.WorkloadKinds`)
and runs each replica of a workload as a :class:`~pymirror.sandbox.pods.LocalPod`,
one local process per container. It is **not** Kubernetes: no images, no
scheduling, no ReplicaSets or Pod objects, no Services; it exists so that
code which reads and patches workloads (pymirror's splitting) sees them run
and roll, locally.

Per workload (:class:`WorkloadController`, the Deployment controller stand-in):

* ``spec.replicas`` pods (default 1), one slot each (``<name>-<hash>-<slot>``);
* a pod-template change replaces each slot's pod: with surge (Deployment
  RollingUpdate, Rollout) the new pod starts first and the old one is stopped
  only once the new one is ready; StatefulSets and ``Recreate`` Deployments stop
  the old pod first;
* a Rollout with ``spec.workloadRef`` runs the pod template of the Deployment it
  names (as last watched) and rolls when that template changes;
* crashed containers are restarted by the pod (the kubelet's part, see
  ``pods``);
* after every change ``status`` is written through the status subresource:
  ``observedGeneration``, ``replicas``, ``updatedReplicas``, ``readyReplicas``,
  ``availableReplicas`` (pods not being stopped; of the current template; ready)
  and ``terminatingReplicas`` (pods being stopped, in their grace period: the
  Kubernetes 1.33+ Deployment field, written for every kind);
* deleting the workload (or a deletionTimestamp) stops its pods.

On SIGTERM/SIGINT the runtime stops every pod (each with its grace period) and
exits. Every container process group is recorded in ``--groups-dir`` while it
runs, so ``sandbox down`` can reap the processes of a runtime that was killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from pymirror.sandbox.groups import GroupRecords
from pymirror.sandbox.pods import LocalPod, RestartPolicy
from pymirror.sandbox.workloads import KINDS, Desired, Kind, desired_state, workload_ref
from registry.errors import NotFoundError, RegistryError
from registry.objects import Kube, Objects
from registry.workloads import WorkloadKinds

log = structlog.get_logger("pymirror.sandbox.runtime")
FIELD_MANAGER = "pymirror-local-runtime"


@dataclass
class RuntimeConfig:
    """What the local runtime watches and where its pods write."""

    namespaces: Sequence[str]
    log_dir: Path
    kinds: WorkloadKinds = field(default_factory=WorkloadKinds)
    watch_kinds: Sequence[Kind] = KINDS
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    groups_dir: Path | None = None
    restart: RestartPolicy = field(default_factory=RestartPolicy)


class WorkloadController:
    """The Deployment controller stand-in for one workload (see the module docstring)."""

    def __init__(self, objects: Objects, desired: Desired, config: RuntimeConfig) -> None:
        self.objects = objects
        self.desired = desired
        self.config = config
        self.slots: dict[int, list[LocalPod]] = {}
        """Slot -> its live pods, oldest first (two while a slot is being replaced)."""
        self.stopping: dict[LocalPod, int] = {}
        """Pods being stopped -> their slot."""
        self.deleted = False
        self._wake = asyncio.Event()
        self._stops: set[asyncio.Task[None]] = set()
        self._written: dict[str, Any] | None = None
        self._records = GroupRecords(config.groups_dir) if config.groups_dir else None

    def update(self, desired: Desired) -> None:
        self.desired = desired
        self._wake.set()

    def delete(self) -> None:
        self.deleted = True
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    @property
    def pods(self) -> list[LocalPod]:
        return [p for pods in self.slots.values() for p in pods]

    async def run(self) -> None:
        """Converge until the workload is deleted, then stop its pods."""
        try:
            while not (self.deleted or self.desired.deleting):
                self._wake.clear()
                self._converge()
                retry = await self._write_status()
                if retry:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 1.0)
                else:
                    await self._wake.wait()
        finally:
            await self.stop_all()

    async def stop_all(self) -> None:
        for slot, pods in list(self.slots.items()):
            for pod in list(pods):
                self._stop_pod(pod, slot)
        await asyncio.gather(*list(self._stops), return_exceptions=True)

    # --- converging -----------------------------------------------------------------

    def _new_pod(self, slot: int) -> LocalPod:
        d = self.desired
        name = (
            f"{d.name}-{slot}" if d.kind == "StatefulSet" else f"{d.name}-{d.template_hash}-{slot}"
        )
        pod = LocalPod(
            name=name,
            desired=d,
            log_dir=self.config.log_dir,
            base_env=self.config.base_env,
            on_change=self.wake,
            records=self._records,
            restart=self.config.restart,
        )
        pod.start()
        self.slots.setdefault(slot, []).append(pod)
        return pod

    def _stop_pod(self, pod: LocalPod, slot: int) -> None:
        if pod in self.slots.get(slot, []):
            self.slots[slot].remove(pod)
        if pod in self.stopping:
            return
        self.stopping[pod] = slot

        async def stop() -> None:
            try:
                await pod.stop()
            finally:
                self.stopping.pop(pod, None)
                self.wake()

        task = asyncio.create_task(stop(), name=f"stop-{pod.name}")
        self._stops.add(task)
        task.add_done_callback(self._stops.discard)

    def _converge(self) -> None:
        d = self.desired
        for slot in [s for s in self.slots if s >= d.replicas]:
            for pod in list(self.slots[slot]):
                self._stop_pod(pod, slot)
            del self.slots[slot]
        for slot in range(d.replicas):
            pods = self.slots.setdefault(slot, [])
            current = [p for p in pods if p.template_hash == d.template_hash]
            old = [p for p in pods if p.template_hash != d.template_hash]
            if not current:
                if old and not d.surge:  # stop first; the new pod once they are gone
                    for pod in old:
                        self._stop_pod(pod, slot)
                elif d.surge or slot not in self.stopping.values():
                    self._new_pod(slot)
            elif current[0].ready:  # the new pod is ready: now the old ones go
                for pod in old:
                    self._stop_pod(pod, slot)
            for pod in current[1:]:  # a template changed back and forth: keep one
                self._stop_pod(pod, slot)

    # --- status -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        d = self.desired
        pods = self.pods
        ready = sum(1 for p in pods if p.ready)
        status: dict[str, Any] = {
            "observedGeneration": d.generation,
            "replicas": len(pods),
            "updatedReplicas": sum(1 for p in pods if p.template_hash == d.template_hash),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "terminatingReplicas": len(self.stopping),
        }
        if d.workload_generation is not None:  # Argo Rollouts writes it as a string
            status["workloadObservedGeneration"] = str(d.workload_generation)
        return status

    async def _write_status(self) -> bool:
        """Patch the status if it changed; True to retry soon (the write failed)."""
        status = self.status()
        if status == self._written:
            return False
        try:
            await self.objects.patch_status(self.desired.name, status)
        except NotFoundError:
            return False  # deleted: the watch tells us next
        except RegistryError as e:
            log.warning("status write failed", workload=self.desired.name, error=str(e))
            return True
        self._written = status
        return False


class LocalRuntime:
    """Watches the workload kinds in the configured namespaces; one controller per workload."""

    def __init__(self, kube: Kube, config: RuntimeConfig) -> None:
        self.kube = kube
        self.config = config
        self.controllers: dict[tuple[Kind, str, str], WorkloadController] = {}
        self._tasks: dict[tuple[Kind, str, str], asyncio.Task[None]] = {}
        self.seen: dict[tuple[Kind, str, str], dict[str, Any]] = {}
        """Each workload as last watched (a Rollout's ``workloadRef`` reads its Deployment)."""
        self.watching: set[tuple[Kind, str]] = set()
        """(kind, namespace) pairs being watched (a kind the server does not serve is not)."""
        self.ready = asyncio.Event()
        """Set once every (kind, namespace) has been found served (and watched) or not."""
        self._pending = len(config.watch_kinds) * len(config.namespaces)

    async def run(self) -> None:
        """Watch until cancelled; on the way out every pod is stopped."""
        try:
            async with asyncio.TaskGroup() as group:
                for kind in self.config.watch_kinds:
                    for namespace in self.config.namespaces:
                        group.create_task(self._watch(kind, namespace))
        finally:
            await self.close()

    async def close(self) -> None:
        for controller in self.controllers.values():
            controller.delete()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _watch(self, kind: Kind, namespace: str) -> None:
        objects = self.kube.objects(self.config.kinds.resource(kind), namespace)
        try:
            await objects.list(page_size=1)  # is the kind served? (the watch lists again)
        except NotFoundError:
            log.warning("kind not served; not watched", kind=kind, resource=str(objects.resource))
            self._checked()
            return
        self.watching.add((kind, namespace))
        self._checked()
        try:
            async for event in objects.watch(retry_for=None):
                self._dispatch(kind, namespace, objects, event.type, event.name, event.object)
        finally:
            self.watching.discard((kind, namespace))

    def _checked(self) -> None:
        self._pending -= 1
        if self._pending <= 0:
            self.ready.set()

    def _dispatch(
        self,
        kind: Kind,
        namespace: str,
        objects: Objects,
        event: str,
        name: str,
        obj: dict[str, Any],
    ) -> None:
        key = (kind, namespace, name)
        if event == "DELETED":
            self.seen.pop(key, None)
            if (gone := self.controllers.pop(key, None)) is not None:
                gone.delete()
        else:
            self.seen[key] = obj
            desired = self._desired(kind, namespace, obj)
            if (existing := self.controllers.get(key)) is not None:
                existing.update(desired)
            else:
                self._start(key, objects, desired)
        if kind == "Deployment":  # the Rollouts whose workloadRef names it follow it
            for (k, ns, n), rollout in self.seen.items():
                follower = self.controllers.get((k, ns, n))
                if follower and ns == namespace and workload_ref(k, rollout) == name:
                    follower.update(self._desired(k, ns, rollout))

    def _desired(self, kind: Kind, namespace: str, obj: dict[str, Any]) -> Desired:
        """``obj``'s desired state; a Rollout's ``workloadRef`` read from the Deployment seen."""
        ref = workload_ref(kind, obj)
        referenced = None if ref is None else self.seen.get(("Deployment", namespace, ref))
        return desired_state(kind, obj, referenced)

    def _start(self, key: tuple[Kind, str, str], objects: Objects, desired: Desired) -> None:
        controller = WorkloadController(objects, desired, self.config)
        self.controllers[key] = controller
        kind, namespace, name = key
        task = asyncio.create_task(controller.run(), name=f"workload-{kind}-{namespace}-{name}")
        self._tasks[key] = task
        task.add_done_callback(functools.partial(self._done, key))

    def _done(self, key: tuple[Kind, str, str], task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("workload controller failed", workload=key, error=repr(error))


async def serve(
    kubeconfig: str | None,
    context: str | None,
    config: RuntimeConfig,
    ready_file: Path | None = None,
) -> None:
    """Run the local runtime until SIGTERM/SIGINT; stop every pod before returning.

    ``ready_file`` is written once every kind has been checked and is being watched."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Kube.from_kubeconfig(kubeconfig, context) as kube:
        runtime = LocalRuntime(kube, config)
        task = asyncio.create_task(runtime.run())
        waiter = asyncio.create_task(stop.wait())
        if ready_file is not None:
            ready = asyncio.create_task(runtime.ready.wait())
            await asyncio.wait({task, waiter, ready}, return_when=asyncio.FIRST_COMPLETED)
            if ready.done():
                await asyncio.to_thread(ready_file.write_text, f"{os.getpid()}\n")
                log.info("local runtime ready", watching=sorted(runtime.watching))
            ready.cancel()
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        log.info("local runtime stopping", workloads=len(runtime.controllers))
        task.cancel()
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    log.info("local runtime stopped")
