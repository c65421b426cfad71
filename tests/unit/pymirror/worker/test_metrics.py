"""Worker counters copied into Prometheus collectors (pymirror/worker/metrics.py)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from pymirror.worker.metrics import StatsExporter
from splitter.kafka.worker import KafkaWorkerStats
from splitter.sqs.forwarding import SqsWorkerStats

pytestmark = pytest.mark.unit


def test_kafka_counts_are_added_since_the_last_update_and_lag_is_a_gauge() -> None:
    registry = CollectorRegistry()
    stats = KafkaWorkerStats()
    metrics = StatsExporter("kafka", "views", stats, gauges=("lag",), registry=registry)
    stats.read, stats.committed = 10, 8
    stats.forwarded.update({"alice": 4, "fallback": 6})
    metrics.update(stats)
    stats.read, stats.committed, stats.rerouted, stats.returned, stats.lag = 15, 15, 2, 1, 7
    stats.forwarded.update({"fallback": 5, "bob": 1})
    metrics.update(stats)
    metrics.update(stats)  # nothing new: nothing added
    stats.lag = 3
    metrics.update(stats)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"split": "views", **labels})

    assert value("pymirror_kafka_read_total") == 15
    assert value("pymirror_kafka_committed_total") == 15
    assert value("pymirror_kafka_forwarded_total", session="alice") == 4
    assert value("pymirror_kafka_forwarded_total", session="fallback") == 11
    assert value("pymirror_kafka_forwarded_total", session="bob") == 1
    assert value("pymirror_kafka_rerouted_total") == 2
    assert value("pymirror_kafka_returned_total") == 1
    assert value("pymirror_kafka_lag") == 3


def test_every_sqs_counter_is_exported() -> None:
    registry = CollectorRegistry()
    stats = SqsWorkerStats()
    metrics = StatsExporter("sqs", "orders", stats, registry=registry)
    stats.received, stats.failed, stats.delete_failed, stats.extended = 30, 2, 1, 5
    stats.released, stats.release_failed = 4, 3
    stats.forwarded.update({"alice": 20, "fallback": 8})
    metrics.update(stats)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"split": "orders", **labels})

    assert value("pymirror_sqs_received_total") == 30
    assert value("pymirror_sqs_failed_total") == 2
    assert value("pymirror_sqs_delete_failed_total") == 1
    assert value("pymirror_sqs_extended_total") == 5
    assert value("pymirror_sqs_released_total") == 4
    assert value("pymirror_sqs_release_failed_total") == 3
    assert value("pymirror_sqs_forwarded_total", session="alice") == 20
    assert value("pymirror_sqs_forwarded_total", session="fallback") == 8
