"""A worker's group membership across crashes: the member file, dead members removed.

A worker given a ``member_file`` records its group member id there after
every join (:func:`record_member`, an atomic replace). A worker restarted
after a crash (SIGKILL, OOM) finds its dead predecessor's id there
(:func:`recorded_member`) and makes it leave the group before joining
(:func:`remove_member`), so the partitions move at once instead of after a
session timeout (and on noida-db 0.2, which never expires a dead member once
another joins, at all). The file must belong to one replica only (a pod's
``emptyDir``): a live member named in it would be removed too.

A worker given a ``hand_back_file`` records there that the last session
ended (:func:`record_hand_back`) - with the session topics whose end was not
finished yet - and removes it once the topic is handed back. A worker that
starts and finds it resumes the hand-back (the sessions list is empty then,
so nothing else would say a hand-back was under way).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from splitter.errors import KafkaError
from splitter.kafka.clients import KafkaClients


def recorded_member(path: Path) -> str | None:
    """The member id recorded in ``path``, or None (no file, or empty)."""
    try:
        member = path.read_text().strip()
    except FileNotFoundError:
        return None
    return member or None


def record_member(path: Path, member: str) -> None:
    """Record ``member`` in ``path``; a reader sees the old id or the new one, never half."""
    _replace(path, member)


def _replace(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(text)
    os.replace(partial, path)


@dataclass(frozen=True)
class HandBack:
    """A hand-back under way: the fallback, and session topics still to end first."""

    fallback: str
    ended_topics: tuple[str, ...] = ()


def record_hand_back(path: Path, state: HandBack) -> None:
    """Record that a hand-back started (atomic, like the member file)."""
    payload = {"fallback": state.fallback, "ended_topics": list(state.ended_topics)}
    _replace(path, json.dumps(payload))


def recorded_hand_back(path: Path) -> HandBack | None:
    """The hand-back recorded in ``path``, or None (no file, or not one of ours)."""
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise KafkaError(
            f"hand-back file {path} is not pymirror's JSON ({e}); remove it if no "
            "hand-back is under way"
        ) from e
    return HandBack(str(payload["fallback"]), tuple(payload.get("ended_topics") or ()))


def clear_hand_back(path: Path) -> None:
    """The hand-back finished: forget it."""
    path.unlink(missing_ok=True)


async def remove_member(clients: KafkaClients, group_id: str, member: str) -> bool:
    """Make ``member`` leave ``group_id`` on its behalf; False if the broker did not know it."""
    async with clients.admin() as admin:
        return await admin.remove_member(group_id, member)
