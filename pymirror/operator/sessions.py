"""The SplitSession reconciler: one session from Pending to Ready to its end (DESIGN §10).

Level-triggered: ``SessionReconciler.reconcile_session(obj)`` looks at the object as it
is now (plus the clock), takes the steps :func:`next_step` names until one has to wait,
and returns when to look again. Any event, restart or resync reaches the same end
state; every step is idempotent and is recorded in the object before the next one.

The life of a session (``status.phase``):

* **Pending.** The finalizer ``pymirror.dev/session`` is added, then ``status.sequence``
  is assigned once (see below). The session is planned (``planning.plan_session``):
  anything wrong is phase ``Failed``, endReason ``Failed``, the planner's message, and
  nothing is created. The planned queues are recorded in ``status.queues`` (id,
  original, kind, split, envVar) *before* the first ``Splits.join``, so an end always
  knows which splits to leave. Then each queue is joined until every join is ready;
  ``message`` is the current step of each queue still provisioning.
* **Ready.** ``status.queues[]`` lists ``{id, original, kind, split, temporary, envVar,
  value}``: what the local process gets. ``original`` is the plan's (the env before any
  pymirror patch: ``planning.unpatched_template``); ``value`` is the env var's value,
  one JSON object per env var for ``namesFromJsonMap`` queues (:func:`merged_values`).
  The lease runs from then on.
* **Ending** (endReason): the object was deleted (``Completed``; ``Killed`` when it
  carries the annotation ``pymirror.dev/killed``, which ``pymirror session kill`` sets
  before deleting, its value saying who killed it); its lease lapsed (``Expired``: no
  renewal for ``spec.leaseSeconds`` after ``spec.renewTime``, or after Ready when the
  renewal is older or unset); its target workload is gone, or provisioning failed for
  good (``Failed``). Every split in ``status.queues`` is left (``Splits.leave``) until
  all say the session's end is finished. Then: a deleted session loses its finalizer
  (and goes); an expired one is deleted by the operator; a failed one stays in phase
  ``Failed`` with its message, for its client to read, until it is deleted (or its
  lease lapses, then the operator deletes it).

The sequence: ``1 +`` the highest sequence held by a live session (in every watched
namespace) or a QueueSplit route, taken under one lock by the one operator process.
The first assignment after start-up reads the API server's current state; later ones
continue from the last number this process took (listing every session for each new
one made a burst of N sessions cost N listings of N). A number is taken under the lock
and written after it, so each is greater than every one taken before it in this
process and than every one live at start-up: no two live sessions share one, and a
session started later sorts after every session live when it started (one whose write
failed takes a new number on its retry). Writing under the lock made a burst of N
sessions wait for N status writes one after the other. That is a total order among
live sessions (a number can come back, after a restart, only once every holder of it,
its session and its routes, is gone). It holds for a single operator replica; two
replicas would need a counter object updated with optimistic concurrency.

Conditions: ``Ready`` (True once Ready; False with reason ``Provisioning``,
``Retrying``, ``Invalid``, ``Ending`` or ``Ended``) and ``Ended`` (True once the end
began, reason ``Completed``, ``Killed``, ``Expired``, ``TargetGone``,
``ProvisioningFailed`` or ``Invalid``). ``lastTransitionTime`` moves only when a
condition's status changes; the lease of a Ready session counts from the ``Ready``
condition's transition, a Failed session's from the ``Ended`` one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import structlog
from pydantic import ValidationError

from pymirror.errors import EXPECTED_ERRORS
from pymirror.operator.fault_points import fault_point
from pymirror.operator.planning import PlannedQueue, SessionInvalid, SessionPlan, target_kinds
from registry.errors import KubeApiError, NotFoundError, WorkloadNotFoundError
from registry.objects import Kube, Obj, Objects
from registry.session_models import QueueSplit, SplitSession
from registry.workloads import WorkloadKinds, get_workload

log = structlog.get_logger("pymirror.operator.sessions")

FINALIZER = "pymirror.dev/session"
KILLED_ANNOTATION = "pymirror.dev/killed"
"""Set (to who killed it) by ``pymirror session kill`` before it deletes the session."""

EndReason = Literal["Completed", "Expired", "Killed", "Failed"]
Action = Literal[
    "none",
    "add_finalizer",
    "assign_sequence",
    "provision",
    "check_target",
    "begin_end",
    "leave",
    "delete",
]
#: Seconds before a session waiting on something no watched object shows (a rollout's
#: progress) is looked at again.
POLL_SECONDS = 1.0
#: Seconds before a session waiting on its QueueSplit (the worker's acknowledgment of
#: its route, the worker's end of the session, a hand-back) is looked at again if no
#: QueueSplit event came first. Those waits end with a QueueSplit change, whose event
#: enqueues the session at once (controller.py); this only bounds a lost event. Polled
#: every second instead, N sessions waiting on one split cost N reconciles a second:
#: with 100, the work queue stayed full and a burst of ends reached the QueueSplit a few
#: sessions per write.
SPLIT_WAIT_SECONDS = 10.0
#: At most this many steps per reconcile (each step changes the object; a loop is a bug).
MAX_STEPS = 12


# --- the pure core --------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """What to do next with a session, decided from the object and the time alone."""

    action: Action
    reason: EndReason | None = None
    """For ``begin_end``: the endReason."""
    condition_reason: str | None = None
    """For ``begin_end``: the ``Ended`` condition's reason."""
    message: str = ""
    wake_after: float | None = None
    """Seconds until the decision changes by itself (a lease deadline), if it does."""


