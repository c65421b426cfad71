"""``pymirror status`` reads the cluster: sessions, their splits, the splits' workers.

``read_overview(kube, scope)`` lists

* the SplitSessions of ``scope.namespace`` (every namespace when None);
* the QueueSplits of ``scope.operator_namespace`` (the operator's namespace; every
  namespace with ``-A``), keeping, for one namespace, those whose target lives there;
* each split's worker Deployment (``status.workerDeployment``), for its replicas. A
  worker that cannot be read (RBAC, not created yet) is reported in the record's
  ``worker.error``; it does not fail the command;

and returns :func:`pymirror.client.overview.overview`'s document. Every call goes
through :func:`pymirror.client.access.guarded`: RBAC refusals, missing CRDs and an
unreachable server become the client's errors, each naming the fix.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymirror.client.access import guarded
from pymirror.client.overview import Record, overview, session_record, split_record, worker_record
from registry.errors import ForbiddenError, NotFoundError, RegistryError
from registry.objects import Kube, Obj
from registry.resources import Resource
from registry.session_models import QueueSplit, SplitSession


@dataclass(frozen=True)
class Scope:
    namespace: str | None
    """The sessions' namespace; None: every namespace (``-A``)."""
    operator_namespace: str
    """Where the operator keeps its QueueSplits and worker Deployments."""
    deployments: Resource
    """Where Deployments are served (the worker's kind)."""


async def read_overview(kube: Kube, scope: Scope, now: datetime | None = None) -> Record:
    """The status document (see the module docstring)."""
    transport = kube.transport.description
    sessions = kube.objects(SplitSession.RESOURCE, scope.namespace)
    listed = await guarded(
        sessions.list(), "list", SplitSession.RESOURCE, scope.namespace, transport
    )
    split_ns = scope.operator_namespace if scope.namespace is not None else None
    splits = kube.objects(QueueSplit.RESOURCE, split_ns)
    split_list = await guarded(splits.list(), "list", QueueSplit.RESOURCE, split_ns, transport)
    wanted = [
        s
        for s in split_list.items
        if scope.namespace is None
        or ((s.get("spec") or {}).get("target") or {}).get("namespace") == scope.namespace
    ]
    workers = await asyncio.gather(*(_worker(kube, scope.deployments, s) for s in wanted))
    now = now or datetime.now(UTC)
    return overview(
        [session_record(o, now) for o in listed.items],
        [split_record(s, w, now) for s, w in zip(wanted, workers, strict=True)],
        namespace=scope.namespace,
        operator_namespace=split_ns,
    )


async def _worker(kube: Kube, deployments: Resource, split: Obj) -> Record:
    name = (split.get("status") or {}).get("workerDeployment")
    namespace = (split.get("metadata") or {}).get("namespace")
    if not name or not namespace:
        return worker_record(None, None, "no worker yet")
    deployment: Any = None
    error: str | None = None
    try:
        deployment = await kube.objects(deployments, namespace).get(name)
    except NotFoundError:
        error = "not found"
    except ForbiddenError:
        error = f"RBAC refuses get on {deployments} in {namespace}"
    except RegistryError as e:
        error = f"cannot read it: {e}"
    return worker_record(name, deployment, error)
