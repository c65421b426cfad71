"""What ``pymirror exec`` shows while a session is Pending: a spinner or plain lines.

``progress_for(stream)`` is a rich spinner carrying the operator's current
``status.message`` when ``stream`` is a terminal, else ``PlainProgress``: one line per
new message (``pymirror: pending: ...``), for logs and CI.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


class PlainProgress:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def pending(self, message: str) -> None:
        self.say(f"pymirror: pending: {message}")

    def done(self) -> None:
        pass

    def say(self, message: str) -> None:
        print(message, file=self.stream, flush=True)


class SpinnerProgress(PlainProgress):
    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        from rich.console import Console

        self.console = Console(file=stream)
        self._status: Any = None

    def pending(self, message: str) -> None:
        text = f"session Pending: {message}"
        if self._status is None:
            self._status = self.console.status(text)
            self._status.start()
        else:
            self._status.update(text)

    def done(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def progress_for(stream: TextIO | None = None) -> PlainProgress:
    stream = sys.stderr if stream is None else stream
    return SpinnerProgress(stream) if stream.isatty() else PlainProgress(stream)