def parse_time(text: str) -> datetime:
    """An RFC 3339 date-time as an aware datetime."""
    return datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))


def format_time(moment: datetime) -> str:
    """RFC 3339, UTC, seconds (what ``metav1.Time`` looks like)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def session_ref(obj: Mapping[str, Any]) -> str:
    """``<namespace>/<name>``: how routes and the workers name a session."""
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or ():
        if isinstance(c, Mapping) and c.get("type") == kind:
            return c
    return None


def _since(obj: Mapping[str, Any], kind: str) -> datetime | None:
    found = condition(obj, kind)
    if found is None or found.get("status") != "True" or not found.get("lastTransitionTime"):
        return None
    return parse_time(str(found["lastTransitionTime"]))


def lease_deadline(obj: Mapping[str, Any]) -> datetime | None:
    """When a Ready (or Failed) session's lease lapses; None while none runs.

    The lease runs from the later of ``spec.renewTime`` and the moment the session became
    Ready (Failed: ended), for ``spec.leaseSeconds``: a client renews only once Ready, and
    a renewal written at creation must not expire a session that took long to provision.
    """
    status = obj.get("status") or {}
    since = _since(obj, "Ready" if status.get("phase") == "Ready" else "Ended")
    if since is None:
        return None
    spec = obj.get("spec") or {}
    renewed = spec.get("renewTime")
    start = max(since, parse_time(str(renewed))) if renewed else since
    return start + timedelta(seconds=int(spec.get("leaseSeconds") or 30))


def _end_on_delete(meta: Mapping[str, Any]) -> Step:
    if KILLED_ANNOTATION in (meta.get("annotations") or {}):
        by = (meta.get("annotations") or {})[KILLED_ANNOTATION]
        return Step("begin_end", "Killed", "Killed", f"killed by {by}" if by else "killed")
    return Step("begin_end", "Completed", "Completed", "the session was deleted")


def next_step(obj: Mapping[str, Any], now: datetime) -> Step:
    """The next step for a SplitSession object at ``now`` (see the module docstring)."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    phase = status.get("phase")
    ours = FINALIZER in (meta.get("finalizers") or ())
    if meta.get("deletionTimestamp"):
        if not ours:
            return Step("none")
        if phase in ("Ending", "Failed"):
            return Step("leave")
        return _end_on_delete(meta)
    deadline = lease_deadline(obj) if phase in ("Ready", "Failed") else None
    lapsed = deadline is not None and now >= deadline
    if phase == "Failed":
        if lapsed:
            return Step("delete", message="the lease of a failed session lapsed")
        return Step("none", wake_after=_seconds(deadline, now))
    if phase == "Ending":
        return Step("leave")
    if not ours:
        return Step("add_finalizer")
    if status.get("sequence") is None:
        return Step("assign_sequence")
    if phase == "Ready":
        if lapsed:
            lease = (obj.get("spec") or {}).get("leaseSeconds") or 30
            return Step("begin_end", "Expired", "Expired", f"no renewal for {lease} s")
        return Step("check_target", wake_after=_seconds(deadline, now))
    return Step("provision")


