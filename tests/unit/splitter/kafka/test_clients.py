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
    assert kwargs["auto_offset_reset"] == "earliest"


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
