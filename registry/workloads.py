"""Workloads a split targets: Deployment, StatefulSet and Argo Rollout, and their pod templates.

Where each kind is served is data (``WorkloadKinds``): production uses ``apps/v1``
and ``argoproj.io/v1alpha1``; tests point the kinds at the stand-in CRDs of the
test API server (tests/kube/README.md)::

    kinds = WorkloadKinds()                        # apps/v1, argoproj.io/v1alpha1
    workload = await get_workload(kube, kinds, "shop", "Deployment", "meme-app")
    main = workload.container("main")              # or workload.container(None): the first

A Rollout's pod template is its ``spec.template``, or, with ``spec.workloadRef``,
the template of the Deployment it references (in the Rollout's namespace; the
Deployment is read where ``WorkloadKinds.deployment`` says). ``Workload.template_owner``
names the object whose template it is, which is the object an env patch must change.

Errors are ``WorkloadError``s naming the kind, the object and the fix: an unknown
kind, a workload that does not exist (``WorkloadNotFoundError``), a missing container.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from registry.errors import NotFoundError, WorkloadError, WorkloadNotFoundError
from registry.objects import Kube, Obj
from registry.resources import Resource

DEPLOYMENT = "Deployment"
STATEFUL_SET = "StatefulSet"
ROLLOUT = "Rollout"
KINDS = (DEPLOYMENT, STATEFUL_SET, ROLLOUT)
#: Where the kinds are served in a cluster.
DEPLOYMENTS = Resource("apps", "v1", "deployments")
STATEFUL_SETS = Resource("apps", "v1", "statefulsets")
ROLLOUTS = Resource("argoproj.io", "v1alpha1", "rollouts")


@dataclass(frozen=True)
class WorkloadKinds:
    """Where Deployments, StatefulSets and Argo Rollouts are served (group, version, plural)."""

    deployment: Resource = DEPLOYMENTS
    stateful_set: Resource = STATEFUL_SETS
    rollout: Resource = ROLLOUTS

    @classmethod
    def from_mapping(cls, kinds: Mapping[str, tuple[str, str, str]]) -> WorkloadKinds:
        """From ``kind -> (group, version, plural)`` (e.g. the test server's stand-ins);
        kinds it does not name keep their default."""
        default = cls()
        return cls(
            deployment=Resource(*kinds[DEPLOYMENT]) if DEPLOYMENT in kinds else default.deployment,
            stateful_set=(
                Resource(*kinds[STATEFUL_SET]) if STATEFUL_SET in kinds else default.stateful_set
            ),
            rollout=Resource(*kinds[ROLLOUT]) if ROLLOUT in kinds else default.rollout,
        )

    def with_api_versions(self, **api_versions: str | None) -> WorkloadKinds:
        """A copy with some kinds served elsewhere (``Deployment="apps.pymirror.test/v1"``;
        None keeps a kind where it is); ``WorkloadError`` for a bad kind or apiVersion."""
        resources = {kind: self.resource(kind) for kind in KINDS}
        for kind, api_version in api_versions.items():
            if api_version is None:
                continue
            if kind not in resources:
                raise WorkloadError(
                    f"unknown workload kind {kind!r}; use one of {', '.join(KINDS)}"
                )
            group, slash, version = api_version.rpartition("/")
            if not slash or not group or not version:
                raise WorkloadError(f"{kind}: expected GROUP/VERSION, got {api_version!r}")
            resources[kind] = Resource(group, version, resources[kind].plural)
        return WorkloadKinds(resources[DEPLOYMENT], resources[STATEFUL_SET], resources[ROLLOUT])

    def canonical(self, kind: str) -> str:
        """``Deployment``, ``StatefulSet`` or ``Rollout`` for ``kind`` in any letter case
        (a registry says ``Deployment``, a target path ``deployment``)."""
        for known in KINDS:
            if kind.lower() == known.lower():
                return known
        raise WorkloadError(
            f"unknown workload kind {kind!r}: use one of {', '.join(KINDS)} "
            "(Rollout is an Argo Rollout)"
        )

    def resource(self, kind: str) -> Resource:
        """Where ``kind`` is served; ``WorkloadError`` for a kind that is none of ours."""
        return {
            DEPLOYMENT: self.deployment,
            STATEFUL_SET: self.stateful_set,
            ROLLOUT: self.rollout,
        }[self.canonical(kind)]


@dataclass(frozen=True)
class WorkloadRef:
    """One object: ``kind`` (canonical), ``namespace`` and ``name``."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Workload:
    """A workload as read, and the pod template its pods are made from."""

    ref: WorkloadRef
    obj: Obj = field(repr=False)
    """The object as read (with its resourceVersion)."""
    template: Obj = field(repr=False)
    """The pod template (``metadata`` and ``spec``)."""
    template_owner: WorkloadRef
    """The object holding ``template``: the workload itself, or the Deployment a Rollout's
    ``workloadRef`` names (an env patch must change that object)."""
    template_owner_obj: Obj = field(repr=False)

    @property
    def label(self) -> str:
        """How messages name the object whose pod template this is."""
        if self.template_owner == self.ref:
            return str(self.ref)
        return f"{self.template_owner} (the pod template of {self.ref}, spec.workloadRef)"

    def containers(self) -> list[Obj]:
        return containers_of(self.template, self.label)

    def container(self, name: str | None) -> Obj:
        """The container ``name``, or the first when ``name`` is None."""
        return container_of(self.template, name, self.label)


def containers_of(template: Mapping[str, Any], workload: str) -> list[Obj]:
    """The ``spec.containers`` of a pod template; ``WorkloadError`` if there are none."""
    spec = template.get("spec")
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    if not isinstance(containers, list) or not containers:
        raise WorkloadError(
            f"{workload}: the pod template has no spec.containers; "
            "give the pod template at least one container"
        )
    return [c for c in containers if isinstance(c, dict)]


def container_of(template: Mapping[str, Any], name: str | None, workload: str) -> Obj:
    """The container ``name`` of a pod template, or its first container when ``name`` is None.

    ``WorkloadError`` when there is no such container, listing the ones there are."""
    containers = containers_of(template, workload)
    if name is None:
        return containers[0]
    for c in containers:
        if c.get("name") == name:
            return c
    names = ", ".join(str(c.get("name")) for c in containers)
    raise WorkloadError(
        f"{workload} has no container {name!r} (its containers: {names}); "
        "fix the container name in the registry or the target"
    )


def pod_template(obj: Mapping[str, Any], ref: WorkloadRef) -> Obj:
    """``spec.template`` of a Deployment, StatefulSet or Rollout; ``WorkloadError`` if absent."""
    spec = obj.get("spec")
    template = spec.get("template") if isinstance(spec, Mapping) else None
    if not isinstance(template, dict):
        raise WorkloadError(f"{ref} has no spec.template; give it a pod template")
    return template


def rollout_workload_ref(obj: Mapping[str, Any], ref: WorkloadRef) -> str | None:
    """The Deployment name a Rollout's ``spec.workloadRef`` names, or None when the
    Rollout has its own ``spec.template``.

    ``WorkloadError`` when the reference is not to a Deployment, has no name, or when
    the Rollout has both a template with containers and a ``workloadRef``."""
    spec = obj.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    workload_ref = spec.get("workloadRef")
    if workload_ref is None:
        return None
    if not isinstance(workload_ref, Mapping):
        raise WorkloadError(f"{ref}: spec.workloadRef must be an object {{kind, name}}")
    kind = workload_ref.get("kind", DEPLOYMENT)
    if kind != DEPLOYMENT:
        raise WorkloadError(
            f"{ref}: spec.workloadRef.kind is {kind!r}; pymirror follows only a workloadRef to "
            "a Deployment: reference a Deployment, or give the Rollout its own spec.template"
        )
    name = workload_ref.get("name")
    if not isinstance(name, str) or not name:
        raise WorkloadError(f"{ref}: spec.workloadRef has no name; name the Deployment")
    template = spec.get("template")
    own = template.get("spec", {}).get("containers") if isinstance(template, Mapping) else None
    if own:
        raise WorkloadError(
            f"{ref} has both spec.template and spec.workloadRef; Argo Rollouts accepts only "
            "one: remove spec.template or spec.workloadRef"
        )
    return name


async def get_workload(
    kube: Kube, kinds: WorkloadKinds, namespace: str, kind: str, name: str
) -> Workload:
    """Read a workload and its pod template (following a Rollout's ``workloadRef``).

    ``WorkloadError`` for an unknown kind, ``WorkloadNotFoundError`` when the workload or
    the referenced Deployment is missing; other API errors pass through."""
    canonical = kinds.canonical(kind)
    ref = WorkloadRef(canonical, namespace, name)
    obj = await _read(kube, kinds.resource(canonical), ref, "")
    if canonical != ROLLOUT:
        return Workload(ref, obj, pod_template(obj, ref), ref, obj)
    deployment = rollout_workload_ref(obj, ref)
    if deployment is None:
        return Workload(ref, obj, pod_template(obj, ref), ref, obj)
    owner = WorkloadRef(DEPLOYMENT, namespace, deployment)
    owner_obj = await _read(kube, kinds.deployment, owner, f" (spec.workloadRef of {ref})")
    return Workload(ref, obj, pod_template(owner_obj, owner), owner, owner_obj)


async def _read(kube: Kube, resource: Resource, ref: WorkloadRef, referrer: str) -> Obj:
    try:
        return await kube.objects(resource, ref.namespace).get(ref.name)
    except NotFoundError as e:
        raise WorkloadNotFoundError(
            f"{ref}{referrer} not found ({resource.api_version} {resource.plural}); "
            "create it or fix the workload name, kind or namespace"
        ) from e
