"""Exponential backoff: the one retry-delay policy of the engine.

    backoff = Backoff(first=0.05, ceiling=2.0)
    while True:
        try:
            return await call()
        except SqsError as e:
            if not e.retriable or backoff.expired:
                raise
            await backoff.sleep()

Delays double from ``first`` up to ``ceiling``; ``reset()`` after a success
starts again at ``first``. ``deadline`` (seconds from creation, or from the
last ``reset()`` when ``restart_deadline`` is set) bounds how long a caller keeps
retrying; ``expired`` tells it to stop. No jitter: a split worker is one
process per queue, there is no herd to spread.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


def exponential(attempt: int, first: float, ceiling: float) -> float:
    """The delay before retry number ``attempt`` (1-based): ``first * 2**(attempt-1)``, capped."""
    if attempt < 1:
        return 0.0
    return float(min(first * 2 ** min(attempt - 1, 62), ceiling))


@dataclass
class Backoff:
    """Growing delays between retries of one operation (see the module docstring)."""

    first: float = 0.05
    ceiling: float = 2.0
    #: Seconds after which ``expired`` is true; None = never.
    deadline: float | None = None
    attempts: int = 0
    _started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def expired(self) -> bool:
        """True once ``deadline`` seconds have passed since creation (or the last reset)."""
        return self.deadline is not None and time.monotonic() - self._started > self.deadline

    def next_delay(self) -> float:
        """Count one more attempt and return the delay to wait before it."""
        self.attempts += 1
        return exponential(self.attempts, self.first, self.ceiling)

    async def sleep(self) -> None:
        """Wait the next delay."""
        await asyncio.sleep(self.next_delay())

    def reset(self) -> None:
        """A success: the next failure waits ``first`` again and the deadline restarts."""
        self.attempts = 0
        self._started = time.monotonic()
