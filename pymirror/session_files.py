"""The file session source: active sessions of one split, as a JSON list, watched for changes.

The standalone workers (``pymirror worker sqs|kafka --sessions-file F``) and the
demo read sessions from a file; the operator feeds the same
``set_routes`` from Kubernetes instead. The file holds::

    [{"id": "alice", "sequence": 1, "destination": "<queue URL or topic>",
      "message_filter": {"user": "^alice$"}, "jq_filter": null, "queue_mode": "steal"}]

(``queue`` or ``topic`` are accepted for ``destination``). Every filter is
compiled when the file is read, so a bad regex or jq program is reported
with the session's id before anything changes. A file that is being
rewritten and does not parse keeps the current sessions (logged).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from pymirror.errors import UsageError
from splitter.errors import FilterError
from splitter.filters import FilterSpec, compile_filter
from splitter.routing import SessionRoute

log = structlog.get_logger()

#: Seconds between two looks at the sessions file.
POLL = 0.25
_KNOWN = {"id", "sequence", "destination", "queue", "topic", "message_filter", "jq_filter"}
_KNOWN |= {"queue_mode"}


def parse_routes(entries: Any, where: str) -> list[SessionRoute]:
    """Sessions (already JSON-decoded) as routes; ``UsageError``/``FilterError`` name the entry."""
    if not isinstance(entries, list):
        raise UsageError(f"{where} must hold a JSON list of sessions")
    routes = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise UsageError(f"{where}[{n}] must be an object")
        unknown = sorted(set(entry) - _KNOWN)
        if unknown:
            raise UsageError(f"{where}[{n}]: unknown key(s) {', '.join(unknown)}")
        destination = entry.get("destination", entry.get("queue", entry.get("topic")))
        if "id" not in entry or "sequence" not in entry or not destination:
            raise UsageError(f"{where}[{n}] needs id, sequence and destination")
        spec = FilterSpec(
            message_filter=entry.get("message_filter") or {},
            jq_filter=entry.get("jq_filter"),
            mode=entry.get("queue_mode", "steal"),
        )
        flt = compile_filter(spec, where=f"session {entry['id']!r}")
        routes.append(SessionRoute(str(entry["id"]), int(entry["sequence"]), flt, destination))
    return routes


def load_routes(path: Path) -> list[SessionRoute]:
    """The sessions in ``path`` (an absent or empty file means no sessions)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise UsageError(f"cannot read sessions file {path}: {e}") from e
    try:
        entries = json.loads(text or "[]")
    except ValueError as e:
        raise UsageError(f"sessions file {path} is not JSON: {e}") from e
    return parse_routes(entries, f"sessions file {path}")


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


async def watch_routes(
    path: Path,
    apply: Callable[[list[SessionRoute]], None],
    done: asyncio.Event,
    *,
    poll: float = POLL,
) -> None:
    """Call ``apply`` with the new sessions whenever ``path`` changes, until ``done``."""
    seen = _mtime(path)
    while not done.is_set():
        await asyncio.sleep(poll)
        mtime = _mtime(path)
        if mtime is None or mtime == seen:
            continue
        seen = mtime
        try:
            routes = load_routes(path)
        except (UsageError, FilterError) as e:  # half-written or bad: keep the current ones
            log.warning("sessions file unusable, keeping current sessions", error=str(e))
            continue
        apply(routes)
