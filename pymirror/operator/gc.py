"""Garbage collection: what no live session or split owns any more (DESIGN §10).

``collect`` runs at the operator's start and every ``gc_interval`` seconds:

* a QueueSplit route whose SplitSession no longer exists (its finalizer was removed by
  hand, or the object was force-deleted, so its end never ran) is left like an ended
  session: ``Splits.leave`` removes the route and, once the worker ended the session,
  deletes its recorded queue (tag-checked); the last route starts the hand-back. Called
  again on every collection until it says done.
* a workload in a watched namespace (every namespace when none is named) whose pod
  template carries the original-env annotation (``registry.env_patch``) for a QueueSplit
  that does not exist is restored for that owner (``restore_env``). The split is looked
  up again right before the restore; a split created in between (the same name, by a new
  session) is then left alone. The window between that look-up and the restore's write
  remains: a first session patching a workload in exactly that instant would see its
  patch undone and time out; the next collection is ``gc_interval`` away.
* a worker Deployment in the operator's namespace (labelled ``pymirror.dev/split``,
  named ``worker_name`` of that split: ``pymirror.operator.worker_deployments``) whose
  QueueSplit does not exist (a narrow race in ``Splits`` can recreate it after the hand-back
  deleted it) is deleted, guarded by its uid. The split is looked up again right before.
* a temporary SQS queue whose QueueSplit is gone (the split was force-deleted, or its
  records were lost) is deleted. Which queues GC may touch, and why that is safe:

  - only queues of an original the operator *knows*: the ``spec.original`` of a SQS
    QueueSplit this process has seen (``KnownOriginals``: every collection's listing,
    and every QueueSplit event the controller hands it, deletions included). Originals are
    never guessed from the queues themselves, so another pymirror sharing the AWS account
    (another cluster, another operator namespace) never loses a queue it still uses for
    an original this operator never split. Two operators splitting the *same* original
    in one AWS account cannot tell their queues apart (the tags do not name the operator):
    turn ``operator.gc_queues`` off there. The known originals live in memory: the
    queues of a split deleted while no operator ran are not found after a restart
    (until a new split of that original makes it known again);
  - among them, only queues pymirror made for that original: listed by the queue
    format's prefix, the name fitting the format for that original, and the bookkeeping
    tags ``pymirror.dev/created-by=pymirror`` and ``pymirror.dev/original-queue``
    (``splitter.sqs.queues.find_temporary_queues``); the delete checks the tag again;
  - among them, only queues no existing QueueSplit records in ``status.temporaryResources``.
    The QueueSplits are listed *after* the queues, and ``Splits`` records a queue before
    it creates it and drops the record only after deleting it, so a queue that existed
    when listed and that no split records afterwards belongs to no live split.

``collect`` returns what it did (``Collected``; ``counts()`` per action, which the
controller adds to ``pymirror_gc_actions_total{action}``) and logs each action.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from pymirror.operator.worker_deployments import WORKER_LABEL, worker_name
from registry.env_patch import env_owners, restore_env
from registry.errors import ConflictError, NotFoundError
from registry.objects import Kube, Obj, Objects
from registry.resources import Resource
from registry.session_models import QueueSplit, SplitSession
from registry.workloads import KINDS, WorkloadKinds, WorkloadRef
from splitter.naming import NameFormat
from splitter.sqs.client import SqsEndpoint, connect
from splitter.sqs.queues import FoundQueue, delete_temporary_queue, find_temporary_queues

log = structlog.get_logger("pymirror.operator.gc")


class Leaver(Protocol):
    async def leave(self, split: str, session_ref: str) -> bool: ...


class KnownOriginals:
    """The SQS originals of the QueueSplits this process has seen (see the docstring)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def remember(self, split: Mapping[str, Any]) -> None:
        """Note ``split``'s original (a QueueSplit object, live or just deleted)."""
        spec = split.get("spec") or {}
        if spec.get("kind") == "SQS" and spec.get("original"):
            self.names.add(str(spec["original"]))


@dataclass(frozen=True)
class QueueSweep:
    """Where orphan temporary queues are looked for: SQS, the queue format, the originals."""

    endpoint: SqsEndpoint
    name_format: NameFormat
    originals: KnownOriginals


