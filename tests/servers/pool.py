"""Start each server kind at most once per test session, on first use.

A pool remembers failures too: when LocalStack cannot start, every test that
asks for it fails at once with the same message instead of waiting for the
readiness timeout again. A server that died since it was started is reported
by name (``check()`` raises :class:`ServerError`), never restarted silently:
the fixture modules check ``broken()`` before each test that uses a server, so
such a test fails at setup with that message instead of a connection error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from tests.servers.process import ServerError


class Running(Protocol):
    def check(self) -> None: ...

    def stop(self) -> None: ...


R = TypeVar("R", bound=Running)


class ServerPool(Generic[R]):
    """Lazily started servers keyed by kind; ``stop_all()`` at session end."""

    def __init__(self, start: Callable[[str], R]) -> None:
        self._start = start
        self._running: dict[str, R] = {}
        self._failed: dict[str, str] = {}

    def get(self, kind: str) -> R:
        """The running server of this kind, started now if needed; ServerError if broken."""
        if kind in self._failed:
            raise ServerError(self._failed[kind])
        server = self._running.get(kind)
        if server is None:
            try:
                server = self._start(kind)
            except ServerError as e:
                self._failed[kind] = str(e)
                raise
            self._running[kind] = server
            return server
        server.check()
        return server

    def started(self, kind: str) -> R | None:
        """The server of this kind if it was started (alive or not), without starting it."""
        return self._running.get(kind)

    def broken(self, kind: str) -> str | None:
        """Why a started server of this kind is broken now (died, stopped answering), else None.

        None too when it was never started (a failed start is ``get()``'s error to report).
        """
        server = self._running.get(kind)
        if server is None:
            return None
        try:
            server.check()
        except ServerError as e:
            return str(e)
        return None

    def health(self, kind: str) -> str | None:
        """One line on a started server's state (for failure reports); None if never started."""
        if kind not in self._running:
            return None
        return self.broken(kind) or f"{kind} is alive and answering"

    def stop_all(self) -> None:
        errors: list[str] = []
        for kind, server in self._running.items():
            try:
                server.stop()
            except Exception as e:  # keep stopping the others
                errors.append(f"{kind}: {e!r}")
        self._running.clear()
        if errors:
            raise ServerError("could not stop test servers: " + "; ".join(errors))
