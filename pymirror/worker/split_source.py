"""The operator's session source: a split worker follows its ``QueueSplit`` object.

``QueueSplitSource(kube, namespace, name)`` is a :class:`~pymirror.worker.sources.SessionSource`
for one ``QueueSplit`` (crds/queuesplits.yaml, operator namespace)::

    source = QueueSplitSource(kube, "pymirror-system", "shop-orders")
    routes = await source.open()          # QueueSplitError if missing or invalid
    await run_worker(worker, source, ...)  # load() returns what open() read

* Routes come from ``spec.routes[]`` ``{session, sequence, destination, messageFilter,
  jqFilter, mode}``, in sequence order, each filter compiled once. A route whose filter
  does not compile (or that repeats another's sequence) is *rejected*: logged with the
  session named, left out, the other routes kept; :attr:`QueueSplitSource.rejected`
  holds the rejections of the generation read last. ``spec.handBack: true`` means no
  sessions (``[]``, which starts the worker's hand-back).
* ``watch`` follows the object with a resuming watch (``registry.watching``) from the
  resourceVersion ``open`` read, so no change made in between is missed. A new
  ``metadata.generation`` (a change of ``spec``) is offered to ``apply`` with the whole
  route list, one change at a time; status-only changes (same generation) are ignored.
  A refused change is offered again on the next event or after a short backoff, unless
  a newer generation replaces it. Once the worker uses a generation's routes
  (the one ``open`` read, when the watch starts; every applied one after that), the
  source writes ``status.appliedGeneration`` (status subresource, merge patch), which
  tells the operator the worker acknowledged the routes.
* The object's deletion (a DELETED event, or a ``deletionTimestamp``) ends the watch with
  a warning log line and calls ``on_deleted`` (the process passes ``worker.stop``: the
  same graceful stop as a first SIGTERM). It does not apply ``[]``: a hand-back is the
  operator's decision (``spec.handBack``), and an object gone means nobody will read
  the worker's progress any more.
* ``report(counters)`` merges ``status.counters`` (read, unmatched, fallback, failed,
  lag, forwarded per session); sessions no longer counted are removed from
  ``forwarded``.
* The worker's progress goes into the status through hooks the process wires to the
  engine's callbacks (the splitter never imports this module): :meth:`session_ended`
  (a session ref whose end finished: leftovers moved or, for ``mirror``, dropped, and
  its queue/topic deleted; resumed ends included) and :meth:`hand_back_progress`
  (``handBack {phase, remaining}``). They only note the change and wake the status
  writer (:meth:`QueueSplitSource.run_reports`), so message flow never waits for the
  API server. The writer writes ``endedSessions``, ``handBack``, ``activeSessions`` and
  ``counters`` (from the ``counters`` callable) at once after a change and every
  ``report_interval`` seconds, and once more at exit (:meth:`final_report`). Each write
  reads the object and merge-patches the status guarded by its resourceVersion (a
  409 reads again), so the ``endedSessions`` of several replicas add up; a failed
  write is retried with backoff.
* ``endedSessions`` stays bounded: a ref leaves it once a route names it again (a new
  end is reported again), and at most ``MAX_ENDED`` refs are kept, the most recent ends
  (refs found there at start-up, an earlier worker's or another replica's, count as the
  oldest), so a restarted worker keeps what an earlier one reported. An end the engine
  names by its queue/topic (a Kafka end resumed from the hand-back file) is reported by
  the ref that routed there (routes seen, ``status.temporaryResources``); only valid
  session refs (``namespace/name``) are written, anything else is logged. A route
  removed before the worker ever applied it is never reported: nothing was routed to
  its queue/topic.
* Exit: ``final_report`` writes once more, for ``FINAL_REPORT_STOPPED`` s at most after a
  stop (within the pod's grace) and ``FINAL_REPORT_DONE`` s once ``handBack`` is
  ``Done`` (the operator waits for it). A worker restarted with ``spec.handBack`` whose
  fallback is gone reports ``Done`` again (see the process modules).

A watch that gives up (``UnavailableError`` after its ``retry_for``, a 403) raises out
of ``watch``: the worker cannot know its routes any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import ValidationError

from pymirror.errors import PymirrorError, UsageError
from pymirror.worker.sources import Apply, FileSessionSource, SessionSource, _offer
from registry.errors import ConflictError, NotFoundError, RegistryError
from registry.models import SECRET_REF
from registry.objects import Kube, Obj
from registry.session_models import QueueSplit, SplitCounters
from registry.watching import WatchEvent
from splitter.errors import FilterError
from splitter.filters import FilterSpec, compile_filter
from splitter.routing import SessionRoute

log = structlog.get_logger()

#: Seconds before a refused change (or a failed status write) is tried again, at first;
#: doubled on each further refusal up to ``BACKOFF_MAX``.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 5.0
#: Seconds between two periodic status writes (counters), by default.
REPORT_INTERVAL = 10.0
#: At most this many refs are kept in ``status.endedSessions`` (the most recent ends).
MAX_ENDED = 100
#: Seconds the status write at exit is retried: short after a stop (SIGTERM must stay
#: within the pod's grace), long after a finished hand-back (the operator waits for Done).
FINAL_REPORT_STOPPED = 5.0
FINAL_REPORT_DONE = 120.0

HandBackPhase = Literal["Draining", "Returning", "Done"]
#: The counters of the worker now, as ``status.counters`` holds them.
CountersFn = Callable[[], "SplitCounters | Mapping[str, Any]"]
_SESSION_REF = re.compile(SECRET_REF)


class QueueSplitError(PymirrorError):
    """The worker's QueueSplit does not exist or cannot be used; the message names it."""


