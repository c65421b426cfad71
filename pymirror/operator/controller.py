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
  split in ``status.queues`` or no split yet (they may be waiting on it), but only
  when what they wait for changed (:func:`wake_state`: the generation the worker
  applied, the hand-back, the workload's state, the worker, the object's deletion) or
  the split is new to the watch; any other change (the workers' counters, the
  operator's records, a route write not applied yet) enqueues only the sessions it
  newly lists in ``status.endedSessions``. Waking every waiting session on every write
  kept a burst of N ends cycling N sessions through the queue per write, each real
  wake-up queued behind them;
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

Health (:class:`Health`, served by :func:`serve_http` beside ``/metrics`` on the metrics
port):

* ``/healthz`` (liveness): the event loop is alive: a task stamps ``Health.beat`` every
  ``HEARTBEAT_SECONDS``; 200 while the last stamp is at most ``STALL_SECONDS`` old (the
  HTTP server runs in its own thread, so a blocked or dead loop shows as a stale stamp,
  not as a probe that hangs), 503 after;
* ``/readyz`` (readiness): every watch delivered its first list (``started``) and the
  last *pass* succeeded at most ``Health.stale_after`` seconds ago. A pass is a real
  round trip to the API server, a list of the QueueSplits in the operator's namespace
  (what every reconcile needs), one every ``Health.pass_seconds`` (the resync interval,
  at most 10 s; ``stale_after`` is three of them); a pass that hangs is waited for, so a
  stalled API server shows as an ageing pass. Reconcile errors (an SQS endpoint or a
  broker away) do not make the operator unready: nothing can be routed around a single
  operator, and they are counted in ``pymirror_operator_reconcile_errors_total``; the
  body lists the keys in backoff.

Both answer a JSON object (``status``: ``ok``/``starting``/``stalled``/``not ready``, and
the ages they judged by).
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from typing import Any, Literal, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
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
#: Seconds between two stamps of the event loop's heartbeat (``/healthz``).
HEARTBEAT_SECONDS = 1.0
#: A heartbeat older than this makes ``/healthz`` answer 503 (the loop is stuck).
STALL_SECONDS = 30.0
#: The longest interval between two readiness passes (``/readyz``).
PASS_SECONDS_MAX = 10.0


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


class Health:
    """What ``/healthz`` and ``/readyz`` answer (see the module docstring). Written by the
    event loop, read by the HTTP thread (plain attribute reads and writes)."""

    def __init__(self, resync_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.pass_seconds = min(resync_seconds, PASS_SECONDS_MAX)
        """Seconds between two readiness passes."""
        self.stale_after = 3 * self.pass_seconds
        """A last pass older than this makes ``/readyz`` answer 503."""
        self.started_at = clock()
        self.beat: float | None = None
        """When the event loop last stamped its heartbeat."""
        self.listed = False
        """Every watch delivered its first list."""
        self.last_pass: float | None = None
        """When the last pass (a list of the operator's QueueSplits) succeeded."""
        self.last_error: str | None = None
        """The last pass's error, None once one succeeded."""
        self.backoff: Callable[[], int] = lambda: 0
        """How many keys wait in backoff after a failed reconcile (for the body)."""

    def stamp(self) -> None:
        self.beat = self.clock()

    def passed(self) -> None:
        self.last_pass = self.clock()
        self.last_error = None

    def _age(self, at: float | None) -> float | None:
        return None if at is None else round(self.clock() - at, 3)

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """(alive, body): the heartbeat is at most ``STALL_SECONDS`` old (or, before the
        first stamp, the process started less than that ago)."""
        age = self._age(self.beat)
        since = self._age(self.started_at) or 0.0
        if age is None:
            alive = since <= STALL_SECONDS
            return alive, {"status": "starting" if alive else "stalled", "uptime_seconds": since}
        alive = age <= STALL_SECONDS
        body = {"status": "ok" if alive else "stalled", "heartbeat_age_seconds": age}
        return alive, body | {"stall_after_seconds": STALL_SECONDS}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body): the watches listed and the last pass is recent."""
        age = self._age(self.last_pass)
        reasons = []
        if not self.listed:
            reasons.append("the watches have not delivered their first list yet")
        if age is None:
            reasons.append("no pass has reached the API server yet")
        elif age > self.stale_after:
            reasons.append(f"the last pass reached the API server {age:.1f} s ago")
        body: dict[str, Any] = {
            "status": "not ready" if reasons else "ok",
            "watches_listed": self.listed,
            "last_pass_age_seconds": age,
            "stale_after_seconds": self.stale_after,
            "keys_in_backoff": self.backoff(),
        }
        if reasons:
            body["reasons"] = reasons
        if self.last_error is not None:
            body["last_error"] = self.last_error
        return not reasons, body


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


def health_app(health: Health, registry: CollectorRegistry = REGISTRY) -> Callable[..., Any]:
    """The WSGI app of the metrics port: ``/healthz``, ``/readyz``, else Prometheus text."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path not in ("/healthz", "/readyz"):
            return metrics(environ, start_response)
        ok, body = health.liveness() if path == "/healthz" else health.readiness()
        data = json.dumps(body).encode()
        status = "200 OK" if ok else "503 Service Unavailable"
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        start_response(status, headers)
        return [data]

    return app


def serve_http(
    port: int, health: Health, registry: CollectorRegistry = REGISTRY, addr: str = "0.0.0.0"
) -> WSGIServer:
    """Serve :func:`health_app` on ``addr:port`` in a daemon thread; ``shutdown()`` stops it."""
    server = make_server(
        addr, port, health_app(health, registry), _ThreadingServer, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


def split_sessions(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(namespace, name)`` of each session a QueueSplit's routes name."""
    refs = []
    for route in (obj.get("spec") or {}).get("routes") or ():
        namespace, _, name = str(route.get("session", "")).partition("/")
        if namespace and name:
            refs.append((namespace, name))
    return refs


def wake_state(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a QueueSplit the sessions waiting on it wait for (see the module
    docstring): a joining session for the worker's acknowledgment (or the rollout, or
    the end of a hand-back), an ending one for its end in ``endedSessions`` (compared
    apart) or for the worker to apply a spec without its route."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return (
        status.get("appliedGeneration"),
        bool(spec.get("handBack")),
        json.dumps(status.get("handBack"), sort_keys=True),
        json.dumps(status.get("workload"), sort_keys=True),
        status.get("workerDeployment"),
        bool(meta.get("deletionTimestamp")),
    )


def ended_sessions(obj: Mapping[str, Any]) -> set[tuple[str, str]]:
    """``(namespace, name)`` of each session a QueueSplit's worker reports as ended."""
    refs = set()
    for ref in (obj.get("status") or {}).get("endedSessions") or ():
        namespace, _, name = str(ref).partition("/")
        if namespace and name:
            refs.add((namespace, name))
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
        health: Health | None = None,
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
        self.health = health or Health(resync_seconds)
        """What ``/readyz`` judges by (the watches listed, the last pass)."""
        self.health.backoff = lambda: len(self.failures)

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
                    group.create_task(self._passes()),
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
            self.health.listed = True
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
        before = self.known.get(key)
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
        woken = (named - self._settled(named)) | waiting
        unchanged = before is not None and wake_state(before) == wake_state(event.object)
        if unchanged and event.type != "DELETED":
            ended = ended_sessions(event.object) - ended_sessions(before or {})
            woken = {k for k in woken if (k[1], k[2]) in ended}
        for session in sorted(woken):
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

    async def _passes(self) -> None:
        """The readiness passes: a list of the operator's QueueSplits every
        ``health.pass_seconds``; one that hangs is waited for (its age shows)."""
        objects = self.kube.objects(QueueSplit.RESOURCE, self.operator_namespace)
        while True:
            try:
                await objects.list()
            except Exception as e:
                self.health.last_error = str(e)
                log.info("readiness pass failed", error=str(e))
            else:
                self.health.passed()
            await asyncio.sleep(self.health.pass_seconds)

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
    health: Health | None = None,
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
        workers=operator.reconcile_workers,
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
        health=health,
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
    health = Health(settings.operator.resync_seconds)
    server = serve_http(metrics_port, health) if metrics_port is not None else None
    heartbeat = asyncio.create_task(_heartbeat(health))
    try:
        async with Kube.connect(kubeconfig, context) as kube:
            controller = build(
                kube, settings, namespaces=namespaces, registry=REGISTRY, health=health
            )
            await controller.run(stop)
    finally:
        heartbeat.cancel()
        if server is not None:
            server.shutdown()
            server.server_close()


async def _heartbeat(health: Health) -> None:
    """Stamp the event loop's heartbeat every ``HEARTBEAT_SECONDS`` (``/healthz``)."""
    while True:
        health.stamp()
        await asyncio.sleep(HEARTBEAT_SECONDS)
