"""The demo consumer's Kafka group leader, on a real broker (noida-db and Tansu).

kafka-python 3.0's leader records the snapshot it assigned from before its group
subscription is in it; the next metadata refresh then differs and the leader rejoins,
and on Tansu (which keeps the generation) it did so for minutes in 3 of 24 demo runs on a
loaded machine, holding no partition meanwhile. This drives one such step on the real
client and broker: a join's prepare narrowed the group subscription, a refresh narrowed
the snapshot, the leader assigns for a member of another topic, metadata refreshes.
With :func:`keep_leader_snapshot_whole` it must not want to rejoin. (It reaches into
the client's coordinator, as the workaround does; kafka-python is pinned below 4.)
"""

from __future__ import annotations

import time
import types
import uuid
import warnings

import pytest

with warnings.catch_warnings():
    # kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer  # type: ignore[import-untyped]
    from kafka.admin import KafkaAdminClient, NewTopic  # type: ignore[import-untyped]
    from kafka.coordinator.assignors.range import (  # type: ignore[import-untyped]
        RangePartitionAssignor,
    )
    from kafka.coordinator.consumer import ConsumerCoordinator  # type: ignore[import-untyped]
    from kafka.protocol.consumer.metadata import (  # type: ignore[import-untyped]
        ConsumerProtocolSubscription,
    )

from pymirror.demo.consumer import keep_leader_snapshot_whole
from tests.servers.kafka import KafkaBroker, group_timeouts

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
]


def _member(member_id: str, topic: str) -> types.SimpleNamespace:
    """A JoinGroup response's member as the assignment reads it."""
    subscription = ConsumerProtocolSubscription(version=0, topics=[topic], user_data=b"")
    return types.SimpleNamespace(
        member_id=member_id, group_instance_id=None, metadata=subscription.encode()
    )


def _refreshed(consumer: KafkaConsumer, topics: set[str]) -> dict[str, set[int]]:
    """Poll until the coordinator's metadata snapshot covers exactly ``topics``."""
    coordinator = consumer._coordinator
    for _ in range(200):
        consumer.poll(timeout_ms=50)
        if set(coordinator._metadata_snapshot) == topics:
            return dict(coordinator._metadata_snapshot)
    raise AssertionError(f"the snapshot never became {topics}: {coordinator._metadata_snapshot}")


def test_the_leader_does_not_rejoin_after_assigning_another_members_topic(
    kafka_broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # restored after the test: the fix is installed for this process only
    monkeypatch.setattr(
        ConsumerCoordinator, "_perform_assignment", ConsumerCoordinator._perform_assignment
    )
    keep_leader_snapshot_whole()
    ours, theirs = f"ours-{uuid.uuid4().hex[:8]}", f"theirs-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    consumer = None
    try:
        admin.create_topics([NewTopic(ours, 1, 1), NewTopic(theirs, 1, 1)])
        consumer = KafkaConsumer(
            bootstrap_servers=kafka_broker.bootstrap,
            group_id=f"leader-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            partition_assignment_strategy=[RangePartitionAssignor],
            **group_timeouts(kafka_broker.kind),
            metadata_max_age_ms=100,
        )
        consumer.subscribe(pattern=f"^{ours}$")
        deadline = time.monotonic() + 60
        while not consumer.assignment():
            assert time.monotonic() < deadline, "the only member never got its partition"
            consumer.poll(timeout_ms=200)
        coordinator = consumer._coordinator
        leader = coordinator._generation.member_id

        # a rejoin's prepare narrows the group subscription; a refresh during the join
        # narrows the snapshot to the leader's own topic
        coordinator._subscription.reset_group_subscription()
        assert _refreshed(consumer, {ours}) == {ours: {0}}

        assigned = coordinator._perform_assignment(
            leader, "range", [_member(leader, ours), _member("other", theirs)]
        )
        assert assigned["other"].partitions()[0].topic == theirs
        assert _refreshed(consumer, {ours, theirs}) == {ours: {0}, theirs: {0}}
        assert coordinator._assignment_snapshot == coordinator._metadata_snapshot
        assert not coordinator.need_rejoin()
    finally:
        if consumer is not None:
            consumer.close(autocommit=False)
        admin.close()
