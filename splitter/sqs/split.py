"""Which split a worker runs: the identity of one original queue's split.

The tunables (receivers, timeouts, bounds) are not here but in
:class:`~splitter.sqs.settings.SqsSettings`; an :class:`SqsSplit` only says
which queues the worker splits and whether the operator confirms the hand-back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SqsSplit:
    """One original queue split between sessions and the workload's fallback queue."""

    #: URL of the original queue the worker receives from.
    queue_url: str
    #: URL of the fallback queue the workload reads meanwhile.
    fallback_url: str
    #: After the hand-back's drain, wait for ``release_fallback()`` (the operator restored
    #: the workload's env) before deleting the fallback.
    await_release: bool = False

    @property
    def fifo(self) -> bool:
        return self.queue_url.endswith(".fifo")
