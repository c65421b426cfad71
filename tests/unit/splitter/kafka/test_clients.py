"""aiokafka arguments every client gets (splitter/kafka/clients.py)."""

from __future__ import annotations

import pytest
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from splitter.kafka.clients import KafkaClients
from splitter.kafka.properties import translate_properties

pytestmark = pytest.mark.unit


def clients(**properties: str) -> KafkaClients:
    return KafkaClients(translate_properties({"bootstrap.servers": "b:9092", **properties}))


def test_consumers_never_auto_commit_and_use_the_given_group() -> None:
    kwargs = clients(**{"group.id": "theirs"}).consumer_kwargs("views-consumer", {})
    assert kwargs["enable_auto_commit"] is False
    assert kwargs["group_id"] == "views-consumer"
    assert kwargs["bootstrap_servers"] == ["b:9092"]
    assert kwargs["client_id"] == "pymirror"
    assert kwargs["isolation_level"] == "read_committed"


def test_a_partition_never_committed_starts_where_the_workload_would_start_it() -> None:
    """Item 14: the default was earliest (the whole history replayed into the fallback)."""
    assert clients().consumer_kwargs("g", {})["auto_offset_reset"] == "latest"
    workload = clients(**{"auto.offset.reset": "earliest"})
    assert workload.consumer_kwargs("g", {})["auto_offset_reset"] == "earliest"


def test_every_consumer_reads_committed_records_only_whatever_the_overrides() -> None:
    """Item 12: the consumers read read_uncommitted, forwarding aborted transactions."""
    c = clients(**{"isolation.level": "read_committed"})
    assert c.consumer_kwargs("g", {})["isolation_level"] == "read_committed"
    assert (
        c.consumer_kwargs(None, {"isolation_level": "read_uncommitted"})["isolation_level"]
        == "read_committed"
    )


async def test_the_forwarder_is_sized_for_the_largest_record_a_topic_allows() -> None:
    """Item 9: a record over 1 MiB on a topic allowing it crash-looped the producer."""
    forwarder = clients().forwarder(max_record_bytes=5 * 1024 * 1024)
    bigger = clients(**{"max.request.size": str(64 * 1024 * 1024)}).forwarder(max_record_bytes=10)
    try:
        assert forwarder._producer._max_request_size > 5 * 1024 * 1024
        assert bigger._producer._max_request_size == 64 * 1024 * 1024
    finally:  # never started: stopping only marks them closed (no unclosed-client warning)
        await forwarder._producer.stop()
        await bigger._producer.stop()


def test_properties_override_defaults_and_overrides_override_properties() -> None:
    c = clients(**{"auto.offset.reset": "latest", "max.poll.records": "50"})
    assert c.consumer_kwargs(None, {})["max_poll_records"] == 50
    assert c.consumer_kwargs(None, {})["auto_offset_reset"] == "latest"
    assert c.consumer_kwargs(None, {"max_poll_records": 7})["max_poll_records"] == 7
    assert c.consumer_kwargs(None, {"enable_auto_commit": True})["enable_auto_commit"] is False


def test_an_assignment_strategy_name_becomes_the_aiokafka_assignor() -> None:
    c = clients(**{"partition.assignment.strategy": "roundrobin"})
    assert c.consumer_kwargs("g", {})["partition_assignment_strategy"] == (
        RoundRobinPartitionAssignor,
    )
