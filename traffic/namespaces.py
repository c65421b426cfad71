"""Running a function inside a Linux network namespace, on a thread of its own.

Python 3.11 has no ``os.setns``; libc's ``setns(2)`` through ctypes moves only
the calling thread, so the work runs on a short-lived thread and the rest of
the process stays where it was. Sockets created there keep their namespace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from traffic.errors import CaptureError, CapturePermissionError

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


def netns_path(name: str) -> Path:
    """``/run/netns/NAME`` for a name made by ``ip netns add``, or the path itself."""
    return Path(name) if "/" in name else NETNS_DIR / name


def run_in_netns(name: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` on a thread that has entered network namespace ``name``; return its result."""
    path = netns_path(name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise CaptureError(f"no network namespace {name!r} (looked for {path})") from e
    except PermissionError as e:
        raise CapturePermissionError(f"cannot open network namespace {path}: run as root") from e
    result: list[T] = []
    failure: list[BaseException] = []

    def enter() -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            if err == 1:  # EPERM
                raise CapturePermissionError(
                    f"entering network namespace {name!r} needs CAP_SYS_ADMIN: run as root"
                )
            raise CaptureError(f"setns({path}) failed: {os.strerror(err)}")

    def enter_and_call() -> None:
        try:
            enter()
            result.append(fn())
        except BaseException as e:  # handed to the caller's thread below
            failure.append(e)

    try:
        thread = threading.Thread(target=enter_and_call, name=f"netns-{name}", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if failure:
        raise failure[0]
    return result[0]
