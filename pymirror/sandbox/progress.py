"""Progress lines of ``pymirror sandbox up|down`` on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``sandbox: [1.2s] message`` lines on stderr."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"sandbox: [{time.monotonic() - self.start:.1f}s] {message}", file=self.out)
        self.out.flush()
