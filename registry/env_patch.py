"""Pointing a workload's env vars elsewhere, restoring them exactly, and waiting for the rollout.

``patch_env`` sets env vars of one container of a workload's pod template (the
object ``Workload.template_owner`` names: a Rollout with ``workloadRef`` is
patched through its Deployment) and saves the original of every var it touches
in the annotation ``pymirror.dev/original-env`` of that object, keyed by an
``owner`` (a QueueSplit name). Env and annotation change in **one** JSON patch
guarded by a ``test`` op on ``metadata.resourceVersion`` (re-read and retried
when the object changed), so the annotation always matches the env, whatever
crashes between two steps. JSON patch, not strategic merge: the same code runs on
a cluster and on the test API server's stand-in kinds::

    await patch_env(kube, workload, "main", {"QUEUE_NAME": fallback}, owner="meme-app-orders")
    await wait_rolled_out(kube, workload.ref, kinds, timeout=120, on_progress=log.info)
    ...
    await restore_env(kube, workload.ref, owner="meme-app-orders", kinds=kinds)

The annotation is a JSON object ``owner -> container -> var -> original``, where
the original is the env item as it was, without its ``name`` (``{"value": "q"}``,
``{"valueFrom": {"configMapKeyRef": {...}}}``), or ``null`` when the var was not
set (the patch added it; the restore removes it)::

    pymirror.dev/original-env: '{"meme-app-orders":{"main":{"QUEUE_NAME":{"value":"orders"}}}}'

Rules: a second patch by the same owner keeps the first originals (idempotent; no
write when nothing changes); other vars, containers and owners are untouched; a
patched var keeps its place in ``env`` (an added one goes last). When two owners
patch the same var, the later one records the same true original, and a restore
leaves a var alone while another owner still records it: the last owner to leave
puts the original back. ``restore_env`` restores exactly the owner's vars (a var
the owner added is removed, a user's later edits of other vars stay), drops the
owner's entry and the annotation once empty; an ``env`` list or ``annotations``
map left empty is removed (Kubernetes does not tell empty from unset).

``rollout_status``/``wait_rolled_out``: a Deployment or StatefulSet is rolled out
when ``status.observedGeneration >= metadata.generation`` and its updated, ready
(and for a Deployment available) replicas equal ``spec.replicas`` (default 1)
with no old replica left, and none still terminating when the controller reports
``terminatingReplicas`` (Kubernetes 1.33+: a pod in its grace period can still read
the queue it was given); an Argo Rollout likewise on its own status
(``observedGeneration`` is a string there), and with ``workloadRef`` also once it
observed the Deployment's generation (``status.workloadObservedGeneration``).
``wait_rolled_out`` polls, reports each new message, and raises
``RolloutTimeoutError`` naming the workload, what is missing and
``workloadRestartTimeout``.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from registry.errors import (
    ConflictError,
    EnvAnnotationError,
    InvalidError,
    NotFoundError,
    RegistryError,
    RolloutTimeoutError,
    WorkloadError,
    WorkloadNotFoundError,
)
from registry.objects import Kube, Obj, Objects
from registry.resources import Resource
from registry.workloads import (
    DEPLOYMENT,
    ROLLOUT,
    STATEFUL_SET,
    Workload,
    WorkloadKinds,
    WorkloadRef,
    container_of,
    get_workload,
)

ORIGINAL_ENV_ANNOTATION = "pymirror.dev/original-env"
_ANNOTATION_PATH = "/metadata/annotations/" + ORIGINAL_ENV_ANNOTATION.replace("~", "~0").replace(
    "/", "~1"
)
ATTEMPTS = 8
POLL_INTERVAL = 0.5

Originals = dict[str, dict[str, dict[str, Obj | None]]]
"""owner -> container -> var -> the original env item without ``name`` (None: not set)."""


# --- the annotation (pure) -------------------------------------------------------------------


def read_originals(obj: Mapping[str, Any], label: str) -> Originals:
    """The originals recorded on ``obj`` (empty when it has no annotation);
    ``EnvAnnotationError`` when the annotation is not in the documented format."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(ORIGINAL_ENV_ANNOTATION)
    if text is None:
        return {}
    try:
        originals = json.loads(text)
    except (TypeError, ValueError) as e:
        raise _bad_annotation(label, f"not JSON ({e})") from e
    if not isinstance(originals, dict):
        raise _bad_annotation(label, "not a JSON object")
    for owner, containers in originals.items():
        if not isinstance(containers, dict):
            raise _bad_annotation(label, f"{owner!r}: not an object of containers")
        for container, env in containers.items():
            if not isinstance(env, dict):
                raise _bad_annotation(label, f"{owner!r}.{container!r}: not an object of vars")
            for var, item in env.items():
                if item is not None and not isinstance(item, dict):
                    raise _bad_annotation(
                        label, f"{owner!r}.{container!r}.{var!r}: not an env item or null"
                    )
    return originals


