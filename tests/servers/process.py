"""Run a real server as a child process: free port, readiness probe, log file, stop.

Every server fixture (SQS, Kafka, Kubernetes API) is built on
:class:`ManagedProcess`. Logs go to ``.artifacts/servers/<name>.log`` (or
``$PYMIRROR_TEST_ARTIFACTS/<name>.log``) and are kept, so a failing CI run
shows what the server said.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PYMIRROR_TEST_ARTIFACTS", REPO / ".artifacts" / "servers"))
CACHE = Path(os.environ.get("PYMIRROR_CACHE", Path.home() / ".cache" / "pymirror"))


class ServerError(RuntimeError):
    """A test server could not be started; the message names it and says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class ManagedProcess:
    """One server child process with its own process group.

    ``ready`` is polled until it returns True or ``timeout`` seconds pass; a
    process that exits early or never becomes ready raises ``ServerError``
    with the tail of its log.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        ready: Callable[[], bool],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 60.0,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.ready = ready
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.timeout = timeout
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.owner = os.getpid()  # the test process; recorded next to the server's pid

    def start(self) -> ManagedProcess:
        log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        except OSError as e:
            raise ServerError(f"{self.name}: cannot run {self.argv[0]}: {e}") from e
        finally:
            log.close()
        self._record_pid()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.pid_path.unlink(missing_ok=True)
                raise ServerError(
                    f"{self.name} exited with {self.proc.returncode} before it was ready; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self.ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise ServerError(
            f"{self.name} not ready after {self.timeout:.0f} s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Signal the whole process group, wait, then SIGKILL what is left."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self._stop_group()
        finally:
            self.pid_path.unlink(missing_ok=True)

    def _stop_group(self) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, self.stop_signal)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    @property
    def pid_path(self) -> Path:
        return self.log_path.with_name(f"{self.name}.{self.owner}.pid")

    def _record_pid(self) -> None:
        """``<name>.<owner>.pid`` next to the log: the server's process group and the test process
        that owns it, so :func:`reap_orphans` can stop it if that test process is killed."""
        assert self.proc is not None
        self.pid_path.write_text(f"{self.proc.pid} {self.owner} {self.argv[0]}\n")

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(directory: Path = ARTIFACTS) -> list[str]:
    """Stop servers left behind by a test process that was killed before its teardown.

    Reads the ``*.pid`` files :class:`ManagedProcess` writes; a server is stopped (SIGKILL to
    its process group) only when the test process that started it is gone and the group's
    leader still runs the recorded program (pids get reused). Concurrent test sessions are
    left alone. Returns one line per server stopped.
    """
    reaped: list[str] = []
    for pid_file in sorted(directory.glob("*.pid")):
        try:
            pgid_text, owner_text, program = pid_file.read_text().split(maxsplit=2)
            pgid, owner = int(pgid_text), int(owner_text)
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        try:
            leader = (Path("/proc") / str(pgid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            leader = []
        if program.strip().encode() in leader[:2]:  # [interpreter, script] for scripts
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            name = pid_file.name.removesuffix(f".{owner}.pid")
            reaped.append(f"{name} (pid {pgid}, left by dead test process {owner})")
        pid_file.unlink(missing_ok=True)
    return reaped