def _seconds(deadline: datetime | None, now: datetime) -> float | None:
    return None if deadline is None else max((deadline - now).total_seconds(), 0.0)


def with_condition(
    obj: Mapping[str, Any], kind: str, state: bool, reason: str, message: str, now: datetime
) -> list[dict[str, Any]]:
    """``status.conditions`` with ``kind`` set; its lastTransitionTime moves only when its
    status changes."""
    wanted = "True" if state else "False"
    before = condition(obj, kind)
    moved = before is None or before.get("status") != wanted or not before.get("lastTransitionTime")
    changed = format_time(now) if moved else str(before["lastTransitionTime"])  # type: ignore[index]
    new = {
        "type": kind,
        "status": wanted,
        "reason": reason,
        "message": message,
        "lastTransitionTime": changed,
    }
    others = [
        dict(c)
        for c in (obj.get("status") or {}).get("conditions") or ()
        if isinstance(c, Mapping) and c.get("type") != kind
    ]
    return sorted([*others, new], key=lambda c: str(c["type"]))


def queue_status(queue: PlannedQueue, joined: Joined | None = None) -> dict[str, Any]:
    """One entry of ``status.queues``: what was planned, and once joined what the process gets."""
    entry: dict[str, Any] = {
        "id": queue.id,
        "original": queue.original,
        "kind": queue.kind,
        "split": queue.split,
        "envVar": queue.env_var,
    }
    if joined is not None and joined.temporary is not None:
        entry["temporary"] = joined.temporary
    if joined is not None and joined.value is not None:
        entry["value"] = joined.value
    return entry


def merged_values(joined: Sequence[tuple[PlannedQueue, Joined]]) -> list[str | None]:
    """What each queue's env var gets in the local process: its ``Joined.value``, except
    that the ``namesFromJsonMap`` queues of one env var (same container and var) all get
    one JSON object with *each* of their keys set to its own temporary queue.
    ``Splits.join`` gives each of them the workload's original JSON with only its own key
    replaced, and the local process has one env var for all of them. A value that is not
    a JSON object holding its key is kept as it is."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for queue, result in joined:
        names = _json_names(queue, result)
        if names is not None and queue.json_key is not None:
            base = merged.setdefault((queue.container, queue.env_var), names)
            base[queue.json_key] = names[queue.json_key]
    values: list[str | None] = []
    for queue, result in joined:
        names = merged.get((queue.container, queue.env_var))
        if names is not None and _json_names(queue, result) is not None:
            values.append(json.dumps(names, separators=(",", ":")))
        else:
            values.append(result.value)
    return values


def _json_names(queue: PlannedQueue, joined: Joined) -> dict[str, Any] | None:
    """A ``namesFromJsonMap`` queue's value as a JSON object holding its key (else None)."""
    if queue.json_key is None or joined.value is None:
        return None
    try:
        names = json.loads(joined.value)
    except ValueError:
        return None
    return names if isinstance(names, dict) and queue.json_key in names else None


