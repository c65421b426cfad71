"""Session sources: where a split worker learns the active sessions of its split.

A :class:`SessionSource` gives the sessions once at start-up (``load``) and then
every change (``watch``); the runtime applies each change with the worker's
``set_routes``. :class:`FileSessionSource` reads a JSON file (the standalone
``pymirror worker sqs|kafka --sessions-file F``); the operator's ``QueueSplit``
object is the other source. The file holds::

    [{"id": "alice", "sequence": 1, "queue": "<queue name or URL>",
      "message_filter": {"user": "^alice$"}, "jq_filter": null, "queue_mode": "steal"}]

(``topic`` instead of ``queue`` for Kafka). ``id`` and the destination are
non-empty strings, each used once; ``sequence`` is a JSON integer (not ``1.7``,
not ``true``), each used once; ``message_filter`` is an object of string ->
string. Every filter is compiled when the file is read, so a bad regex or jq
program is reported with the session's id before anything changes.

Only a deliberate, parseable empty list ``[]`` means "no sessions" (and, after
there were some, starts the hand-back). At start-up a missing or empty file is
a ``UsageError``. While the worker runs, a file that is empty, does not parse
or breaks a rule above - a rewrite caught half-way, or a bad edit - keeps the
current sessions; it is logged once per version of the file (its mtime, size
and inode) and re-read on every poll until it is usable. A usable change the
worker refuses (e.g. a session queue that does not exist yet) is offered again
on every poll until it is accepted or the file changes.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
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

#: Applies one change; a False result means it was refused (offered again on the next poll).
Apply = Callable[[list[SessionRoute]], "Awaitable[bool] | bool | None"]
#: What identifies one version of the file: (mtime ns, size, inode).
Version = tuple[int, int, int]


def parse_routes(entries: Any, where: str, destination: str) -> list[SessionRoute]:
    """Sessions (JSON-decoded) as routes; each entry names its queue/topic under the key
    ``destination``. ``UsageError`` / ``FilterError`` name the entry and the field."""
    if not isinstance(entries, list):
        raise UsageError(f"{where} must hold a JSON list ([] for no sessions)")
    known = {*_KEYS, destination}
    routes = []
    ids: dict[str, int] = {}
    sequences: dict[int, str] = {}
    destinations: dict[str, str] = {}
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
        session_id = entry["id"]
        if not isinstance(session_id, str) or not session_id:
            raise UsageError(f"{where}: entry {n} id must be a non-empty string")
        name = f"{where}: session {session_id!r}"
        if session_id in ids:
            raise UsageError(f"{name} is listed twice (entries {ids[session_id]} and {n})")
        ids[session_id] = n
        sequence = entry["sequence"]
        # bool is an int to Python, and int(1.7) == int(1.2): only a JSON integer will do.
        if type(sequence) is not int:
            raise UsageError(f"{name} sequence must be an integer, got {json.dumps(sequence)}")
        if sequence in sequences:
            raise UsageError(
                f"{name} shares sequence {sequence} with session {sequences[sequence]!r}; "
                "every session needs its own place in the order"
            )
        sequences[sequence] = session_id
        target = entry[destination]
        if not isinstance(target, str) or not target:
            raise UsageError(f"{name} {destination} must be a non-empty string")
        if target in destinations:
            raise UsageError(
                f"{name} has the {destination} of session {destinations[target]!r} "
                f"({target!r}); every session needs its own"
            )
        destinations[target] = session_id
        message_filter = entry.get("message_filter", {})
        if not isinstance(message_filter, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in message_filter.items()
        ):
            raise UsageError(
                f"{name} message_filter must be an object of attribute name -> regex "
                f"(strings), got {json.dumps(message_filter)}"
            )
        spec = FilterSpec(
            message_filter=message_filter,
            jq_filter=entry.get("jq_filter"),
            mode=entry.get("queue_mode", "steal"),
        )
        flt = compile_filter(spec, where=f"session {session_id!r} message_filter")
        routes.append(SessionRoute(session_id, sequence, flt, target))
    return routes


def _read(path: Path, destination: str) -> list[SessionRoute]:
    """The sessions in ``path``; an empty file is an error here (``[]`` means none)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(
            f"cannot read sessions file {path}: it does not exist; "
            "write the active sessions there as a JSON list ([] for none)"
        ) from None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read sessions file {path}: {e}") from e
    if not text.strip():
        raise UsageError(
            f"sessions file {path} is empty; write [] for no sessions "
            "(an empty file is taken for a rewrite caught half-way)"
        )
    try:
        entries: Any = json.loads(text)
    except ValueError as e:
        raise UsageError(f"sessions file {path} is not JSON ({e}); fix the file") from e
    return parse_routes(entries, f"sessions file {path}", destination)


