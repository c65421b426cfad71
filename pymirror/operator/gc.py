"""Garbage collection: what no live session or split owns any more (DESIGN §10).

``collect`` runs at the operator's start and every ``gc_interval`` seconds:

* a QueueSplit route whose SplitSession no longer exists (its finalizer was removed by
  hand, or the object was force-deleted, so its end never ran) is left like an ended
  session: ``Splits.leave`` removes the route and, once the worker ended the session,
  deletes its recorded queue (tag-checked); the last route starts the hand-back. Called
  again on every collection until it says done.
* a workload in a watched namespace whose pod template carries the original-env
  annotation (``registry.env_patch``) for a QueueSplit that does not exist is restored
  for that owner (``restore_env``). The split is looked up again right before the restore;
  a split created in between (the same name, by a new session) is then left alone. The
  window between that look-up and the restore's write remains: a first session patching
  a workload in exactly that instant would see its patch undone and time out; the next
  collection is ``gc_interval`` away.

Temporary queues are only ever deleted through ``Splits`` (recorded, tag-checked); a
queue whose QueueSplit object is itself gone is not found here (that needs a listing of
SQS by pymirror's tag: not done yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from registry.env_patch import env_owners, restore_env
from registry.errors import NotFoundError
from registry.objects import Kube, Obj, Objects
from registry.session_models import QueueSplit, SplitSession
from registry.workloads import KINDS, WorkloadKinds, WorkloadRef

log = structlog.get_logger("pymirror.operator.gc")


class Leaver(Protocol):
    async def leave(self, split: str, session_ref: str) -> bool: ...


@dataclass
class Collected:
    """What one collection did."""

    left: list[tuple[str, str]] = field(default_factory=list)
    """``(split, session ref)`` of the routes of sessions that are gone, left."""
    pending: list[tuple[str, str]] = field(default_factory=list)
    """Of those, the ones whose end the worker has not finished yet."""
    restored: list[tuple[str, str]] = field(default_factory=list)
    """``(workload, split)`` of the env patches restored."""


async def collect(
    kube: Kube,
    splits: Leaver,
    *,
    namespaces: Sequence[str],
    operator_namespace: str,
    kinds: WorkloadKinds,
) -> Collected:
    """One collection (see the module docstring)."""
    done = Collected()
    split_objects = kube.objects(QueueSplit.RESOURCE, operator_namespace)
    listed = (await split_objects.list()).items
    for split in listed:
        await _orphan_routes(kube, splits, split, done)
    existing = {str(s["metadata"]["name"]) for s in listed}
    for namespace in namespaces:
        for kind in KINDS:
            await _orphan_patches(kube, kinds, kind, namespace, existing, split_objects, done)
    if done.left or done.restored:
        log.info(
            "garbage collected",
            routes_left=[f"{s}: {r}" for s, r in done.left],
            still_ending=[f"{s}: {r}" for s, r in done.pending],
            restored=[f"{w}: {s}" for w, s in done.restored],
        )
    return done


async def _orphan_routes(kube: Kube, splits: Leaver, split: Obj, done: Collected) -> None:
    name = str(split["metadata"]["name"])
    for route in (split.get("spec") or {}).get("routes") or ():
        ref = str(route.get("session", ""))
        namespace, _, session = ref.partition("/")
        if not namespace or not session:
            continue
        try:
            await kube.objects(SplitSession.RESOURCE, namespace).get(session)
            continue  # alive: its own reconcile owns the route
        except NotFoundError:
            pass
        done.left.append((name, ref))
        if not await splits.leave(name, ref):
            done.pending.append((name, ref))


async def _orphan_patches(
    kube: Kube,
    kinds: WorkloadKinds,
    kind: str,
    namespace: str,
    existing: set[str],
    split_objects: Objects,
    done: Collected,
) -> None:
    objects = kube.objects(kinds.resource(kind), namespace)
    try:
        workloads = (await objects.list()).items
    except NotFoundError:
        return  # the kind is not served here
    for obj in workloads:
        for owner in sorted(env_owners(obj) - existing):
            if await _exists(split_objects, owner):
                continue  # created since the listing: its patch is live
            ref = WorkloadRef(kind, namespace, str(obj["metadata"]["name"]))
            await restore_env(kube, ref, owner=owner, kinds=kinds)
            done.restored.append((str(ref), owner))


async def _exists(objects: Objects, name: str) -> bool:
    try:
        await objects.get(name)
    except NotFoundError:
        return False
    return True