@dataclass(frozen=True)
class Rejection:
    """A route left out of a generation: its session and why."""

    session: str
    error: str


@dataclass(frozen=True)
class SplitRoutes:
    """What one generation of a QueueSplit's spec asks of the worker."""

    generation: int
    routes: list[SessionRoute]
    rejected: list[Rejection]
    hand_back: bool


def split_routes(obj: Mapping[str, Any]) -> SplitRoutes:
    """The routes of a QueueSplit object (a JSON dict), in sequence order.

    ``QueueSplitError`` if the object is not a valid QueueSplit; a route whose filter
    does not compile, or whose sequence another route has, is rejected (see
    :class:`Rejection`), not an error. With ``spec.handBack`` there are no routes.
    """
    meta = obj.get("metadata") or {}
    what = f"QueueSplit {meta.get('namespace', '?')}/{meta.get('name', '?')}"
    try:
        split = QueueSplit.model_validate(dict(obj))
    except ValidationError as e:
        raise QueueSplitError(f"{what} is not a valid QueueSplit: {e}") from None
    generation = meta.get("generation")
    generation = generation if type(generation) is int else 0
    if split.spec.hand_back:
        return SplitRoutes(generation, [], [], hand_back=True)
    routes: list[SessionRoute] = []
    rejected: list[Rejection] = []
    sequences: dict[int, str] = {}
    for route in sorted(split.spec.routes or (), key=lambda r: (r.sequence, r.session)):
        if route.sequence in sequences:
            rejected.append(
                Rejection(
                    route.session,
                    f"{what} route {route.session!r} shares sequence {route.sequence} "
                    f"with route {sequences[route.sequence]!r}",
                )
            )
            continue
        spec = FilterSpec(
            message_filter=route.message_filter or {},
            jq_filter=route.jq_filter,
            mode=route.mode,
        )
        try:
            flt = compile_filter(spec, where=f"{what} route {route.session!r} messageFilter")
        except FilterError as e:
            rejected.append(Rejection(route.session, str(e)))
            continue
        sequences[route.sequence] = route.session
        routes.append(SessionRoute(route.session, route.sequence, flt, route.destination))
    return SplitRoutes(generation, routes, rejected, hand_back=False)


