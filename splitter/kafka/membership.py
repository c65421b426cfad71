"""A worker's group membership across crashes: the member file, dead members removed.

A worker given a ``member_file`` records its group member id there after
every join (:func:`record_member`, an atomic replace). A worker restarted
after a crash (SIGKILL, OOM) finds its dead predecessor's id there
(:func:`recorded_member`) and makes it leave the group before joining
(:func:`remove_member`), so the partitions move at once instead of after a
session timeout (and on noida-db 0.2, which never expires a dead member once
another joins, at all). The file must belong to one replica only (a pod's
``emptyDir``): a live member named in it would be removed too.
"""

from __future__ import annotations

import os
from pathlib import Path

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
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(member)
    os.replace(partial, path)


async def remove_member(clients: KafkaClients, group_id: str, member: str) -> bool:
    """Make ``member`` leave ``group_id`` on its behalf; False if the broker did not know it."""
    async with clients.admin() as admin:
        return await admin.remove_member(group_id, member)
