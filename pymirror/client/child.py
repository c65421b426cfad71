"""The local COMMAND of ``pymirror exec``: started, signalled, stopped.

``Child.start(command, env)`` runs it with stdin/stdout/stderr inherited. Signals:
``forward_signals()`` makes SIGINT and SIGTERM sent to pymirror reach the child; a
second SIGINT kills it (SIGKILL). When stdin is a terminal the child stays in
pymirror's process group, so the terminal's Ctrl-C already reaches both and a SIGINT is
not sent twice (only the "second Ctrl-C forces" part applies); otherwise it gets its
own process group and every signal is forwarded. ``stop(grace)`` sends SIGTERM, then
SIGKILL after ``grace`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence

from pymirror.errors import UsageError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Child:
    def __init__(self, process: asyncio.subprocess.Process, *, shares_terminal: bool) -> None:
        self.process = process
        self.shares_terminal = shares_terminal
        self.interrupts = 0

    @classmethod
    async def start(cls, command: Sequence[str], env: Mapping[str, str]) -> Child:
        """Start ``command`` (``UsageError`` if it cannot be run)."""
        shares = sys.stdin.isatty()
        try:
            process = await asyncio.create_subprocess_exec(
                *command, env=dict(env), process_group=None if shares else 0
            )
        except OSError as e:
            raise UsageError(f"cannot run {command[0]!r}: {e}; check the command") from e
        return cls(process, shares_terminal=shares)

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signum)

    def on_signal(self, signum: int) -> None:
        """pymirror got ``signum``: pass it on (a second SIGINT kills)."""
        if signum == signal.SIGINT:
            self.interrupts += 1
            if self.interrupts > 1:
                print("pymirror: second interrupt: killing the command", file=sys.stderr)
                self.signal(signal.SIGKILL)
                return
            if self.shares_terminal:
                return  # the terminal sent it to the whole foreground group already
        self.signal(signum)

    @contextlib.contextmanager
    def forward_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in SIGNALS:
            loop.add_signal_handler(signum, self.on_signal, signum)
        try:
            yield
        finally:
            for signum in SIGNALS:
                loop.remove_signal_handler(signum)

    async def wait(self) -> int:
        """The exit code (``128 + N`` when killed by signal N, as a shell reports it)."""
        code = await self.process.wait()
        return 128 - code if code < 0 else code

    async def stop(self, grace: float) -> int:
        """SIGTERM, then SIGKILL after ``grace`` s; the exit code."""
        if self.process.returncode is None:
            self.signal(signal.SIGTERM)
            try:
                return await asyncio.wait_for(self.wait(), grace)
            except TimeoutError:
                self.signal(signal.SIGKILL)
        return await self.wait()


def exit_status_text(code: int) -> str:
    if code > 128 and code - 128 in signal.valid_signals():
        return f"killed by {signal.Signals(code - 128).name}"
    return f"exit code {code}"