def recorded_splits(obj: Mapping[str, Any]) -> list[str]:
    """The QueueSplits a session joined or was about to join (``status.queues[].split``)."""
    splits = [q.get("split") for q in (obj.get("status") or {}).get("queues") or ()]
    return sorted({s for s in splits if isinstance(s, str) and s})


def highest_sequence(
    sessions: Sequence[Mapping[str, Any]], splits: Sequence[Mapping[str, Any]]
) -> int:
    """The highest sequence among sessions' ``status.sequence`` and splits' routes (0: none)."""
    found = [0]
    for s in sessions:
        seq = (s.get("status") or {}).get("sequence")
        if isinstance(seq, int):
            found.append(seq)
    for split in splits:
        for route in (split.get("spec") or {}).get("routes") or ():
            seq = route.get("sequence") if isinstance(route, Mapping) else None
            if isinstance(seq, int):
                found.append(seq)
    return max(found)


# --- what the reconciler talks to -----------------------------------------------------------


class Joined(Protocol):
    """What ``Splits.join`` returns (pymirror/operator/splits.py)."""

    @property
    def ready(self) -> bool: ...
    @property
    def step(self) -> str: ...
    @property
    def temporary(self) -> str | None: ...
    @property
    def value(self) -> str | None: ...
    @property
    def polled(self) -> bool:
        """What it waits for shows in no QueueSplit change (else a QueueSplit event ends
        the wait)."""
        ...


class SplitsPort(Protocol):
    """The QueueSplit side (``pymirror.operator.splits.Splits``)."""

    async def join(self, plan: SessionPlan, queue: PlannedQueue, sequence: int) -> Joined: ...
    async def leave(self, split: str, session_ref: str) -> bool: ...


Planner = Callable[[Kube, SplitSession], Awaitable[SessionPlan]]


@dataclass(frozen=True)
class Outcome:
    """How a reconcile ended: look again after ``requeue_after`` seconds (None: on events)."""

    action: Action
    requeue_after: float | None = None


class _Wait(Exception):
    """Internal: a step has to wait; carries when to look again."""

    def __init__(self, requeue_after: float | None) -> None:
        self.requeue_after = requeue_after


