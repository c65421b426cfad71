"""Process groups the sandbox started: identify them across processes, stop them, reap leftovers.

Every process the sandbox starts (its servers, the local runtime, each
container process of the runtime) leads a process group of its own
(``start_new_session``), so signalling the group reaches whatever it forked.
A :class:`GroupId` is a pid plus the kernel's start time of that process
(``/proc/<pid>/stat`` field 22), so a recycled pid is never mistaken for it;
a zombie counts as gone. :class:`GroupRecords` is a directory with one file
per live group, written by the local runtime, read by ``sandbox down`` to reap
what a killed runtime left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None if it is gone or a zombie."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after the last ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class GroupId:
    """A process-group leader, identified by pid and start time."""

    pid: int
    started: int

    @classmethod
    def of(cls, pid: int) -> GroupId | None:
        started = start_time(pid)
        return None if started is None else cls(pid, started)

    def alive(self) -> bool:
        """The same process still runs (not a zombie, not a recycled pid)."""
        return start_time(self.pid) == self.started

    def group_alive(self) -> bool:
        """Any process of the group is still there (the leader may have exited first)."""
        if self.alive():
            return True
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rfind(")") + 2 :].split()
                if int(fields[2]) == self.pid and fields[0] not in ("Z", "X"):
                    return True
        return False

    def signal(self, sig: int) -> None:
        """Signal the whole group (nothing if it is gone)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self, grace: float, poll: float = 0.05) -> bool:
        """SIGTERM the group, wait up to ``grace`` s for it to end, then SIGKILL what is left.

        For groups that are not this process's children (reaped elsewhere). True when the
        group ended within ``grace``.
        """
        if not self.group_alive():
            return True
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not self.group_alive():
                return True
            time.sleep(poll)
        self.signal(signal.SIGKILL)
        deadline = time.monotonic() + 10.0
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(poll)
        return False


class GroupRecords:
    """A directory of live process groups: ``<pid>.json`` = {"started", "what"}."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def add(self, group: GroupId, what: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{group.pid}.json"
        path.write_text(json.dumps({"started": group.started, "what": what}))

    def remove(self, group: GroupId) -> None:
        (self.directory / f"{group.pid}.json").unlink(missing_ok=True)

    def groups(self) -> list[tuple[GroupId, str]]:
        found = []
        for path in sorted(self.directory.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                data = json.loads(path.read_text())
                found.append((GroupId(int(path.stem), int(data["started"])), str(data["what"])))
        return found

    def reap(self) -> list[str]:
        """SIGKILL every recorded group that still runs; forget all records. What was killed."""
        killed = []
        for group, what in self.groups():
            if group.group_alive():
                group.signal(signal.SIGKILL)
                killed.append(f"{what} (pid {group.pid})")
            self.remove(group)
        return killed