def _bad_annotation(label: str, problem: str) -> EnvAnnotationError:
    return EnvAnnotationError(
        f"{label}: annotation {ORIGINAL_ENV_ANNOTATION} is {problem}; it holds the original "
        "env values pymirror restores: put the env vars right by hand, then remove the annotation"
    )


def encode_originals(originals: Originals) -> str:
    """The annotation's value: compact JSON with sorted keys."""
    return json.dumps(originals, sort_keys=True, separators=(",", ":"))


def env_owners(obj: Mapping[str, Any]) -> set[str]:
    """The owners (QueueSplit names) with originals recorded on ``obj``, for garbage
    collection; ``EnvAnnotationError`` for an annotation in another format."""
    meta = obj.get("metadata") or {}
    label = f"{obj.get('kind', 'object')} {meta.get('namespace', '')}/{meta.get('name', '')}"
    return set(read_originals(obj, label))


# --- computing a change (pure) ---------------------------------------------------------------


@dataclass(frozen=True)
class EnvChange:
    """The new ``env`` lists of some containers (by index; None removes ``env``) and the
    new originals (empty: the annotation goes)."""

    envs: Mapping[int, list[Obj] | None]
    originals: Originals


def patched(
    obj: Mapping[str, Any], container: str, values: Mapping[str, str], owner: str, label: str
) -> EnvChange | None:
    """The change that sets ``values`` in ``container`` of ``obj``'s pod template, recording
    the originals ``owner`` has not recorded yet; None when there is nothing to change."""
    originals = read_originals(obj, label)
    index, found = _container(obj, container, label)
    if not values:
        return None
    env: list[Obj] = list(found.get("env") or [])
    recorded = dict(originals.get(owner, {}).get(container, {}))
    for var in values:
        if var not in recorded:
            recorded[var] = _true_original(originals, container, var, env)
    new_env = copy.deepcopy(env)
    for var, value in values.items():
        _set(new_env, var, {"name": var, "value": value})
    new_originals = copy.deepcopy(originals)
    new_originals.setdefault(owner, {})[container] = recorded
    if new_env == env and new_originals == originals:
        return None
    return EnvChange({index: new_env} if new_env != env else {}, new_originals)


def restored(obj: Mapping[str, Any], owner: str, label: str) -> EnvChange | None:
    """The change that puts back what ``owner`` recorded on ``obj`` and drops its entry;
    None when it recorded nothing. Vars another owner still records keep their value; a
    container removed since is skipped."""
    originals = read_originals(obj, label)
    if owner not in originals:
        return None
    remaining = copy.deepcopy(originals)
    mine = remaining.pop(owner)
    envs: dict[int, list[Obj] | None] = {}
    containers = _containers(obj, label)
    for container, recorded in mine.items():
        index = next((i for i, c in enumerate(containers) if c.get("name") == container), None)
        if index is None:
            continue
        before = containers[index].get("env")
        env: list[Obj] = copy.deepcopy(list(before or []))
        for var, original in recorded.items():
            if _recorded_by(remaining, container, var) is None:
                _put_back(env, var, original)
        if env != list(before or []):
            envs[index] = env or None
    return EnvChange(envs, remaining)


def _true_original(originals: Originals, container: str, var: str, env: list[Obj]) -> Obj | None:
    """What ``var`` was before pymirror: another owner's record of it, else its item now."""
    other = _recorded_by(originals, container, var)
    if other is not None:
        return copy.deepcopy(originals[other][container][var])
    index = _last(env, var)
    if index is None:
        return None
    return {k: copy.deepcopy(v) for k, v in env[index].items() if k != "name"}