class SessionReconciler:
    """Drives SplitSessions (see the module docstring); one instance per operator process."""

    def __init__(
        self,
        kube: Kube,
        splits: SplitsPort,
        planner: Planner,
        *,
        namespaces: Sequence[str],
        operator_namespace: str,
        workload_kinds: WorkloadKinds,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        poll_seconds: float = POLL_SECONDS,
        split_wait_seconds: float = SPLIT_WAIT_SECONDS,
        on_failed: Callable[[str], object] | None = None,
    ) -> None:
        """``on_failed(reason)`` is called once per session refused (``Invalid``) or
        whose provisioning failed for good (``ProvisioningFailed``): the metric."""
        self.kube = kube
        self.on_failed = on_failed
        self.splits = splits
        self.planner = planner
        self.namespaces = list(namespaces)
        self.operator_namespace = operator_namespace
        self.workload_kinds = workload_kinds
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.split_wait_seconds = split_wait_seconds
        self._sequence_lock = asyncio.Lock()
        self._assigned = 0
        """The highest sequence this process took (0: none yet). Once one is, every
        later one is this + 1 without listing every session again: with one replica,
        nothing else assigns sequences, so it stays above every live one."""

    def _objects(self, namespace: str) -> Objects:
        return self.kube.objects(SplitSession.RESOURCE, namespace)

    async def reconcile_session(self, obj: Obj) -> Outcome:
        """Take steps until one waits; ``Outcome`` says when to look again. Errors other
        than a session's own (retriable or API errors) propagate: the caller retries."""
        meta = obj["metadata"]
        bound = log.bind(namespace=meta.get("namespace"), session=meta.get("name"))
        current: Obj | None = obj
        action: Action = "none"
        for _ in range(MAX_STEPS):
            if current is None:
                return Outcome(action)
            step = next_step(current, self.clock())
            action, before = step.action, current
            if step.action == "none":
                return Outcome("none", step.wake_after)
            bound.debug("session step", action=step.action, phase=_phase(current))
            try:
                current = await self._take(step, current, bound)
            except _Wait as wait:
                return Outcome(step.action, wait.requeue_after)
            except NotFoundError:
                if not await self._exists(before):
                    return Outcome(action)  # deleted under us: nothing left to do
                raise
        bound.error("session reconcile did not settle", steps=MAX_STEPS, action=action)
        return Outcome(action, self.poll_seconds)

    async def _exists(self, obj: Obj) -> bool:
        meta = obj["metadata"]
        try:
            await self._objects(meta["namespace"]).get(meta["name"])
        except NotFoundError:
            return False
        return True

    async def _take(self, step: Step, obj: Obj, bound: Any) -> Obj | None:
        meta = obj["metadata"]
        objects = self._objects(meta["namespace"])
        if step.action == "add_finalizer":
            return await objects.add_finalizer(meta["name"], FINALIZER)
        if step.action == "assign_sequence":
            return await self._assign_sequence(obj, bound)
        if step.action == "provision":
            return await self._provision(obj, bound)
        if step.action == "check_target":
            return await self._check_target(obj, step, bound)
        if step.action == "begin_end":
            bound.info("session ending", reason=step.reason, message=step.message)
            return await self._begin_end(obj, step)
        if step.action == "leave":
            return await self._leave(obj, bound)
        if step.action == "delete":
            bound.info("deleting the session", why=step.message)
            await objects.delete(meta["name"], missing_ok=True, uid=meta.get("uid"))
            raise _Wait(None)  # its deletion event comes next
        raise AssertionError(f"unknown step {step.action}")

    # --- sequence ---------------------------------------------------------------------

    async def _assign_sequence(self, obj: Obj, bound: Any) -> Obj:
        """``obj`` (read in this reconcile, the only one of its session running) has no
        sequence yet: take the next number, then write it."""
        meta = obj["metadata"]
        async with self._sequence_lock:
            if self._assigned == 0:  # the first one since start-up: look at what is live
                self._assigned = await self._highest_live(meta["namespace"])
            self._assigned += 1
            sequence = self._assigned
        written = await self._objects(meta["namespace"]).patch_status(
            meta["name"], {"sequence": sequence, "phase": "Pending"}
        )
        bound.info("sequence assigned", sequence=sequence)
        return written

    async def _highest_live(self, namespace: str) -> int:
        """The highest sequence held by a live session or a QueueSplit route."""
        sessions: list[Obj] = []
        if not self.namespaces:  # the operator follows every namespace: count them all
            sessions = (await self.kube.objects(SplitSession.RESOURCE, None).list()).items
        for ns in sorted({*self.namespaces, namespace} if self.namespaces else ()):
            sessions += (await self._objects(ns).list()).items
        splits = (
            await self.kube.objects(QueueSplit.RESOURCE, self.operator_namespace).list()
        ).items
        return highest_sequence(sessions, splits)

    # --- Pending ----------------------------------------------------------------------

    async def _provision(self, obj: Obj, bound: Any) -> Obj:
        plan = await self._plan(obj)
        if plan is None:
            return await self._objects(obj["metadata"]["namespace"]).get(obj["metadata"]["name"])
        obj = await self._record_queues(obj, plan)
        sequence = int(obj["status"]["sequence"])
        joined: list[tuple[PlannedQueue, Joined]] = []
        try:
            for queue in plan.queues:
                result = await self.splits.join(plan, queue, sequence)
                joined.append((queue, result))
        except Exception as e:
            if _retriable(e):
                await self._note_retry(obj, e)
                raise
            bound.warning("provisioning failed", error=str(e))
            self._failed("ProvisioningFailed")
            reason = Step("begin_end", "Failed", "ProvisioningFailed", f"provisioning failed: {e}")
            return await self._begin_end(obj, reason)
        waiting = [(q, j) for q, j in joined if not j.ready]
        if waiting:
            message = "; ".join(f"{q.id} ({q.split}): {j.step}" for q, j in waiting)
            await self._write(
                obj,
                {"phase": "Pending", "message": message},
                "Ready",
                False,
                "Provisioning",
                message,
            )
            polled = any(j.polled for _, j in waiting)
            raise _Wait(self.poll_seconds if polled else self.split_wait_seconds)
        queues = [queue_status(q, j) for q, j in joined]
        for entry, value in zip(queues, merged_values(joined), strict=True):
            if value is not None:
                entry["value"] = value
        bound.info("session ready", queues=[q["id"] for q in queues])
        message = f"ready: {len(queues)} queue(s) split"
        fault_point("session-ready")
        return await self._write(
            obj,
            {"phase": "Ready", "message": message, "queues": queues},
            "Ready",
            True,
            "Provisioned",
            message,
        )

    async def _plan(self, obj: Obj) -> SessionPlan | None:
        """The session's plan; None once it was marked Failed (invalid: nothing created)."""
        try:
            session = SplitSession.model_validate(obj)
        except ValidationError as e:
            self._failed("Invalid")
            await self._fail_invalid(obj, f"the SplitSession is not valid: {e}")
            return None
        try:
            return await self.planner(self.kube, session)
        except SessionInvalid as e:
            self._failed("Invalid")
            if recorded_splits(obj):  # an earlier plan joined splits: leave them first
                step = Step("begin_end", "Failed", "Invalid", str(e))
                await self._begin_end(obj, step)
                return None
            await self._fail_invalid(obj, str(e))
            return None

    def _failed(self, reason: str) -> None:
        if self.on_failed is not None:
            self.on_failed(reason)

    async def _fail_invalid(self, obj: Obj, message: str) -> None:
        log.info("session invalid", session=session_ref(obj), message=message)
        now = self.clock()
        status = {
            "phase": "Failed",
            "endReason": "Failed",
            "message": message,
            "conditions": _conditions(
                obj, now, ready=(False, "Invalid", message), ended=(True, "Invalid", message)
            ),
        }
        await self._objects(obj["metadata"]["namespace"]).patch_status(
            obj["metadata"]["name"], status
        )

    async def _record_queues(self, obj: Obj, plan: SessionPlan) -> Obj:
        """Write the planned queues (and their splits) before any is joined; a split
        recorded once stays recorded (an end leaves it)."""
        status = obj.get("status") or {}
        known = list(status.get("queues") or ())
        recorded = {q.get("split") for q in known}
        new = [queue_status(q) for q in plan.queues if q.split not in recorded]
        if not new:
            return obj
        queues = sorted([*known, *new], key=lambda q: (str(q["id"]), str(q["original"])))
        return await self._objects(obj["metadata"]["namespace"]).patch_status(
            obj["metadata"]["name"], {"queues": queues}
        )

    async def _note_retry(self, obj: Obj, error: BaseException) -> None:
        message = f"retrying: {error}"
        with contextlib.suppress(KubeApiError):  # the retry itself will say more
            await self._write(obj, {"message": message}, "Ready", False, "Retrying", message)

    # --- Ready ------------------------------------------------------------------------

    async def _check_target(self, obj: Obj, step: Step, bound: Any) -> Obj:
        target = SplitSession.model_validate(obj).spec.target
        try:
            kinds = target_kinds(target, self.workload_kinds)
            await get_workload(
                self.kube, kinds, obj["metadata"]["namespace"], target.kind, target.name
            )
        except (WorkloadNotFoundError, SessionInvalid) as e:
            bound.warning("target gone", error=str(e))
            gone = Step("begin_end", "Failed", "TargetGone", f"the target is gone: {e}")
            return await self._begin_end(obj, gone)
        raise _Wait(step.wake_after)

    # --- Ending -----------------------------------------------------------------------

    async def _begin_end(self, obj: Obj, step: Step) -> Obj:
        now = self.clock()
        status: dict[str, Any] = {
            "phase": "Ending",
            "endReason": step.reason,
            "message": step.message,
            "conditions": _conditions(
                obj,
                now,
                ready=(False, "Ending", step.message),
                ended=(True, step.condition_reason or str(step.reason), step.message),
            ),
        }
        return await self._objects(obj["metadata"]["namespace"]).patch_status(
            obj["metadata"]["name"], status
        )

    async def _leave(self, obj: Obj, bound: Any) -> Obj | None:
        ref = session_ref(obj)
        waiting = [
            split for split in recorded_splits(obj) if not await self.splits.leave(split, ref)
        ]
        meta = obj["metadata"]
        objects = self._objects(meta["namespace"])
        status = obj.get("status") or {}
        if waiting:
            message = f"ending: waiting for the workers of {', '.join(waiting)} to end the session"
            if status.get("phase") == "Ending" and status.get("message") != message:
                await objects.patch_status(meta["name"], {"message": message})
            raise _Wait(self.split_wait_seconds)  # the workers' status writes wake it
        if meta.get("deletionTimestamp"):
            bound.info("session ended; finalizer removed", reason=status.get("endReason"))
            await objects.remove_finalizer(meta["name"], FINALIZER)
            return None
        if status.get("endReason") == "Expired":
            bound.info("expired session ended; deleting it")
            await objects.delete(meta["name"], missing_ok=True, uid=meta.get("uid"))
            return await self._get_or_none(objects, meta["name"])
        ended = condition(obj, "Ended") or {}
        message = str(ended.get("message") or status.get("message") or "the session ended")
        bound.info("session ended", reason=status.get("endReason"), message=message)
        now = self.clock()
        return await objects.patch_status(
            meta["name"],
            {
                "phase": "Failed",
                "message": message,
                "conditions": _conditions(
                    obj,
                    now,
                    ready=(False, "Ended", message),
                    ended=(True, str(ended.get("reason") or "Failed"), message),
                ),
            },
        )

    async def _get_or_none(self, objects: Objects, name: str) -> Obj | None:
        try:
            return await objects.get(name)
        except NotFoundError:
            return None

    async def _write(
        self,
        obj: Obj,
        status: Mapping[str, Any],
        kind: str,
        state: bool,
        reason: str,
        message: str,
    ) -> Obj:
        """Patch ``status`` plus condition ``kind``; skipped when nothing would change."""
        conditions = with_condition(obj, kind, state, reason, message, self.clock())
        body = {**status, "conditions": conditions}
        current = obj.get("status") or {}
        if all(current.get(k) == v for k, v in body.items()):
            return obj
        return await self._objects(obj["metadata"]["namespace"]).patch_status(
            obj["metadata"]["name"], body
        )


def _conditions(
    obj: Mapping[str, Any],
    now: datetime,
    *,
    ready: tuple[bool, str, str],
    ended: tuple[bool, str, str],
) -> list[dict[str, Any]]:
    first = with_condition(obj, "Ready", *ready, now)
    return with_condition({"status": {"conditions": first}}, "Ended", *ended, now)


def _phase(obj: Mapping[str, Any]) -> str | None:
    phase = (obj.get("status") or {}).get("phase")
    return phase if isinstance(phase, str) else None


def _retriable(error: BaseException) -> bool:
    """Errors the controller retries with backoff (the session stays where it is): temporary
    ones, API refusals, and anything unexpected. Expected errors of the session's own are
    permanent: the session ends ``Failed`` with their message."""
    if getattr(error, "retriable", False) or isinstance(error, KubeApiError):
        return True
    return not isinstance(error, EXPECTED_ERRORS)
