"""Prometheus metrics of a Kafka split worker (exported from :class:`KafkaWorkerStats`).

The worker counts in plain data (``KafkaWorkerStats``) on its hot path; this
module copies the counts into Prometheus collectors about once a second, so
the hot path never touches a lock-protected metric.
"""

from __future__ import annotations

import dataclasses

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from splitter.kafka_worker import KafkaWorkerStats


class KafkaMetrics:
    """Collectors for one worker process (one original topic)."""

    def __init__(self, topic: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.topic = topic
        self.read = Counter(
            "pymirror_kafka_records_read",
            "Records read from the original topic",
            ["topic"],
            registry=registry,
        )
        self.forwarded = Counter(
            "pymirror_kafka_records_forwarded",
            "Records forwarded, by session (fallback: the workload's topic)",
            ["topic", "session"],
            registry=registry,
        )
        self.committed = Counter(
            "pymirror_kafka_records_committed",
            "Records whose offsets on the original were committed after their forwards",
            ["topic"],
            registry=registry,
        )
        self.commits = Counter(
            "pymirror_kafka_commits", "Offset commits", ["topic"], registry=registry
        )
        self.rerouted = Counter(
            "pymirror_kafka_records_rerouted",
            "Leftovers of ended sessions routed again",
            ["topic"],
            registry=registry,
        )
        self.returned = Counter(
            "pymirror_kafka_records_returned",
            "Fallback leftovers moved back to the original after the drain timeout",
            ["topic"],
            registry=registry,
        )
        self.lag = Gauge(
            "pymirror_kafka_fallback_lag",
            "Workload group lag on the fallback while draining",
            ["topic"],
            registry=registry,
        )
        self._last = KafkaWorkerStats()

    def update(self, stats: KafkaWorkerStats) -> None:
        """Add what ``stats`` counted since the last update."""
        last, topic = self._last, self.topic
        self.read.labels(topic).inc(stats.read - last.read)
        for session, count in stats.forwarded.items():
            self.forwarded.labels(topic, session).inc(count - last.forwarded[session])
        self.committed.labels(topic).inc(stats.committed - last.committed)
        self.commits.labels(topic).inc(stats.commits - last.commits)
        self.rerouted.labels(topic).inc(stats.rerouted - last.rerouted)
        self.returned.labels(topic).inc(stats.returned - last.returned)
        self.lag.labels(topic).set(stats.lag)
        self._last = dataclasses.replace(stats, forwarded=stats.forwarded.copy())
