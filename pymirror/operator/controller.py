"""The controller: watches, a work queue, and the reconcilers run one key at a time.

``Controller.run(stop)`` until ``stop`` is set:

* watches SplitSessions in each namespace of ``namespaces``, or, when it is empty, in
  every namespace with one cluster-wide watch (``kube.objects(resource, None)``; the
  watch's bookkeeping is keyed by (namespace, name)), and QueueSplits in the operator's
  namespace; each watch resumes from its last resourceVersion and re-lists on 410
  (``registry.watching``), so no change is missed;
* an event enqueues its object's key (``("session", ns, name)``, ``("split", ns, name)``);
  a QueueSplit event also enqueues the sessions its routes name, except those known as
  Ready and not being deleted (nothing in a QueueSplit change is for them), and every
  session that is neither Ready nor Failed or is being deleted and that recorded this
  split in ``status.queues`` or no split yet (they may be waiting on it);
* the :class:`WorkQueue` holds each key once, runs at most one reconcile per key at a
  time (a key added while it runs is run again right after), and ``workers`` keys in
  parallel;
* a reconcile that raises is retried after a per-key exponential backoff
  (``BACKOFF_FIRST`` doubling to ``BACKOFF_MAX``), reset by a success; a session's
  ``Outcome.requeue_after`` schedules its next look (a lease deadline, a rollout);
* every ``resync_seconds`` every known key is enqueued (what a lost event or a crash
  left); every ``lease_check_seconds`` the cached sessions are checked with the pure
  ``sessions.next_step``, and those whose lease lapsed are enqueued at once;
* garbage collection (``pymirror.operator.gc.collect``, when given) once the watches
  listed, then every ``gc_seconds`` (settings.gc_interval); each QueueSplit event is also
  handed to ``on_split`` (the GC's ``KnownOriginals``), deletions included.

A session is always reconciled as read fresh from the API server, never from the watch
cache (the cache only decides what to enqueue). Logs are bound with namespace/session
(or split). Metrics (``prometheus_client``, when a registry is given): sessions by phase,
reconcile latency per kind, reconcile errors per kind, garbage-collection actions per
action (``pymirror_gc_actions_total{action}``).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import structlog
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from pymirror.operator.planning import SessionPlan
from pymirror.operator.sessions import Outcome, SessionReconciler, next_step
from pymirror.settings import Settings
from registry.errors import NotFoundError
from registry.objects import Kube, Obj, Objects
from registry.session_models import QueueSplit, SplitSession
from registry.watching import WatchEvent

log = structlog.get_logger("pymirror.operator.controller")

KeyKind = Literal["session", "split"]
Key = tuple[KeyKind, str, str]
"""``(kind, namespace, name)``."""
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
PHASES = ("Pending", "Ready", "Ending", "Failed")


class SessionReconcilerPort(Protocol):
    async def reconcile_session(self, obj: Obj) -> Outcome: ...


class SplitReconcilerPort(Protocol):
    async def reconcile_split(self, name: str) -> None: ...


class WorkQueue:
    """Keys to reconcile: each held once, at most one in progress per key."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._again: set[Key] = set()
        self._timers: dict[Key, tuple[float, asyncio.TimerHandle]] = {}

    def add(self, key: Key) -> None:
        """Enqueue ``key`` (no-op if queued; run again after the current run if active)."""
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Enqueue ``key`` in ``delay`` seconds (an earlier pending timer for it wins)."""
        loop = asyncio.get_running_loop()
        due = loop.time() + max(delay, 0.0)
        pending = self._timers.get(key)
        if pending is not None and pending[0] <= due:
            return
        if pending is not None:
            pending[1].cancel()
        self._timers[key] = (due, loop.call_at(due, self._fire, key))

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> Key:
        key = await self._queue.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Key) -> None:
        self._active.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def close(self) -> None:
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    def __len__(self) -> int:
        return len(self._queued)


@dataclass
class Metrics:
    """The operator's collectors, in ``registry``."""

    registry: CollectorRegistry
    sessions: Gauge = field(init=False)
    latency: Histogram = field(init=False)
    errors: Counter = field(init=False)
    gc_actions: Counter = field(init=False)
    failures: Counter = field(init=False)

    def __post_init__(self) -> None:
        self.failures = Counter(
            "pymirror_operator_provisioning_failures",
            "sessions that ended Failed before Ready, by condition reason (Invalid: refused "
            "by validation, nothing created; ProvisioningFailed: a join failed for good)",
            ["reason"],
            registry=self.registry,
        )
        for reason in ("Invalid", "ProvisioningFailed"):
            self.failures.labels(reason=reason)
        self.gc_actions = Counter(
            "pymirror_gc_actions",
            "garbage-collection actions (route_left, env_restored, worker_deleted, queue_deleted)",
            ["action"],
            registry=self.registry,
        )
        self.sessions = Gauge(
            "pymirror_operator_sessions",
            "SplitSessions by phase",
            ["phase"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pymirror_operator_reconcile_seconds",
            "reconcile latency",
            ["kind"],
            registry=self.registry,
        )
        self.errors = Counter(
            "pymirror_operator_reconcile_errors",
            "reconciles that raised (retried with backoff)",
            ["kind"],
            registry=self.registry,
        )

    def count_phases(self, sessions: Iterable[Mapping[str, Any]]) -> None:
        counts = dict.fromkeys(PHASES, 0)
        for obj in sessions:
            phase = (obj.get("status") or {}).get("phase") or "Pending"
            counts[phase] = counts.get(phase, 0) + 1
        for phase, count in counts.items():
            self.sessions.labels(phase=phase).set(count)


def split_sessions(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(namespace, name)`` of each session a QueueSplit's routes name."""
    refs = []
    for route in (obj.get("spec") or {}).get("routes") or ():
        namespace, _, name = str(route.get("session", "")).partition("/")
        if namespace and name:
            refs.append((namespace, name))
    return refs


def waits_on_splits(obj: Mapping[str, Any], routed: bool = False) -> bool:
    """Whether a session may be waiting on a QueueSplit change: one being deleted, or one
    neither Ready nor (unless ``routed``: a QueueSplit still routes to it) Failed."""
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return True
    phase = (obj.get("status") or {}).get("phase")
    return phase != "Ready" and (routed or phase != "Failed")


def joins(obj: Mapping[str, Any], split: str) -> bool:
    """Whether a session may wait on QueueSplit ``split``: it recorded it in
    ``status.queues[].split``, or recorded no split yet (not planned so far)."""
    recorded = {q.get("split") for q in (obj.get("status") or {}).get("queues") or ()}
    recorded.discard(None)
    return not recorded or split in recorded


class Controller:
    """Watches and reconciles (see the module docstring)."""

    def __init__(
        self,
        kube: Kube,
        sessions: SessionReconcilerPort,
        splits: SplitReconcilerPort,
        *,
        namespaces: Sequence[str],
        operator_namespace: str,
        resync_seconds: float,
        lease_check_seconds: float = 1.0,
        workers: int = 4,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        gc: Callable[[], Awaitable[object]] | None = None,
        gc_seconds: float = 300.0,
        on_split: Callable[[Obj], None] | None = None,
        on_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.kube = kube
        self.sessions = sessions
        self.splits = splits
        self.namespaces = list(dict.fromkeys(namespaces))
        """Where SplitSessions are watched; empty: every namespace."""
        self.on_split = on_split
        self.on_stop = on_stop
        """Awaited when ``run`` returns (closes what the reconcilers keep open)."""
        self.operator_namespace = operator_namespace
        self.resync_seconds = resync_seconds
        self.lease_check_seconds = lease_check_seconds
        self.workers = max(workers, 1)
        self.metrics = metrics
        self.clock = clock
        self.gc = gc
        self.gc_seconds = gc_seconds
        self.queue = WorkQueue()
        self.known: dict[Key, Obj] = {}
        """The last object each watch delivered, per key."""
        self.failures: dict[Key, int] = {}
        self.reconciled = 0
        """Reconciles finished (with or without an error), for tests and logs."""
        self.watching: set[tuple[str, str]] = set()
        """(resource plural, namespace or "(all namespaces)") of the watches that have
        delivered their list."""
        self.started = asyncio.Event()
        """Set once every watch delivered its first list."""
        self.collected = asyncio.Event()
        """Set once the first garbage collection finished (or failed)."""

    # --- the process ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Watch and reconcile until ``stop`` is set; a watch that gives up raises."""
        log.info(
            "operator controller starting",
            namespaces=self.namespaces or "all",
            operator_namespace=self.operator_namespace,
        )
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    *(group.create_task(self._watch_sessions(ns)) for ns in self._scopes()),
                    group.create_task(self._watch_splits()),
                    group.create_task(self._every(self.resync_seconds, self._resync)),
                    group.create_task(self._every(self.lease_check_seconds, self._check_leases)),
                    *(group.create_task(self._work(i)) for i in range(self.workers)),
                ]
                if self.gc is not None:
                    tasks.append(group.create_task(self._collect_garbage(self.gc)))
                await stop.wait()
                for task in tasks:
                    task.cancel()
        finally:
            self.queue.close()
            if self.on_stop is not None:
                await self.on_stop()
        log.info("operator controller stopped")

    # --- watches ----------------------------------------------------------------------

    def _scopes(self) -> list[str | None]:
        """The session watches' namespaces (None: one watch of every namespace)."""
        return [*self.namespaces] or [None]

    def _watched(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces

    async def _watch_sessions(self, namespace: str | None) -> None:
        objects = self.kube.objects(SplitSession.RESOURCE, namespace)
        await self._follow(objects, "session", self._on_session)

    async def _watch_splits(self) -> None:
        objects = self.kube.objects(QueueSplit.RESOURCE, self.operator_namespace)
        await self._follow(objects, "split", self._on_split)

    async def _follow(
        self, objects: Objects, kind: KeyKind, handle: Callable[[WatchEvent], None]
    ) -> None:
        listed = await objects.list()
        for obj in listed.items:
            handle(WatchEvent("ADDED", obj))
        self.watching.add((objects.resource.plural, objects.where))
        if len(self.watching) == len(self._scopes()) + 1:
            log.info("operator watching", watches=sorted(" ".join(w) for w in self.watching))
            self.started.set()
        async with objects.watch(resource_version=listed.resource_version, retry_for=None) as w:
            async for event in w:
                handle(event)

    def _key(self, kind: KeyKind, obj: Mapping[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        return (kind, str(meta.get("namespace", "")), str(meta.get("name", "")))

    def _on_session(self, event: WatchEvent) -> None:
        key = self._key("session", event.object)
        if event.type == "DELETED":
            self.known.pop(key, None)
            self.failures.pop(key, None)
            return
        self.known[key] = event.object
        self.queue.add(key)

    def _on_split(self, event: WatchEvent) -> None:
        if self.on_split is not None:
            self.on_split(event.object)
        key = self._key("split", event.object)
        if event.type == "DELETED":
            self.known.pop(key, None)
            self.failures.pop(key, None)
        else:
            self.known[key] = event.object
            self.queue.add(key)
        named: set[Key] = {("session", ns, n) for ns, n in split_sessions(event.object)}
        split = key[2]
        waiting: set[Key] = {
            k
            for k, obj in self.known.items()
            if k[0] == "session" and waits_on_splits(obj) and joins(obj, split)
        }
        for session in sorted((named - self._settled(named)) | waiting):
            if self._watched(session[1]):
                self.queue.add(session)

    def _settled(self, keys: Iterable[Key]) -> set[Key]:
        """The sessions of ``keys`` known as Ready and not being deleted: a QueueSplit
        change has nothing for them (their own events, the lease check and the resync
        still reach them). Enqueuing every routed session on every QueueSplit write made
        one split's N sessions cost N reconciles per write."""
        return {k for k in keys if k in self.known and not waits_on_splits(self.known[k], True)}

    # --- timers -----------------------------------------------------------------------

    async def _every(self, seconds: float, action: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(seconds)
            action()

    async def _collect_garbage(self, gc: Callable[[], Awaitable[object]]) -> None:
        """At start-up (once the watches listed) and every ``gc_seconds``; a failure is
        logged and the next round comes anyway."""
        await self.started.wait()
        while True:
            try:
                self._count_gc(await gc())
            except Exception as e:
                log.warning("garbage collection failed", error=str(e), exc_info=e)
            self.collected.set()
            await asyncio.sleep(self.gc_seconds)

    def _count_gc(self, result: object) -> None:
        counts = getattr(result, "counts", None)
        if self.metrics is None or not callable(counts):
            return
        for action, count in counts().items():
            self.metrics.gc_actions.labels(action=action).inc(count)

    def _resync(self) -> None:
        log.debug("resync", keys=len(self.known))
        for key in sorted(self.known):
            self.queue.add(key)

    def _check_leases(self) -> None:
        now = self.clock()
        sessions = [(k, o) for k, o in self.known.items() if k[0] == "session"]
        for key, obj in sessions:
            if next_step(obj, now).action in ("begin_end", "delete"):
                self.queue.add(key)
        if self.metrics is not None:
            self.metrics.count_phases(o for _, o in sessions)

    # --- workers ----------------------------------------------------------------------

    async def _work(self, index: int) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self._reconcile(key)
            finally:
                self.queue.done(key)
                self.reconciled += 1

    async def _reconcile(self, key: Key) -> None:
        kind, namespace, name = key
        bound = log.bind(namespace=namespace, **{kind: name})
        started = time.monotonic()
        try:
            if kind == "session":
                await self._reconcile_session(key)
            else:
                await self.splits.reconcile_split(name)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            failures = self.failures.get(key, 0) + 1
            self.failures[key] = failures
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1))
            bound.warning("reconcile failed; retrying", error=str(e), retry_in=delay, exc_info=e)
            if self.metrics is not None:
                self.metrics.errors.labels(kind=kind).inc()
            self.queue.add_after(key, delay)
        else:
            self.failures.pop(key, None)
        finally:
            if self.metrics is not None:
                self.metrics.latency.labels(kind=kind).observe(time.monotonic() - started)

    async def _reconcile_session(self, key: Key) -> None:
        _, namespace, name = key
        objects = self.kube.objects(SplitSession.RESOURCE, namespace)
        try:
            obj = await objects.get(name)
        except NotFoundError:
            self.known.pop(key, None)
            return
        outcome = await self.sessions.reconcile_session(obj)
        if outcome.requeue_after is not None:
            self.queue.add_after(key, outcome.requeue_after)


# --- the process ------------------------------------------------------------------------------


def build(
    kube: Kube,
    settings: Settings,
    *,
    namespaces: Sequence[str],
    registry: CollectorRegistry | None = None,
) -> Controller:
    """The controller with its reconcilers, wired from ``settings``; its metrics in
    ``registry`` (none without one). ``namespaces`` empty: sessions in every namespace."""
    from pymirror.operator.gc import KnownOriginals, QueueSweep, collect
    from pymirror.operator.planning import plan_session
    from pymirror.operator.splits import Splits

    operator = settings.operator
    splits = Splits(kube, settings, shared_sqs=True)
    originals = KnownOriginals()
    sweep = QueueSweep(splits.endpoint, settings.sqs.name_format, originals)

    async def planner(kube: Kube, session: SplitSession) -> SessionPlan:
        return await plan_session(kube, session, settings=operator)

    metrics = Metrics(registry) if registry is not None else None

    def failed(reason: str) -> None:
        if metrics is not None:
            metrics.failures.labels(reason=reason).inc()

    sessions = SessionReconciler(
        kube,
        splits,
        planner,
        namespaces=namespaces,
        operator_namespace=operator.namespace,
        workload_kinds=operator.kinds(),
        on_failed=failed,
    )
    return Controller(
        kube,
        sessions,
        splits,
        namespaces=namespaces,
        operator_namespace=operator.namespace,
        resync_seconds=operator.resync_seconds,
        metrics=metrics,
        gc=lambda: collect(
            kube,
            splits,
            namespaces=namespaces,
            operator_namespace=operator.namespace,
            kinds=operator.kinds(),
            workers=operator.worker_resource(),
            queues=sweep if operator.gc_queues else None,
        ),
        gc_seconds=operator.gc_interval,
        on_split=originals.remember,
        on_stop=splits.close,
    )


async def serve(
    settings: Settings,
    *,
    namespaces: Sequence[str],
    kubeconfig: str | None = None,
    context: str | None = None,
    metrics_port: int | None = None,
) -> None:
    """Run the operator until SIGTERM/SIGINT (``pymirror operator``)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if metrics_port is not None:
        start_http_server(metrics_port)
    async with Kube.connect(kubeconfig, context) as kube:
        controller = build(kube, settings, namespaces=namespaces, registry=REGISTRY)
        await controller.run(stop)