def _recorded_by(originals: Originals, container: str, var: str) -> str | None:
    """An owner recording ``var`` of ``container``, or None."""
    return next((o for o, cs in originals.items() if var in cs.get(container, {})), None)


def _last(env: list[Obj], var: str) -> int | None:
    """The index of the item defining ``var`` (the last one wins, as in Kubernetes)."""
    return next((i for i in range(len(env) - 1, -1, -1) if env[i].get("name") == var), None)


def _set(env: list[Obj], var: str, item: Obj) -> None:
    index = _last(env, var)
    if index is None:
        env.append(item)
    else:
        env[index] = item


def _put_back(env: list[Obj], var: str, original: Obj | None) -> None:
    index = _last(env, var)
    if original is None:
        if index is not None:
            del env[index]
    else:
        _set(env, var, {"name": var, **copy.deepcopy(original)})


def _containers(obj: Mapping[str, Any], label: str) -> list[Any]:
    spec = obj.get("spec")
    template = spec.get("template") if isinstance(spec, Mapping) else None
    pod = template.get("spec") if isinstance(template, Mapping) else None
    containers = pod.get("containers") if isinstance(pod, Mapping) else None
    if not isinstance(containers, list):
        raise WorkloadError(f"{label} has no spec.template.spec.containers; give it a pod template")
    return containers


def _container(obj: Mapping[str, Any], name: str, label: str) -> tuple[int, Obj]:
    """The index and the container ``name``; ``WorkloadError`` listing the containers."""
    for i, c in enumerate(_containers(obj, label)):
        if isinstance(c, dict) and c.get("name") == name:
            return i, c
    container_of(obj["spec"]["template"], name, label)  # raises, naming the containers
    raise AssertionError("unreachable")  # pragma: no cover


def json_ops(obj: Mapping[str, Any], change: EnvChange) -> list[Obj]:
    """The JSON patch writing ``change`` to ``obj``, guarded by its resourceVersion."""
    version = obj["metadata"]["resourceVersion"]
    ops: list[Obj] = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}]
    containers = obj["spec"]["template"]["spec"]["containers"]
    for index, env in sorted(change.envs.items()):
        path = f"/spec/template/spec/containers/{index}/env"
        if env is not None:
            ops.append({"op": "add", "path": path, "value": env})
        elif "env" in containers[index]:
            ops.append({"op": "remove", "path": path})
    annotations = obj["metadata"].get("annotations")
    if change.originals:
        value = encode_originals(change.originals)
        if isinstance(annotations, dict):
            ops.append({"op": "add", "path": _ANNOTATION_PATH, "value": value})
        else:
            ops.append(
                {
                    "op": "add",
                    "path": "/metadata/annotations",
                    "value": {ORIGINAL_ENV_ANNOTATION: value},
                }
            )
    elif isinstance(annotations, dict) and ORIGINAL_ENV_ANNOTATION in annotations:
        alone = len(annotations) == 1
        ops.append({"op": "remove", "path": "/metadata/annotations" if alone else _ANNOTATION_PATH})
    return ops


# --- writing ---------------------------------------------------------------------------------


async def patch_env(
    kube: Kube, workload: Workload, container: str, values: Mapping[str, str], *, owner: str
) -> Obj:
    """Set ``values`` in ``container`` of the pod template of ``workload.template_owner``,
    saving the originals under ``owner`` in the same patch (see the module docstring).

    Returns the object as written (as read when nothing changed). ``WorkloadError`` for a
    missing container, ``WorkloadNotFoundError`` when the object is gone,
    ``EnvAnnotationError`` for an annotation in another format."""
    objects = kube.objects(_resource_of(workload), workload.template_owner.namespace)
    label = workload.label
    values = dict(values)
    return await _write(
        objects,
        workload.template_owner,
        lambda obj: patched(obj, container, values, owner, label),
        label,
    )