def _deleting(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


class QueueSplitSource:
    """Sessions from one QueueSplit object (see the module docstring)."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        *,
        on_deleted: Callable[[], object] | None = None,
        backoff: float = BACKOFF_FIRST,
        retry_for: float | None = 300.0,
        report_interval: float = REPORT_INTERVAL,
        counters: CountersFn | None = None,
    ) -> None:
        self.kube = kube
        self.objects = kube.objects(QueueSplit.RESOURCE, namespace)
        self.namespace = namespace
        self.name = name
        self.on_deleted = on_deleted
        self.backoff = backoff
        self.retry_for = retry_for
        self.what = f"QueueSplit {namespace}/{name}"
        self.rejected: list[Rejection] = []
        """The routes left out of the generation read last."""
        self.applied_generation: int | None = None
        """The generation the worker uses (written to the status once acknowledged)."""
        self._opened: SplitRoutes | None = None
        self._resource_version: str | None = None
        self._forwarded: set[str] = set()
        self.report_interval = report_interval
        self.counters = counters
        """Called at each status write for ``status.counters`` (None: not written)."""
        self.hand_back = False
        """``spec.handBack`` as ``open`` read it (a hand-back to begin or resume)."""
        self._ended: dict[str, float] = {}  # ref -> when it ended (monotonic), oldest first
        self._hand_back_status: dict[str, Any] | None = None
        self._active: int | None = None
        self._routed: set[str] = set()  # refs of the routes the worker uses
        #: Session refs by destination (routes seen, status.temporaryResources): an end the
        #: engine names by its queue/topic (a Kafka hand-back file's) is reported by ref.
        self._refs: dict[str, str] = {}
        self._changed = asyncio.Event()  # something to write at once
        self._written = 0  # status writes that succeeded

    # --- start-up -------------------------------------------------------------------

    async def open(self) -> list[SessionRoute]:
        """Read the object once; its routes. ``QueueSplitError`` if missing or invalid."""
        try:
            obj = await self.objects.get(self.name)
        except NotFoundError:
            raise QueueSplitError(
                f"{self.what} does not exist; the operator creates it before the worker"
            ) from None
        if _deleting(obj):
            raise QueueSplitError(f"{self.what} is being deleted; nothing to split")
        read = split_routes(obj)
        self._note(read)
        self._opened = read
        self.hand_back = read.hand_back
        self._use(read.routes)
        for resource in (obj.get("status") or {}).get("temporaryResources") or []:
            if isinstance(resource, dict) and isinstance(resource.get("session"), str):
                for key in ("name", "url"):
                    if isinstance(resource.get(key), str):
                        self._refs[resource[key]] = resource["session"]
        ended = ((obj.get("status") or {}).get("endedSessions")) or []
        for ref in ended:
            if isinstance(ref, str) and ref not in self._routed:
                self._ended.setdefault(ref, 0.0)
        self._resource_version = str(obj["metadata"].get("resourceVersion", "")) or None
        return read.routes

    def load(self) -> list[SessionRoute]:
        """The routes ``open`` read (``open`` must have been awaited first)."""
        if self._opened is None:
            raise QueueSplitError(f"{self.what}: await open() before load()")
        return self._opened.routes

    # --- following changes ----------------------------------------------------------

    async def watch(self, apply: Apply, done: asyncio.Event) -> None:
        if self._opened is None:
            await self.open()
        assert self._opened is not None
        seen = self._opened.generation  # the generation read last
        unacked: int | None = seen  # the worker uses it; the status does not say so yet
        pending: SplitRoutes | None = None  # read, not accepted yet
        delay = self.backoff
        refused = False  # ``pending`` was refused before (logged once)
        events: asyncio.Queue[WatchEvent | BaseException | None] = asyncio.Queue()

        async def read_events() -> None:
            stream = self.objects.watch(
                resource_version=self._resource_version,
                field_selector=f"metadata.name={self.name}",
                retry_for=self.retry_for,
            )
            try:
                async with stream:
                    async for event in stream:
                        await events.put(event)
            except Exception as e:
                await events.put(e)

        async def on_done() -> None:
            await done.wait()
            await events.put(None)

        tasks = [
            asyncio.create_task(read_events(), name=f"watch {self.what}"),
            asyncio.create_task(on_done(), name="sessions done"),
        ]
        try:
            while not done.is_set():
                if unacked is not None and await self._acknowledge(unacked):
                    unacked = None
                if pending is not None:
                    if await _offer(apply, pending.routes):
                        self.applied_generation = pending.generation
                        self._use(pending.routes)
                        unacked, pending = pending.generation, None
                        delay, refused = self.backoff, False
                        continue  # acknowledge at once
                    if not refused:
                        refused = True
                        log.info("sessions refused, offered again later", split=self.what)
                waiting = pending is not None or unacked is not None
                try:
                    async with asyncio.timeout(delay if waiting else None):
                        item = await events.get()
                except TimeoutError:
                    delay = min(delay * 2, BACKOFF_MAX)
                    continue
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                if item.type == "DELETED" or _deleting(item.object):
                    log.warning(
                        "QueueSplit deleted: the sessions watch ends, the worker stops",
                        split=self.what,
                    )
                    if self.on_deleted is not None:
                        self.on_deleted()
                    return
                generation = item.object["metadata"].get("generation")
                if generation == seen:
                    continue  # a status-only change (ours included)
                seen = generation
                try:
                    read = split_routes(item.object)
                except QueueSplitError as e:
                    log.warning("QueueSplit unusable, keeping the current sessions", error=str(e))
                    continue
                self._note(read)
                log.info(
                    "sessions changed",
                    split=self.what,
                    generation=read.generation,
                    sessions=[r.session_id for r in read.routes],
                    hand_back=read.hand_back,
                )
                pending, delay, refused = read, self.backoff, False
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _note(self, read: SplitRoutes) -> None:
        self.rejected = read.rejected
        for rejection in read.rejected:
            log.warning(
                "route rejected; the other sessions are kept",
                split=self.what,
                session=rejection.session,
                generation=read.generation,
                error=rejection.error,
            )

    async def _acknowledge(self, generation: int) -> bool:
        """Write ``status.appliedGeneration``; False (logged) if the write failed."""
        try:
            await self.objects.patch_status(self.name, {"appliedGeneration": generation})
        except NotFoundError:
            return True  # deleted: the watch sees it next
        except RegistryError as e:
            log.warning("cannot acknowledge the routes yet", split=self.what, error=str(e))
            return False
        log.info("routes acknowledged", split=self.what, generation=generation)
        return True

    # --- the worker's progress in the status ------------------------------------------

    def _use(self, routes: list[SessionRoute]) -> None:
        """The worker routes by ``routes`` now: a ref routed again is no longer ended."""
        self._routed = {r.session_id for r in routes}
        self._refs.update({r.destination: r.session_id for r in routes})
        for ref in self._routed & set(self._ended):
            del self._ended[ref]
        if self._active != len(routes):
            self._active = len(routes)
            self._changed.set()

    def session_ended(self, ref: str) -> None:
        """A session's end finished (the engine's ``on_session_ended``: a session ref, or
        the queue/topic of an end resumed from the engine's own record); never blocks."""
        ref = ref if _SESSION_REF.match(ref) else self._refs.get(ref, ref)
        if not _SESSION_REF.match(ref):
            log.warning(
                "ended session is not a session ref (namespace/name); not reported",
                split=self.what,
                session=ref,
            )
            return
        if ref in self._routed:
            return  # routed again meanwhile: its end is not what the status should say
        self._ended.pop(ref, None)
        self._ended[ref] = time.monotonic()
        while len(self._ended) > MAX_ENDED:
            del self._ended[next(iter(self._ended))]
        log.info("session end reported", split=self.what, session=ref)
        self._changed.set()

    def hand_back_progress(self, phase: HandBackPhase, remaining: int) -> None:
        """The hand-back's progress (the engine's ``on_hand_back``); never blocks. A new
        phase is written at once; a new ``remaining`` with the next periodic write."""
        status = {"phase": phase, "remaining": max(int(remaining), 0)}
        if status == self._hand_back_status:
            return
        new_phase = (self._hand_back_status or {}).get("phase") != phase
        self._hand_back_status = status
        self._active = 0  # a hand-back runs once no session is left
        if new_phase:
            log.info("hand-back progress", split=self.what, **status)
            self._changed.set()

    @property
    def ended_sessions(self) -> list[str]:
        """The refs the next write puts in ``status.endedSessions`` (oldest end first)."""
        return list(self._ended)

    @property
    def handed_back(self) -> bool:
        """The worker reported ``handBack.phase: Done``."""
        return (self._hand_back_status or {}).get("phase") == "Done"

    def _status(self, current: Mapping[str, Any]) -> dict[str, Any]:
        """What to merge into ``current`` (the status read now)."""
        ended = dict(self._ended)
        for ref in current.get("endedSessions") or []:  # other replicas' (and older) ends
            if isinstance(ref, str) and ref not in self._routed:
                ended.setdefault(ref, 0.0)
        refs = sorted(ended, key=lambda r: ended[r])[-MAX_ENDED:]
        body: dict[str, Any] = {"endedSessions": sorted(refs)}
        if self._active is not None:
            body["activeSessions"] = self._active
        if self._hand_back_status is not None:
            body["handBack"] = dict(self._hand_back_status)
        if self.counters is not None:
            body["counters"] = self._counters_body(self.counters())
        return body

    def _counters_body(self, counters: SplitCounters | Mapping[str, Any]) -> dict[str, Any]:
        model = (
            counters
            if isinstance(counters, SplitCounters)
            else SplitCounters.model_validate(dict(counters))
        )
        body: dict[str, Any] = model.model_dump(by_alias=True, mode="json", exclude_none=True)
        forwarded = dict(body.get("forwarded") or {})
        gone = self._forwarded - set(forwarded)
        if forwarded or gone:
            body["forwarded"] = {**forwarded, **dict.fromkeys(gone)}
        return body

    async def write_status(self) -> None:
        """One guarded write of the worker's progress (read, merge-patch with the
        resourceVersion read, a 409 reads again). Raises ``RegistryError`` if it failed."""
        for _ in range(8):
            obj = await self.objects.get(self.name)
            current = obj.get("status") or {}
            body = self._status(current)
            patch = {
                "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                "status": body,
            }
            try:
                await self.objects.patch(self.name, patch, "merge", subresource="status")
            except ConflictError:
                continue
            forwarded = (body.get("counters") or {}).get("forwarded") or {}
            if "counters" in body:
                self._forwarded = {k for k, v in forwarded.items() if v is not None}
            self._written += 1
            return
        raise ConflictError(f"{self.what}: the status kept changing under the worker's writes")

    async def _write_retrying(self, deadline: float | None) -> bool:
        """``write_status`` retried with backoff until it works or ``deadline`` passes."""
        delay = self.backoff
        while True:
            try:
                await self.write_status()
            except NotFoundError:
                return False  # deleted: nobody reads the status any more
            except RegistryError as e:
                log.warning("cannot write the worker's status yet", split=self.what, error=str(e))
            else:
                return True
            if deadline is not None and time.monotonic() + delay > deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def run_reports(self, done: asyncio.Event) -> None:
        """Write the status after each change and every ``report_interval`` s until ``done``."""
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.report_interval):
                    await self._changed.wait()
            self._changed.clear()
            if done.is_set():
                return
            await self._write_retrying(None)

    async def final_report(self) -> bool:
        """The write at exit, retried for a bounded time (longer once handed back); True if
        it was written."""
        bound = FINAL_REPORT_DONE if self.handed_back else FINAL_REPORT_STOPPED
        try:
            async with asyncio.timeout(bound):  # a write that hangs is cut at the bound too
                return await self._write_retrying(time.monotonic() + bound)
        except TimeoutError:
            log.warning("the worker's last status was not written", split=self.what)
            return False

    # --- counters -------------------------------------------------------------------

    async def report(self, counters: SplitCounters | Mapping[str, Any]) -> Obj:
        """Merge ``counters`` into ``status.counters``; ``forwarded`` is replaced as a whole
        (sessions reported before and absent now are removed)."""
        body = self._counters_body(counters)
        result = await self.objects.patch_status(self.name, {"counters": body})
        self._forwarded = {k for k, v in (body.get("forwarded") or {}).items() if v is not None}
        return result


