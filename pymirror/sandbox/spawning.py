"""Starting a sandbox component: its own process group, its log, waiting until it is ready.

``spawn`` starts one process in a session of its own (it outlives the command),
logging to ``logs/<name>.log``, and waits for its readiness probe; a process that
exits first is ``Exited``, and ``on_free_ports`` retries a server on fresh ports then.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pymirror.sandbox.errors import SandboxError
from pymirror.sandbox.groups import GroupId
from pymirror.sandbox.probes import free_port
from pymirror.sandbox.state import Component


class Exited(SandboxError):
    """The process ended before it was ready (for a server: most often its port was taken)."""


PORT_ATTEMPTS = 3


def on_free_ports(count: int, start: Callable[[list[int]], Component]) -> Component:
    """``start`` on ``count`` free ports; again on fresh ports when the process exited early
    (another process may have bound a port between the check and the server's bind)."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            return start([free_port() for _ in range(count)])
        except Exited:
            if attempt == PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def spawn(
    name: str,
    argv: Sequence[str],
    logs: Path,
    *,
    ready: Callable[[], bool],
    timeout: float,
    env: dict[str, str] | None = None,
    port: int | None = None,
    url: str | None = None,
) -> Component:
    """Start ``argv`` in its own session, logging to ``logs/<name>.log``; wait until ready."""
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as e:
            raise SandboxError(f"{name}: cannot run {argv[0]}: {e}") from e
    group = GroupId.of(proc.pid) or GroupId(proc.pid, -1)
    component = Component(name, proc.pid, group.started, str(log_path), port, url)
    try:
        _wait_ready(component, proc, ready, timeout)
    except BaseException:
        group.stop(5.0)
        proc.wait()
        raise
    return component


def _wait_ready(
    component: Component, proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise _failed(component, f"exited with {proc.returncode} before it was ready", Exited)
        if time.monotonic() > deadline:
            raise _failed(component, f"not ready after {timeout:.0f} s")
        time.sleep(0.1)


def _failed(
    component: Component, message: str, kind: type[SandboxError] = SandboxError
) -> SandboxError:
    tail = _tail(Path(component.log))
    return kind(f"{component.name} {message}; log {component.log}:\n{tail}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