async def restore_env(
    kube: Kube, ref: WorkloadRef, *, owner: str, kinds: WorkloadKinds
) -> Obj | None:
    """Put back the env vars ``owner`` patched in the workload ``ref`` (through its
    ``workloadRef`` for a Rollout) and drop its record.

    Returns the object holding the pod template as written (as read when ``owner``
    recorded nothing), or None when the workload or that object is gone."""
    try:
        workload = await get_workload(kube, kinds, ref.namespace, ref.kind, ref.name)
    except WorkloadNotFoundError:
        return None
    owner_ref = workload.template_owner
    objects = kube.objects(kinds.resource(owner_ref.kind), owner_ref.namespace)
    label = workload.label
    try:
        return await _write(objects, owner_ref, lambda obj: restored(obj, owner, label), label)
    except WorkloadNotFoundError:
        return None


def _resource_of(workload: Workload) -> Resource:
    """Where the template owner is served, from its ``apiVersion`` as read."""
    kind = workload.template_owner.kind
    api_version = workload.template_owner_obj.get("apiVersion")
    return WorkloadKinds().with_api_versions(**{kind: api_version}).resource(kind)


async def _write(
    objects: Objects,
    ref: WorkloadRef,
    change_of: Callable[[Obj], EnvChange | None],
    label: str,
) -> Obj:
    """Read ``ref``, write ``change_of(it)`` as a guarded JSON patch; when the guard fails
    because the object changed, read again and retry (up to ``ATTEMPTS`` writes)."""
    obj = await _get(objects, ref, label)
    for _ in range(ATTEMPTS):
        change = change_of(obj)
        if change is None:
            return obj
        try:
            return await objects.json_patch(ref.name, json_ops(obj, change))
        except (InvalidError, ConflictError):  # a failed test op is 422
            fresh = await _get(objects, ref, label)
            if _version(fresh) == _version(obj):
                raise  # not a stale read: the patch itself is refused
            obj = fresh
    raise ConflictError(
        f"{label}: the object kept changing; env patch still conflicting after {ATTEMPTS} "
        "attempts (is another controller rewriting it?)"
    )


async def _get(objects: Objects, ref: WorkloadRef, label: str) -> Obj:
    try:
        return await objects.get(ref.name)
    except NotFoundError as e:
        raise WorkloadNotFoundError(
            f"{label} not found ({objects.resource.api_version} {objects.resource.plural}); "
            "it was deleted: nothing to patch"
        ) from e


def _version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


# --- rollouts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutStatus:
    """Whether a workload's pods all run its current pod template, and what is missing."""

    done: bool
    message: str
    """What is missing ("2 of 3 updated replicas ready"), or the final count when done."""