# --- wiring ---------------------------------------------------------------------------


def parse_split_ref(text: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` of a QueueSplit (``--split``); ``UsageError`` otherwise."""
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise UsageError(f"--split {text!r} must look like NAMESPACE/NAME (a QueueSplit)")
    return namespace, name


@contextlib.asynccontextmanager
async def open_split_source(
    ref: str,
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    report_interval: float = REPORT_INTERVAL,
) -> AsyncIterator[QueueSplitSource]:
    """The source of the QueueSplit ``NAMESPACE/NAME``, opened (``load`` works); its
    Kubernetes client (kubeconfig if named, else in-cluster in a pod) closes on exit."""
    namespace, name = parse_split_ref(ref)
    async with Kube.connect(kubeconfig, context) as kube:
        source = QueueSplitSource(kube, namespace, name, report_interval=report_interval)
        await source.open()
        yield source


@contextlib.asynccontextmanager
async def open_session_source(
    split: str | None,
    sessions_file: Path | None,
    destination: str,
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    report_interval: float = REPORT_INTERVAL,
) -> AsyncIterator[SessionSource]:
    """A worker process's session source: its QueueSplit (``--split``), else its sessions
    file (``--sessions-file``, entries naming their ``destination`` field)."""
    if split is not None:
        async with open_split_source(
            split, kubeconfig, context, report_interval=report_interval
        ) as source:
            yield source
        return
    assert sessions_file is not None
    yield FileSessionSource(sessions_file, destination)
