"""``pymirror session kill`` and ``kill-all``: end sessions that are not yours to end.

A kill is an annotation, then a delete: ``pymirror.dev/killed: <who>`` (``who`` is
``whoami/k8s-user@hostname`` of the person killing, as ``pymirror exec`` names an owner)
tells the operator to end the session with ``endReason: Killed`` and the message
``killed by <who>``; the delete starts the end (the operator's finalizer holds the object
until its queues are handed back). The ``pymirror exec`` running inside the session sees
it, stops its command and exits 1 saying who killed it.

* ``kill_one(kube, namespace, name, who)``: get (``SessionNotFoundError`` when there is
  none), merge-patch the annotation, delete. Verbs: ``get``, ``patch``, ``delete``.
* ``kill_all(kube, namespace, who)`` (``namespace`` None: every namespace): list the
  sessions, skip those already being deleted, then, per session, one merge patch that sets
  the annotation and a label ``pymirror.dev/kill-batch: <random token>`` (the annotation
  cannot be set by a collection call, and a patch per object is what Kubernetes offers),
  and finally one ``deletecollection`` per namespace selecting that label. Only the
  sessions annotated by this run are deleted: one created meanwhile is not touched, and
  none is deleted without saying who killed it. Verbs: ``list``, ``patch``,
  ``deletecollection``. A session that disappears between the list and its patch is
  reported as already gone.

RBAC refusals name the verb, the resource and the ClusterRole ``pymirror-user``
(:mod:`pymirror.client.access`).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from pymirror.client.access import guarded
from pymirror.client.overview import KILLED_ANNOTATION
from pymirror.errors import PymirrorError
from registry.errors import NotFoundError
from registry.objects import Kube, Obj, Objects
from registry.session_models import SplitSession

KILL_BATCH_LABEL = "pymirror.dev/kill-batch"
RESOURCE = SplitSession.RESOURCE


class SessionNotFoundError(PymirrorError):
    """``session kill --id`` names a session that does not exist."""


@dataclass
class KillReport:
    killed: list[str] = field(default_factory=list)
    """``namespace/name`` of each session annotated and deleted."""
    already_ending: list[str] = field(default_factory=list)
    """Sessions already being deleted (left alone)."""
    gone: list[str] = field(default_factory=list)
    """Sessions that disappeared before they could be annotated."""


def kill_patch(who: str, batch: str | None = None) -> Obj:
    meta: Obj = {"annotations": {KILLED_ANNOTATION: who}}
    if batch is not None:
        meta["labels"] = {KILL_BATCH_LABEL: batch}
    return {"metadata": meta}


async def kill_one(kube: Kube, namespace: str, name: str, who: str) -> str:
    """Kill ``namespace/name``; returns its ``namespace/name``."""
    transport = kube.transport.description
    sessions = kube.objects(RESOURCE, namespace)
    ref = f"{namespace}/{name}"
    try:
        await guarded(sessions.get(name), "get", RESOURCE, namespace, transport)
        await guarded(
            sessions.merge_patch(name, kill_patch(who)), "patch", RESOURCE, namespace, transport
        )
        await guarded(
            sessions.delete(name, missing_ok=True), "delete", RESOURCE, namespace, transport
        )
    except NotFoundError:
        raise SessionNotFoundError(
            f"no session {name!r} in namespace {namespace}; `pymirror status -n {namespace}` "
            "lists the sessions there (pass -n for another namespace)"
        ) from None
    return ref


async def kill_all(kube: Kube, namespace: str | None, who: str) -> KillReport:
    """Kill every session of ``namespace`` (every namespace when None)."""
    transport = kube.transport.description
    listed = await guarded(
        kube.objects(RESOURCE, namespace).list(), "list", RESOURCE, namespace, transport
    )
    batch = secrets.token_hex(8)
    report = KillReport()
    marked: dict[str, list[str]] = {}
    for obj in listed.items:
        meta = obj.get("metadata") or {}
        ns, name = str(meta.get("namespace")), str(meta.get("name"))
        ref = f"{ns}/{name}"
        if meta.get("deletionTimestamp"):
            report.already_ending.append(ref)
            continue
        sessions = kube.objects(RESOURCE, ns)
        try:
            await guarded(
                sessions.merge_patch(name, kill_patch(who, batch)), "patch", RESOURCE, ns, transport
            )
        except NotFoundError:
            report.gone.append(ref)
            continue
        marked.setdefault(ns, []).append(name)
    for ns, names in marked.items():
        await guarded(
            delete_collection(kube.objects(RESOURCE, ns), f"{KILL_BATCH_LABEL}={batch}"),
            "deletecollection",
            RESOURCE,
            ns,
            transport,
        )
        report.killed += [f"{ns}/{n}" for n in names]
    return report


async def delete_collection(objects: Objects, label_selector: str) -> Sequence[Obj]:
    """``DELETE`` on the collection of ``objects`` (one namespace), selecting by label; the
    objects deleted (or marked for deletion)."""
    if objects.namespace is None:
        raise ValueError("deletecollection needs a namespace")
    resource = objects.resource
    kube = objects.kube
    result = await kube.run(
        kube.transport.request,
        "DELETE",
        resource.collection_path(),
        what=f"deletecollection {resource} {objects.namespace}",
        params=resource.path_params(objects.namespace),
        query=[("labelSelector", label_selector)],
        body={"apiVersion": "v1", "kind": "DeleteOptions"},
    )
    items: list[Obj] = (result or {}).get("items") or []
    return items