def status_of(
    kind: str, obj: Mapping[str, Any], referenced: Mapping[str, Any] | None = None
) -> RolloutStatus:
    """The rollout status of a Deployment, StatefulSet or Rollout as read; ``referenced`` is
    the Deployment a Rollout's ``workloadRef`` names (its generation must be observed)."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    missing = _generation_missing(kind, obj, status) or _reference_missing(status, referenced)
    if missing is None and kind == DEPLOYMENT and spec.get("paused") is True:
        missing = "paused (spec.paused is true); resume it: kubectl rollout resume"
    if missing is None:
        missing, message = _replicas_missing(kind, spec, status)
    if missing is None:
        return RolloutStatus(True, message)
    return RolloutStatus(False, missing + _rollout_phase(kind, status))


def _generation_missing(kind: str, obj: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
    generation = _count((obj.get("metadata") or {}).get("generation"))
    observed = _generation(status.get("observedGeneration"))
    if observed is not None and observed >= generation:
        return None
    seen = status.get("observedGeneration", "none")
    return f"the {kind} controller has not observed generation {generation} yet (observed: {seen})"


def _reference_missing(
    status: Mapping[str, Any], referenced: Mapping[str, Any] | None
) -> str | None:
    if referenced is None:
        return None
    meta = referenced.get("metadata") or {}
    generation = _count(meta.get("generation"))
    observed = _generation(status.get("workloadObservedGeneration"))
    if observed is not None and observed >= generation:
        return None
    seen = status.get("workloadObservedGeneration", "none")
    return (
        f"the Rollout controller has not observed generation {generation} of Deployment "
        f"{meta.get('name')} (spec.workloadRef) yet (observed: {seen})"
    )


def _replicas_missing(
    kind: str, spec: Mapping[str, Any], status: Mapping[str, Any]
) -> tuple[str | None, str]:
    """(what is missing or None, the message when done)."""
    want = _count(spec.get("replicas"), 1)
    updated = _count(status.get("updatedReplicas"))
    total = _count(status.get("replicas"))
    ready = _count(status.get("readyReplicas"))
    available = _count(status.get("availableReplicas"))
    done = f"{want} of {want} updated replicas ready"
    if updated < want:
        return f"{updated} of {want} replicas updated", done
    if total > updated:
        return f"{total - updated} old replicas pending termination", done
    terminating = _count(status.get("terminatingReplicas"))
    if terminating:  # an old pod in its grace period can still read the original queue
        return f"{terminating} replicas still terminating", done
    if ready < want:
        return f"{ready} of {want} updated replicas ready", done
    if kind != STATEFUL_SET and available < want:
        return f"{available} of {want} updated replicas available", done
    current, update = status.get("currentRevision"), status.get("updateRevision")
    if kind == STATEFUL_SET and current and update and current != update:
        return f"the pods have not all moved to revision {update} yet (at: {current})", done
    return None, done


def _rollout_phase(kind: str, status: Mapping[str, Any]) -> str:
    """For an Argo Rollout that is Paused or Degraded, say so (it will not progress alone)."""
    phase = status.get("phase")
    if kind != ROLLOUT or phase not in ("Paused", "Degraded"):
        return ""
    detail = status.get("message")
    return f"; the Rollout is {phase}" + (f": {detail}" if detail else "")


def _generation(value: Any) -> int | None:
    """A generation as written (Argo Rollouts writes a string); None when unset or not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _count(value: Any, default: int = 0) -> int:
    """A replica count; ``default`` when unset (Kubernetes omits zero counts)."""
    number = _generation(value)
    return default if number is None else number


async def rollout_status(kube: Kube, ref: WorkloadRef, kinds: WorkloadKinds) -> RolloutStatus:
    """The rollout status of the workload ``ref`` as it is now (``WorkloadNotFoundError``
    when it is gone)."""
    workload = await get_workload(kube, kinds, ref.namespace, ref.kind, ref.name)
    referenced = None if workload.template_owner == workload.ref else workload.template_owner_obj
    return status_of(workload.ref.kind, workload.obj, referenced)


async def wait_rolled_out(
    kube: Kube,
    ref: WorkloadRef,
    kinds: WorkloadKinds,
    *,
    timeout: float,  # noqa: ASYNC109 - the interface: workloadRestartTimeout, not a scope
    on_progress: Callable[[str], None] | None = None,
    interval: float = POLL_INTERVAL,
) -> None:
    """Poll ``rollout_status`` every ``interval`` seconds until done, calling ``on_progress``
    with each new message; ``RolloutTimeoutError`` after ``timeout`` seconds. A retriable API
    error is a message, not a failure; ``WorkloadNotFoundError`` ends the wait."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: str | None = None
    while True:
        status = await _poll(kube, ref, kinds, max(deadline - loop.time(), interval))
        if status.message != last:
            last = status.message
            if on_progress is not None:
                on_progress(last)
        if status.done:
            return
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise _timed_out(ref, timeout, status.message)
        await asyncio.sleep(min(interval, remaining))


async def _poll(kube: Kube, ref: WorkloadRef, kinds: WorkloadKinds, bound: float) -> RolloutStatus:
    try:
        return await asyncio.wait_for(rollout_status(kube, ref, kinds), bound)
    except TimeoutError:
        return RolloutStatus(False, f"no answer from the API server reading {ref}")
    except RegistryError as e:
        if not e.retriable:
            raise
        return RolloutStatus(False, f"cannot read {ref}: {e}")


def _timed_out(ref: WorkloadRef, timeout: float, missing: str) -> RolloutTimeoutError:
    return RolloutTimeoutError(
        f"{ref} did not finish its rollout within {timeout:g} s: {missing}. Check why its pods "
        f"do not become ready (kubectl -n {ref.namespace} describe {ref.kind.lower()} "
        f"{ref.name}), or give it more time: workloadRestartTimeout (seconds) in its "
        "MirrordWorkloadQueueRegistry",
        workload=str(ref),
        missing=missing,
    )
