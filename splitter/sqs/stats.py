"""Counters of one SQS split worker (exported as Prometheus metrics by the process form)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class SqsWorkerStats:
    """Counters of one worker; the pipeline and the session-end logic count into it."""

    received: int = 0
    forwarded: Counter[str] = field(default_factory=Counter)  # session id or "fallback"
    unmatched: int = 0  # routed by no session's filter (to the fallback only)
    failed: int = 0  # messages whose forward failed: released, delivered again later
    released: int = 0  # messages made visible again (shutdown or failure)
    release_failed: int = 0  # releases that failed: visible when their timeout ends
    deleted: int = 0
    delete_failed: int = 0  # receipt handle expired: the message comes again (duplicate)
    rerouted: int = 0  # leftovers of ended sessions routed again
    returned: int = 0  # fallback leftovers moved back to the original
    send_batches: int = 0
    send_entries: int = 0
    throttled: int = 0
    extended: int = 0  # visibility timeouts restarted for messages held long

    def entries_per_batch(self) -> float:
        return self.send_entries / self.send_batches if self.send_batches else 0.0

    def summary(self) -> dict[str, object]:
        """The figures a worker logs and prints when it stops."""
        return {
            "received": self.received,
            "forwarded": dict(self.forwarded),
            "failed": self.failed,
            "released": self.released,
            "release_failed": self.release_failed,
            "deleted": self.deleted,
            "rerouted": self.rerouted,
            "returned": self.returned,
            "delete_failed": self.delete_failed,
            "entries_per_batch": round(self.entries_per_batch(), 2),
        }
