"""What the local runtime reads from a workload object (pure: objects in, plain data out).

A workload is a Deployment, StatefulSet or Argo Rollout: replicas and a pod
template (a Rollout's own, or that of the Deployment its ``workloadRef`` names).
``desired_state`` turns one into a :class:`Desired`: the template's hash (a change
rolls the processes), its containers as local process specs (``command`` + ``args``
with ``$(VAR)`` expanded, the ``value`` env entries, ``workingDir``, an exec
``readinessProbe``) and what the local runtime cannot honour (``valueFrom``,
``envFrom``, a container without ``command``), reported as ``unsupported`` lines
rather than silently dropped.

Which API group serves each kind is data (:class:`registry.workloads.WorkloadKinds`): the real
``apps/v1`` and ``argoproj.io/v1alpha1`` by default, the sandbox's stand-in CRDs
(``apps.pymirror.test/v1``) with :data:`STAND_IN_KINDS`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from registry.workloads import WorkloadKinds

Kind = Literal["Deployment", "StatefulSet", "Rollout"]
KINDS: tuple[Kind, ...] = ("Deployment", "StatefulSet", "Rollout")
DEFAULT_GRACE_SECONDS = 30.0
"""A pod's ``terminationGracePeriodSeconds`` when the template sets none (as in Kubernetes)."""


#: The sandbox's API server serves no apps/v1: Deployments and StatefulSets are stand-in CRDs.
STAND_IN_KINDS = WorkloadKinds().with_api_versions(
    Deployment="apps.pymirror.test/v1", StatefulSet="apps.pymirror.test/v1"
)


@dataclass(frozen=True)
class ContainerSpec:
    """One container as a local process."""

    name: str
    argv: tuple[str, ...]
    """``command`` + ``args``, ``$(VAR)`` expanded; empty when the container has no command."""
    env: tuple[tuple[str, str], ...]
    working_dir: str | None = None
    readiness_exec: tuple[str, ...] | None = None
    """An exec ``readinessProbe``'s command; None: ready as soon as the process runs."""
    readiness_period: float = 10.0
    readiness_initial_delay: float = 0.0


@dataclass(frozen=True)
class Desired:
    """What a workload object asks the local runtime for."""

    kind: Kind
    namespace: str
    name: str
    generation: int
    replicas: int
    template_hash: str
    containers: tuple[ContainerSpec, ...]
    grace_seconds: float
    surge: bool
    """Start the new process before stopping the old (Deployment RollingUpdate, Rollout);
    False: stop first (StatefulSet, Deployment ``Recreate``)."""
    unsupported: tuple[str, ...] = ()
    deleting: bool = False
    workload_generation: int | None = None
    """For a Rollout with ``spec.workloadRef``: the generation of the referenced Deployment
    whose template this state runs (written as the Rollout's
    ``status.workloadObservedGeneration``, as Argo Rollouts does); None otherwise."""


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` is a literal ``$``,
    an undefined ``$(NAME)`` stays as written."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(one, text)


def template_hash(template: Mapping[str, Any]) -> str:
    """A short stable hash of the pod template (like Kubernetes' pod-template-hash)."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:10]


def _container(raw: Mapping[str, Any], unsupported: list[str]) -> ContainerSpec:
    name = str(raw.get("name", ""))
    env: dict[str, str] = {}
    for entry in raw.get("env") or []:
        var = str(entry.get("name", ""))
        if "valueFrom" in entry:
            unsupported.append(
                f"container {name}: env {var}: valueFrom is not supported by the local runtime "
                "(the variable is not set)"
            )
            continue
        env[var] = expand(str(entry.get("value", "")), env)
    if raw.get("envFrom"):
        unsupported.append(
            f"container {name}: envFrom is not supported by the local runtime (ignored)"
        )
    command = [str(c) for c in raw.get("command") or []]
    args = [str(a) for a in raw.get("args") or []]
    argv = tuple(expand(part, env) for part in command + args) if command else ()
    if not command:
        unsupported.append(
            f"container {name}: no command: the local runtime has no image entrypoint to run "
            "(the container is not started)"
        )
    probe = raw.get("readinessProbe") or {}
    readiness: tuple[str, ...] | None = None
    if probe:
        exec_command = (probe.get("exec") or {}).get("command")
        if exec_command:
            readiness = tuple(str(c) for c in exec_command)
        else:
            unsupported.append(
                f"container {name}: only exec readiness probes are supported by the local "
                "runtime (the container counts as ready once it runs)"
            )
    return ContainerSpec(
        name=name,
        argv=argv,
        env=tuple(env.items()),
        working_dir=raw.get("workingDir"),
        readiness_exec=readiness,
        readiness_period=float(probe.get("periodSeconds", 10)),
        readiness_initial_delay=float(probe.get("initialDelaySeconds", 0)),
    )


def workload_ref(kind: Kind, obj: Mapping[str, Any]) -> str | None:
    """The name of the Deployment a Rollout's ``spec.workloadRef`` names (its pod template
    is the Rollout's), or None (not a Rollout, or one with its own template)."""
    ref = (obj.get("spec") or {}).get("workloadRef")
    if kind != "Rollout" or not isinstance(ref, Mapping):
        return None
    name = ref.get("name")
    return str(name) if name and ref.get("kind", "Deployment") == "Deployment" else None


def desired_state(
    kind: Kind, obj: Mapping[str, Any], referenced: Mapping[str, Any] | None = None
) -> Desired:
    """The :class:`Desired` state of one workload object.

    A Rollout with a ``workloadRef`` runs the pod template of ``referenced`` (the
    Deployment it names, as last seen); while that Deployment has not been seen it runs
    nothing (0 replicas), as Argo Rollouts waits for it."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    follows = workload_ref(kind, obj) is not None
    workload_generation = None
    if follows:
        template = ((referenced or {}).get("spec") or {}).get("template") or {}
        if referenced is not None:
            workload_generation = int((referenced.get("metadata") or {}).get("generation") or 0)
    pod = template.get("spec") or {}
    unsupported: list[str] = []
    if pod.get("initContainers"):
        unsupported.append("initContainers are not run by the local runtime")
    containers = tuple(_container(c, unsupported) for c in pod.get("containers") or [])
    grace = pod.get("terminationGracePeriodSeconds")
    strategy = (spec.get("strategy") or spec.get("updateStrategy") or {}).get("type")
    surge = kind != "StatefulSet" and strategy != "Recreate"
    replicas = spec.get("replicas")
    if follows and referenced is None:
        replicas = 0
    return Desired(
        kind=kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        generation=int(meta.get("generation") or 0),
        replicas=max(int(1 if replicas is None else replicas), 0),
        template_hash=template_hash(template),
        containers=containers,
        grace_seconds=DEFAULT_GRACE_SECONDS if grace is None else max(float(grace), 0.0),
        surge=surge,
        unsupported=tuple(unsupported),
        deleting=bool(meta.get("deletionTimestamp")),
        workload_generation=workload_generation,
    )