def load_routes(path: Path, destination: str) -> list[SessionRoute]:
    """The sessions in ``path`` at start-up: a missing or empty file is a ``UsageError``
    (write ``[]`` for no sessions)."""
    return _read(path, destination)


class SessionSource(Protocol):
    """Active sessions of one split: once at start-up, then every change."""

    def load(self) -> list[SessionRoute]:
        """The sessions now; raises (``UsageError``, ``FilterError``) if they are unusable."""
        ...

    async def watch(self, apply: Apply, done: asyncio.Event) -> None:
        """Call (and await) ``apply`` with the whole new list after each change, one change at
        a time, until ``done``; a change ``apply`` refuses (False) is offered again later."""
        ...


class FileSessionSource:
    """Sessions from a JSON file, re-read when it changes (see the module docstring).

    ``destination`` is the entry key naming each session's queue/topic
    (``queue`` or ``topic``). A change made between ``load`` and the start of
    ``watch`` is not missed: the watch compares with the version ``load`` saw.
    """

    def __init__(self, path: Path, destination: str, *, poll: float = POLL) -> None:
        self.path = path
        self.destination = destination
        self.poll = poll
        self._seen: Version | None = None

    def load(self) -> list[SessionRoute]:
        self._seen = _version(self.path)
        return load_routes(self.path, self.destination)

    async def watch(self, apply: Apply, done: asyncio.Event) -> None:
        await watch_routes(
            self.path, self.destination, apply, done, poll=self.poll, seen=self._seen
        )


def _version(path: Path) -> Version | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


async def _offer(apply: Apply, routes: list[SessionRoute]) -> bool:
    result = apply(routes)
    if inspect.isawaitable(result):
        result = await result
    return result is not False


async def watch_routes(
    path: Path,
    destination: str,
    apply: Apply,
    done: asyncio.Event,
    *,
    poll: float = POLL,
    seen: Version | int | None = None,
) -> None:
    """Call ``apply`` with the new sessions whenever ``path`` changes, until ``done``.

    ``apply`` may be a coroutine function: each call is awaited before the next
    look at the file, so changes apply one at a time, in order; a False result
    offers the same change again on the next poll (unless the file changed).
    ``seen`` is the version of the file already applied; None = the current one."""
    if seen is None or isinstance(seen, int):
        seen = _version(path)
    bad = False  # the version ``seen`` was unusable: read it again on every poll
    logged: Version | None = None
    pending: list[SessionRoute] | None = None  # usable, not accepted yet
    retry = False  # ``pending`` was refused before
    while not done.is_set():
        await asyncio.sleep(poll)
        if done.is_set():
            break
        version = _version(path)
        if version != seen or bad:
            seen = version
            try:
                routes = _read(path, destination)  # a missing file is a UsageError too
            except (UsageError, FilterError) as e:  # half-written or bad: keep the current ones
                bad = True
                if version != logged:
                    logged = version
                    log.warning(
                        "sessions file unusable, keeping the current sessions", error=str(e)
                    )
            else:
                if bad or logged is not None:
                    log.info("sessions file usable again")
                bad, logged = False, None
                pending, retry = routes, False
        if pending is not None:
            routes, pending = pending, None
            if not retry:
                log.info("sessions changed", sessions=[r.session_id for r in routes])
            if not await _offer(apply, routes):
                pending, retry = routes, True  # offered again on the next poll
