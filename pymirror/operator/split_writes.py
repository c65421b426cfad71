"""Writes to QueueSplits, one at a time per object, batched (the operator's one writer).

Every join and leave of a split's sessions writes the one QueueSplit: its ``spec``
(routes, fallback, handBack) and its ``status`` (temporary resources, workload state,
worker). Written each on its own, concurrent reconciles of one split's sessions race
on its resourceVersion: each 409 reads again, and with many sessions at once a write
could still conflict after ``attempts`` tries. :class:`SplitWriter` serializes them per
object (spec and status writes too: the resourceVersion a spec write is guarded by
moves with every status write, so 32 reconciles writing records made the route writes
conflict 8 times in a row), and folds every change of one kind that waits while a
write is under way into the next write of that kind: one read, each change applied in
turn to what the earlier ones made, one write guarded by the resourceVersion read (a
409, now only from the split worker's own status writes, reads and applies them all
again).

``await writer.update(name, mutate)`` (the whole object, like ``Objects.update``:
``mutate`` gets a copy, returns it changed or None) and ``await writer.status(name,
change)`` (``change`` gets a copy, returns a status merge-patch body or None) return the
object as written (or as read when nothing changed). A change that raises fails only its
own caller; an API error fails every caller of that write. A caller cancelled while
waiting takes its change back out; one cancelled while its batch is written leaves the
others' changes to the next writer.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping
from typing import Any, Literal

from registry.errors import ConflictError
from registry.objects import Obj, Objects

Kind = Literal["spec", "status"]
Change = Callable[[Obj], Obj | None]
_Item = tuple[Change, "asyncio.Future[Obj]"]


def merged(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``target`` with the JSON merge patch ``patch`` applied (RFC 7386: objects merge,
    null deletes, anything else replaces)."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping):
            below = out.get(key)
            out[key] = merged(below if isinstance(below, Mapping) else {}, value)
        else:
            out[key] = value
    return out


def composed(first: Mapping[str, Any], then: Mapping[str, Any]) -> dict[str, Any]:
    """One merge patch doing ``first`` then ``then`` (nulls kept: they delete)."""
    out = dict(first)
    for key, value in then.items():
        before = out.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            out[key] = composed(before, value)
        else:
            out[key] = value
    return out


class SplitWriter:
    """Serialized, batched writes to the objects of ``objects`` (see the module docstring)."""

    def __init__(self, objects: Objects, attempts: int) -> None:
        self.objects = objects
        self.attempts = max(attempts, 1)
        self._locks: dict[str, asyncio.Lock] = {}
        """One per object, for both kinds."""
        self._pending: dict[tuple[str, Kind], list[_Item]] = {}
        self._users: dict[str, int] = {}
        self.writes = 0
        """Writes sent (for tests and logs)."""

    async def update(self, name: str, mutate: Change) -> Obj:
        return await self._submit(name, "spec", mutate)

    async def status(self, name: str, change: Change) -> Obj:
        return await self._submit(name, "status", change)

    async def _submit(self, name: str, kind: Kind, change: Change) -> Obj:
        key = (name, kind)
        future: asyncio.Future[Obj] = asyncio.get_running_loop().create_future()
        item: _Item = (change, future)
        self._pending.setdefault(key, []).append(item)
        lock = self._locks.setdefault(name, asyncio.Lock())
        self._users[name] = self._users.get(name, 0) + 1
        try:
            async with lock:
                if not future.done():
                    batch = self._pending.pop(key, [])
                    try:
                        await self._write(name, kind, batch)
                    except BaseException:
                        rest = [i for i in batch if i is not item and not i[1].done()]
                        if rest:
                            self._pending[key] = [*rest, *self._pending.get(key, [])]
                        raise
        except asyncio.CancelledError:
            waiting = self._pending.get(key)
            if waiting is not None and item in waiting:
                waiting.remove(item)
            future.cancel()
            raise
        finally:
            self._users[name] -= 1
            if not self._users[name]:  # the last caller for this object: forget it
                del self._users[name], self._locks[name]
                for other in ("spec", "status"):
                    self._pending.pop((name, other), None)
        return future.result()

    async def _write(self, name: str, kind: Kind, batch: list[_Item]) -> None:
        try:
            written = await self._attempts(name, kind, batch)
        except Exception as e:
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(written)

    async def _attempts(self, name: str, kind: Kind, batch: list[_Item]) -> Obj:
        for _ in range(self.attempts):
            current = await self.objects.get(name)
            after: Obj = current
            body: Obj | None = None  # status: the composed merge patch; spec: the new object
            for change, future in batch:
                if future.done():
                    continue
                try:
                    out = change(copy.deepcopy(after))
                except Exception as e:
                    future.set_exception(e)
                    continue
                if out is None:
                    continue
                if kind == "spec":
                    after = body = out
                else:
                    after = {**after, "status": merged(after.get("status") or {}, out)}
                    body = out if body is None else composed(body, out)
            if body is None:
                return current
            try:
                self.writes += 1
                return await self._send(name, kind, current, body)
            except ConflictError:
                continue
        raise ConflictError(
            f"QueueSplit {self.objects.where}/{name}: the {kind} kept changing; still "
            f"conflicting after {self.attempts} writes"
        )

    async def _send(self, name: str, kind: Kind, current: Obj, body: Obj) -> Obj:
        version = current["metadata"]["resourceVersion"]
        if kind == "status":
            patch = {"metadata": {"resourceVersion": version}, "status": body}
            written: Obj = await self.objects.patch(name, patch, "merge", subresource="status")
            return written
        meta = body.setdefault("metadata", {})
        meta["name"] = name
        meta["resourceVersion"] = version
        replaced: Obj = await self.objects.replace(body)
        return replaced
