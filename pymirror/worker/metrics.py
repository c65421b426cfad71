"""Prometheus metrics of a split worker, exported from its plain stats dataclass.

Workers count in plain data on their hot path (``SqsWorkerStats``,
``KafkaWorkerStats``); :class:`StatsExporter` copies the counts into
Prometheus collectors about once a second, so the hot path never takes a
metric's lock. Every ``int`` field becomes a counter
``pymirror_<kind>_<field>_total{split=...}``, every ``Counter`` field a
counter with a ``session`` label, and fields named in ``gauges`` gauges.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, start_http_server

#: Seconds between two exports.
INTERVAL = 1.0


class StatsExporter:
    """Collectors for one worker process (one original queue/topic)."""

    def __init__(
        self,
        kind: str,
        split: str,
        stats: Any,
        *,
        gauges: Iterable[str] = (),
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.split = split
        self._gauges = set(gauges)
        self._collectors: dict[str, Any] = {}
        self._last: dict[str, Any] = {}
        for f in dataclasses.fields(stats):
            value = getattr(stats, f.name)
            name = f"pymirror_{kind}_{f.name}"
            what = f"{kind} worker: {f.name.replace('_', ' ')}"
            if f.name in self._gauges:
                self._collectors[f.name] = Gauge(name, what, ["split"], registry=registry)
            elif isinstance(value, Tally):
                self._collectors[f.name] = Counter(
                    name, what + " (by session)", ["split", "session"], registry=registry
                )
                self._last[f.name] = Tally()
            elif isinstance(value, int):
                self._collectors[f.name] = Counter(name, what, ["split"], registry=registry)
                self._last[f.name] = 0

    def update(self, stats: Any) -> None:
        """Add what ``stats`` counted since the last update."""
        for field, collector in self._collectors.items():
            value = getattr(stats, field)
            if field in self._gauges:
                collector.labels(self.split).set(value)
            elif isinstance(value, Tally):
                last = self._last[field]
                for session, count in value.items():
                    collector.labels(self.split, session).inc(count - last[session])
                self._last[field] = value.copy()
            else:
                collector.labels(self.split).inc(value - self._last[field])
                self._last[field] = value


async def serve_metrics(
    exporter: StatsExporter, stats: Any, port: int, done: asyncio.Event
) -> None:
    """Serve ``/metrics`` on ``port`` and keep it current until ``done``."""
    start_http_server(port)
    while not done.is_set():
        exporter.update(stats)
        try:
            await asyncio.wait_for(done.wait(), INTERVAL)
        except TimeoutError:
            continue
    exporter.update(stats)
