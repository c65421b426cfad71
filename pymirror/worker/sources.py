"""Session sources: where a split worker learns the active sessions of its split.

A :class:`SessionSource` gives the sessions once at start-up (``load``) and then
every change (``watch``); the runtime applies each change with the worker's
``set_routes``. :class:`FileSessionSource` reads a JSON file (the standalone
``pymirror worker sqs|kafka --sessions-file F``); the operator's ``QueueSplit``
object is the other source. The file holds::

    [{"id": "alice", "sequence": 1, "queue": "<queue name or URL>",
      "message_filter": {"user": "^alice$"}, "jq_filter": null, "queue_mode": "steal"}]

(``topic`` instead of ``queue`` for Kafka). Every filter is
compiled when the file is read, so a bad regex or jq program is reported
with the session's id before anything changes. A file that is being
rewritten and does not parse keeps the current sessions (logged).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import structlog

from pymirror.errors import UsageError
from splitter.errors import FilterError
from splitter.filters import FilterSpec, compile_filter
from splitter.routing import SessionRoute

log = structlog.get_logger()

#: Seconds between two looks at the sessions file.
POLL = 0.25
_KEYS = ("id", "sequence", "message_filter", "jq_filter", "queue_mode")


def parse_routes(entries: Any, where: str, destination: str) -> list[SessionRoute]:
    """Sessions (JSON-decoded) as routes; each entry names its queue/topic under the key
    ``destination``. ``UsageError`` / ``FilterError`` name the entry and the field."""
    if not isinstance(entries, list):
        raise UsageError(f"{where} must hold a JSON list")
    known = {*_KEYS, destination}
    routes = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: entry {n} must be a JSON object")
        unknown = sorted(set(entry) - known)
        missing = [k for k in ("id", "sequence", destination) if k not in entry]
        if unknown or missing:
            raise UsageError(
                f"{where}: entry {n} "
                + (f"has unknown keys {unknown}" if unknown else f"lacks {missing}")
                + f"; an entry holds {sorted(known)}"
            )
        try:
            sequence = int(entry["sequence"])
        except (TypeError, ValueError):
            raise UsageError(
                f"{where}: session {entry['id']!r} sequence must be an integer"
            ) from None
        spec = FilterSpec(
            message_filter=entry.get("message_filter") or {},
            jq_filter=entry.get("jq_filter"),
            mode=entry.get("queue_mode", "steal"),
        )
        flt = compile_filter(spec, where=f"session {entry['id']!r} message_filter")
        routes.append(SessionRoute(str(entry["id"]), sequence, flt, str(entry[destination])))
    return routes


def load_routes(path: Path, destination: str) -> list[SessionRoute]:
    """The sessions in ``path`` (an empty file means none; a missing one is an error)."""
    try:
        entries: Any = json.loads(path.read_text() or "[]")
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read sessions file {path}: {e}") from e
    return parse_routes(entries, f"sessions file {path}", destination)


class SessionSource(Protocol):
    """Active sessions of one split: once at start-up, then every change."""

    def load(self) -> list[SessionRoute]:
        """The sessions now; raises (``UsageError``, ``FilterError``) if they are unusable."""
        ...

    async def watch(self, apply: Callable[[list[SessionRoute]], None], done: asyncio.Event) -> None:
        """Call ``apply`` with the whole new list after each change, until ``done``."""
        ...


class FileSessionSource:
    """Sessions from a JSON file, re-read when its mtime changes (see the module docstring).

    ``destination`` is the entry key naming each session's queue/topic
    (``queue`` or ``topic``). A change made between ``load`` and the start of
    ``watch`` is not missed: the watch compares with the mtime ``load`` saw.
    """

    def __init__(self, path: Path, destination: str, *, poll: float = POLL) -> None:
        self.path = path
        self.destination = destination
        self.poll = poll
        self._seen: int | None = None

    def load(self) -> list[SessionRoute]:
        self._seen = _mtime(self.path)
        return load_routes(self.path, self.destination)

    async def watch(self, apply: Callable[[list[SessionRoute]], None], done: asyncio.Event) -> None:
        await watch_routes(
            self.path, self.destination, apply, done, poll=self.poll, seen=self._seen
        )


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


async def watch_routes(
    path: Path,
    destination: str,
    apply: Callable[[list[SessionRoute]], None],
    done: asyncio.Event,
    *,
    poll: float = POLL,
    seen: int | None = None,
) -> None:
    """Call ``apply`` with the new sessions whenever ``path`` changes, until ``done``.

    ``seen`` is the mtime (ns) of the version already applied; None = the current one."""
    if seen is None:
        seen = _mtime(path)
    while not done.is_set():
        await asyncio.sleep(poll)
        mtime = _mtime(path)
        if mtime is None or mtime == seen:
            continue
        seen = mtime
        try:
            routes = load_routes(path, destination)
        except (UsageError, FilterError) as e:  # half-written or bad: keep the current ones
            log.warning("sessions file unusable, keeping current sessions", error=str(e))
            continue
        log.info("sessions changed", sessions=[r.session_id for r in routes])
        apply(routes)
