"""A watch that survives its connection: resumes from the last resourceVersion, re-lists on 410.

``Watch`` is an async iterator of ``WatchEvent`` (ADDED, MODIFIED, DELETED):

* without a starting ``resource_version`` it lists first and yields ADDED for
  every object, then the changes after that list;
* a connection that ends (the server's ``timeoutSeconds``) or breaks (reset,
  refused while the server restarts, 5xx) is reopened from the last
  resourceVersion seen (bookmarks included), so no change is lost or repeated;
  failures back off exponentially (0.1 s doubling to 5 s) and give up with
  ``UnavailableError`` after ``retry_for`` seconds of failing in a row;
* a 410 Gone (that resourceVersion is no longer kept) re-lists and yields the
  difference with what the watch has seen, keyed by (namespace, name) so a watch of
  every namespace (``kube.objects(resource, None).watch()``) never mixes up objects of
  the same name: ADDED for new keys, MODIFIED for a changed resourceVersion, DELETED
  (with the last object seen) for keys gone;
* any other error (403, 404...) ends the iteration with that registry error.

Each connection is read in its own daemon thread (a blocked read holds no slot
of the request pool); ``aclose`` (or leaving ``async with``) shuts the socket.
``reconnects`` and ``relists`` count what happened, for logs and tests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from registry.api_status import error_from_status
from registry.errors import GoneError, RegistryError, UnavailableError

if TYPE_CHECKING:
    from registry.kube import LineStream
    from registry.objects import Objects

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
_EVENT_TYPES: tuple[EventType, ...] = ("ADDED", "MODIFIED", "DELETED")
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
ObjectKey = tuple[str, str]
"""``(namespace, name)``: what identifies an object in a watch of every namespace."""


def object_key(obj: dict[str, Any]) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name", "")))


@dataclass(frozen=True)
class WatchEvent:
    type: EventType
    object: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.object["metadata"]["name"])

    @property
    def namespace(self) -> str:
        """The object's namespace ("" for a cluster-scoped one)."""
        return str(self.object["metadata"].get("namespace") or "")

    @property
    def key(self) -> ObjectKey:
        return (self.namespace, self.name)

    @property
    def resource_version(self) -> str:
        return str(self.object["metadata"].get("resourceVersion", ""))


class Watch:
    """Changes of one resource in one namespace, or in all (see the module docstring)."""

    def __init__(
        self,
        objects: Objects,
        *,
        resource_version: str | None,
        selectors: list[tuple[str, str]],
        timeout_seconds: int,
        retry_for: float | None,
    ) -> None:
        self.objects = objects
        self.resource_version = resource_version
        """The last resourceVersion seen; the next connection starts from it."""
        self.reconnects = 0
        self.relists = 0
        self._selectors = selectors
        self._timeout_seconds = timeout_seconds
        self._retry_for = retry_for
        self._known: dict[ObjectKey, dict[str, Any]] = {}
        self._events = self._run()

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self) -> AsyncGenerator[WatchEvent, None]:
        need_list = self.resource_version is None
        failing_since: float | None = None
        failures = 0
        while True:
            healthy = False  # this connection delivered an event, or ended cleanly
            try:
                if need_list:
                    events = await self._relist()
                    need_list = False
                    for listed in events:
                        yield listed
                async for doc in self._connection():
                    if doc is None:  # connected
                        continue
                    event = self._apply(doc)  # raises on an ERROR event
                    healthy = True
                    if event is not None:
                        yield event
                healthy = True  # the server's timeoutSeconds: reconnect at once
            except GoneError:
                need_list = True
                self.relists += 1
                continue
            except RegistryError as e:
                if not e.retriable:
                    raise
                if healthy:
                    failing_since, failures = None, 0
                now = time.monotonic()
                failing_since = failing_since if failing_since is not None else now
                if self._retry_for is not None and now - failing_since > self._retry_for:
                    raise UnavailableError(
                        f"{e} (watch gave up after {self._retry_for:g} s of failures)",
                        status=getattr(e, "status", None),
                    ) from e
                failures += 1
                self.reconnects += 1
                await asyncio.sleep(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1)))
                continue
            failing_since, failures = None, 0
            self.reconnects += 1

    def _apply(self, doc: dict[str, Any]) -> WatchEvent | None:
        kind, obj = doc.get("type"), doc.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            raise error_from_status(
                code if isinstance(code, int) else None,
                json.dumps(obj),
                what=f"watch {self.objects.resource} {self.objects.where}",
            )
        meta = obj.get("metadata") or {}
        version = meta.get("resourceVersion")
        if version:
            self.resource_version = str(version)
        if kind not in _EVENT_TYPES:  # BOOKMARK (only moves the resourceVersion on)
            return None
        key = object_key(obj)
        if kind == "DELETED":
            self._known.pop(key, None)
        else:
            self._known[key] = obj
        return WatchEvent(kind, obj)

    async def _relist(self) -> list[WatchEvent]:
        listed = await self.objects.list(
            label_selector=dict(self._selectors).get("labelSelector"),
            field_selector=dict(self._selectors).get("fieldSelector"),
        )
        now = {object_key(o): o for o in listed.items}
        events: list[WatchEvent] = []
        for key, obj in now.items():
            before = self._known.get(key)
            if before is None:
                events.append(WatchEvent("ADDED", obj))
            elif before["metadata"].get("resourceVersion") != obj["metadata"].get(
                "resourceVersion"
            ):
                events.append(WatchEvent("MODIFIED", obj))
        events += [WatchEvent("DELETED", o) for k, o in self._known.items() if k not in now]
        self._known = now
        self.resource_version = listed.resource_version
        return events

    async def _connection(self) -> AsyncGenerator[dict[str, Any] | None, None]:
        """One watch connection: None once connected, then each decoded event."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=64)
        stop = threading.Event()
        streams: list[LineStream] = []
        query = [
            ("watch", "1"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self._timeout_seconds)),
            ("resourceVersion", self.resource_version or ""),
            *self._selectors,
        ]
        read_timeout = self._timeout_seconds + 30.0  # the server ends it before that

        def put(item: tuple[str, Any]) -> bool:
            """Hand ``item`` to the loop (waiting while the queue is full); False if stopped."""
            if stop.is_set():
                return False
            future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            while True:
                try:
                    future.result(timeout=0.5)
                except concurrent.futures.TimeoutError:
                    if stop.is_set():
                        future.cancel()
                        return False
                else:
                    return True

        def pump() -> None:
            try:
                stream = self.objects.open_watch_stream(query, read_timeout)
                streams.append(stream)
                if not put(("open", None)):
                    stream.shutdown()
                    return
                for line in stream:
                    if not put(("line", line)):
                        stream.shutdown()
                        return
                put(("end", None))
            except BaseException as e:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens
                    put(("error", e))

        name = f"watch-{self.objects.resource.plural}"
        threading.Thread(target=pump, name=name, daemon=True).start()
        try:
            while True:
                kind, value = await queue.get()
                if kind == "open":
                    yield None
                elif kind == "line":
                    try:
                        doc = json.loads(value)
                    except ValueError as e:
                        raise UnavailableError(f"watch: a torn event line: {value[:200]!r}") from e
                    yield doc
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            stop.set()
            for stream in streams:
                stream.shutdown()