@dataclass
class Collected:
    """What one collection did."""

    left: list[tuple[str, str]] = field(default_factory=list)
    """``(split, session ref)`` of the routes of sessions that are gone, left."""
    pending: list[tuple[str, str]] = field(default_factory=list)
    """Of those, the ones whose end the worker has not finished yet."""
    restored: list[tuple[str, str]] = field(default_factory=list)
    """``(workload, split)`` of the env patches restored."""
    workers: list[tuple[str, str]] = field(default_factory=list)
    """``(deployment, split)`` of the worker Deployments deleted."""
    queues: list[tuple[str, str]] = field(default_factory=list)
    """``(queue, original)`` of the temporary queues deleted."""

    def counts(self) -> dict[str, int]:
        """Actions by kind (``route_left``, ``env_restored``, ``worker_deleted``,
        ``queue_deleted``), for ``pymirror_gc_actions_total``."""
        return {
            "route_left": len(self.left),
            "env_restored": len(self.restored),
            "worker_deleted": len(self.workers),
            "queue_deleted": len(self.queues),
        }


async def collect(
    kube: Kube,
    splits: Leaver,
    *,
    namespaces: Sequence[str],
    operator_namespace: str,
    kinds: WorkloadKinds,
    workers: Resource | None = None,
    queues: QueueSweep | None = None,
) -> Collected:
    """One collection (see the module docstring). ``namespaces`` empty: the workloads of
    every namespace; ``workers``: where the worker Deployments are served (None: not
    collected); ``queues``: orphan temporary queues (None: not collected)."""
    done = Collected()
    split_objects = kube.objects(QueueSplit.RESOURCE, operator_namespace)
    listed = (await split_objects.list()).items
    for split in listed:
        if queues is not None:
            queues.originals.remember(split)
        await _orphan_routes(kube, splits, split, done)
    existing = {str(s["metadata"]["name"]) for s in listed}
    scopes: list[str | None] = [*namespaces] or [None]  # None: every namespace
    for namespace in scopes:
        for kind in KINDS:
            await _orphan_patches(kube, kinds, kind, namespace, existing, split_objects, done)
    if workers is not None:
        await _orphan_workers(kube.objects(workers, operator_namespace), split_objects, done)
    if queues is not None:
        await _orphan_queues(queues, split_objects, done)
    if any(done.counts().values()):
        log.info(
            "garbage collected",
            routes_left=[f"{s}: {r}" for s, r in done.left],
            still_ending=[f"{s}: {r}" for s, r in done.pending],
            restored=[f"{w}: {s}" for w, s in done.restored],
            workers_deleted=[f"{d}: {s}" for d, s in done.workers],
            queues_deleted=[f"{q}: {o}" for q, o in done.queues],
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
    namespace: str | None,
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
            meta = obj["metadata"]
            ref = WorkloadRef(kind, str(meta["namespace"]), str(meta["name"]))
            await restore_env(kube, ref, owner=owner, kinds=kinds)
            log.info("gc: orphan env patch restored", workload=str(ref), split=owner)
            done.restored.append((str(ref), owner))


async def _orphan_workers(deployments: Objects, split_objects: Objects, done: Collected) -> None:
    try:
        listed = (await deployments.list(label_selector=WORKER_LABEL)).items
    except NotFoundError:
        return  # the Deployment kind is not served here
    for obj in listed:
        meta = obj["metadata"]
        split = str((meta.get("labels") or {}).get(WORKER_LABEL, ""))
        if not split or meta["name"] != worker_name(split):
            continue  # not named as ours for that split
        if await _exists(split_objects, split):
            continue  # its split is live
        try:
            gone = await deployments.delete(
                meta["name"], missing_ok=True, propagation_policy="Background", uid=meta["uid"]
            )
        except ConflictError:
            continue  # replaced since the listing (a new split's): not the orphan we saw
        if gone is not None:
            log.info("gc: orphan worker deployment deleted", deployment=meta["name"], split=split)
            done.workers.append((str(meta["name"]), split))


async def _orphan_queues(sweep: QueueSweep, split_objects: Objects, done: Collected) -> None:
    if not sweep.originals.names:
        return
    async with connect(sweep.endpoint) as client:
        found: list[FoundQueue] = []
        for original in sorted(sweep.originals.names):
            found += await find_temporary_queues(client, original, sweep.name_format)
        if not found:
            return
        # Listed after the queues: a split records a queue before creating it.
        recorded = {
            name for split in (await split_objects.list()).items for name in _records(split)
        }
        for queue in found:
            if queue.name in recorded:
                continue
            await delete_temporary_queue(client, queue.url)  # checks the tag again
            log.info(
                "gc: orphan temporary queue deleted",
                queue=queue.name,
                original=queue.original,
                role="fallback" if queue.fallback else "session",
                session=queue.session,
            )
            done.queues.append((queue.name, queue.original))


def _records(split: Mapping[str, Any]) -> set[str]:
    """The queue names a QueueSplit records in ``status.temporaryResources``."""
    resources = (split.get("status") or {}).get("temporaryResources") or ()
    return {str(r.get("name")) for r in resources if r.get("name")}


async def _exists(objects: Objects, name: str) -> bool:
    try:
        await objects.get(name)
    except NotFoundError:
        return False
    return True
