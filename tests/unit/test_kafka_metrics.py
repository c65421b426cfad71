"""Worker counters copied into Prometheus collectors (splitter/kafka_metrics.py)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from splitter.kafka_metrics import KafkaMetrics
from splitter.kafka_worker import KafkaWorkerStats

pytestmark = pytest.mark.unit


def test_metrics_add_what_the_worker_counted_since_the_last_update() -> None:
    registry = CollectorRegistry()
    metrics = KafkaMetrics("views", registry)
    stats = KafkaWorkerStats()
    stats.read, stats.committed = 10, 8
    stats.forwarded.update({"alice": 4, "fallback": 6})
    metrics.update(stats)
    stats.read, stats.committed, stats.rerouted, stats.returned, stats.lag = 15, 15, 2, 1, 7
    stats.forwarded.update({"fallback": 5, "bob": 1})
    metrics.update(stats)
    metrics.update(stats)  # nothing new: nothing added

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"topic": "views", **labels})

    assert value("pymirror_kafka_records_read_total") == 15
    assert value("pymirror_kafka_records_committed_total") == 15
    assert value("pymirror_kafka_records_forwarded_total", session="alice") == 4
    assert value("pymirror_kafka_records_forwarded_total", session="fallback") == 11
    assert value("pymirror_kafka_records_forwarded_total", session="bob") == 1
    assert value("pymirror_kafka_records_rerouted_total") == 2
    assert value("pymirror_kafka_records_returned_total") == 1
    assert value("pymirror_kafka_fallback_lag") == 7
