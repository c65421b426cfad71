"""Topic and group administration over aiokafka's admin client (adapter side).

:class:`KafkaAdmin` offers what the split worker needs: a topic's partition
count, replication factor and the configs set on it, the live broker count,
create a temporary topic like the original (:class:`TopicSpec`), grow one,
delete one, a group's committed offsets, and make a dead member leave a
group.

Broker quirks handled here: noida-db creates a missing topic when a Metadata
request names it, so existence is checked against the full topic list
first; Tansu 0.6 marks every config entry as a default (see
:func:`_non_default`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka import errors as kerrors
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.protocol.group import LeaveGroupRequest
from aiokafka.protocol.offset import OffsetRequest, OffsetResetStrategy

from splitter.errors import KafkaTopicError
from splitter.kafka.translating import error_for_code, translating

# Config sources in DescribeConfigs v1+: 1 = set on the topic.
_TOPIC_CONFIG_SOURCE = 1


@dataclass(frozen=True)
class TopicSpec:
    """What a temporary topic copies from its original."""

    partitions: int
    configs: Mapping[str, str]
    #: Replicas per partition (the original's; capped by the live brokers on create).
    replication: int = 1


def _check_response_errors(response: Any, what: str, *, allow: Iterable[int] = ()) -> None:
    obj = response.to_object()
    entries = obj.get("topic_errors") or obj.get("topic_error_codes") or []
    for entry in entries:
        code = entry["error_code"]
        if code and code not in allow:
            raise error_for_code(code, entry.get("error_message"), f"{what} {entry['topic']!r}")


def missing_topic(topic: str) -> KafkaTopicError:
    """The error for a topic that does not exist, naming where it is configured."""
    return KafkaTopicError(
        f"topic {topic!r} does not exist; check the topic name in the workload's "
        "MirrordKafkaTopicsConsumer and the bootstrap servers"
    )


class KafkaAdmin:
    """Topic and group administration; use as ``async with clients.admin() as admin``."""

    def __init__(self, client: AIOKafkaAdminClient) -> None:
        self._client = client

    async def __aenter__(self) -> KafkaAdmin:
        async with translating("connecting the Kafka admin client"):
            await self._client.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()

    async def partitions(self, topic: str) -> int:
        """Partition count of ``topic``; ``KafkaTopicError`` if it does not exist.

        Existence is checked with a list of all topics first: a Metadata
        request naming a missing topic creates it on brokers that
        auto-create topics (noida-db does, even from the admin client).
        """
        return len(await self._describe(topic))

    async def partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        """The partition count of each of ``topics`` that exists, in two requests (a list
        of all topics, then one Metadata request naming the ones listed) however many
        topics: a worker with 100 sessions checks 102 topics at each assignment."""
        wanted = set(topics)
        async with translating("listing topics"):
            existing = wanted & set(await self._client.list_topics())
        if not existing:
            return {}
        async with translating("describing topics"):
            described = await self._client.describe_topics(sorted(existing))
        return {
            entry["topic"]: len(entry["partitions"])
            for entry in described
            if entry["topic"] in existing and entry["error_code"] == 0 and entry["partitions"]
        }

    async def _describe(self, topic: str) -> list[dict[str, Any]]:
        """The partitions of ``topic`` as the broker describes them (replicas, leader)."""
        described = []
        if await self.exists(topic):
            async with translating(f"describing topic {topic!r}"):
                described = await self._client.describe_topics([topic])
        for entry in described:
            if entry["topic"] == topic and entry["error_code"] == 0 and entry["partitions"]:
                return list(entry["partitions"])
        raise missing_topic(topic)

    async def live_brokers(self) -> int:
        """How many brokers the cluster lists now."""
        async with translating("describing the cluster"):
            cluster = await self._client.describe_cluster()
        return len(cluster["brokers"])

    async def grow(self, topic: str, partitions: int) -> None:
        """Give ``topic`` ``partitions`` partitions in all (CreatePartitions)."""
        async with translating(f"adding partitions to {topic!r}"):
            response = await self._client.create_partitions({topic: NewPartitions(partitions)})
        _check_response_errors(response, "adding partitions to")

    async def exists(self, topic: str) -> bool:
        async with translating("listing topics"):
            return topic in await self._client.list_topics()

    async def topic_configs(self, topic: str) -> dict[str, str]:
        """The configs set on ``topic`` itself (not broker defaults)."""
        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        async with translating(f"describing configs of {topic!r}"):
            responses = await self._client.describe_configs([resource])
        configs: dict[str, str] = {}
        for response in responses:
            for _code, _msg, _type, name, entries in response.resources:
                if name != topic:
                    continue
                configs |= _non_default(entries)
        return configs

    async def spec_of(self, topic: str) -> TopicSpec:
        partitions = await self._describe(topic)
        replication = max(len(p.get("replicas") or ()) for p in partitions) or 1
        return TopicSpec(len(partitions), await self.topic_configs(topic), replication)

    async def create_topic(self, name: str, spec: TopicSpec) -> None:
        """Create ``name`` with the spec's partitions, replication and configs; fail if it
        exists."""
        new = NewTopic(name, spec.partitions, spec.replication, topic_configs=dict(spec.configs))
        async with translating(f"creating topic {name!r}"):
            response = await self._client.create_topics([new])
        _check_response_errors(response, "creating topic")

    async def delete_topic(self, name: str) -> None:
        """Delete ``name``; a topic that is already gone is fine."""
        unknown = kerrors.UnknownTopicOrPartitionError.errno
        async with translating(f"deleting topic {name!r}"):
            response = await self._client.delete_topics([name])
        _check_response_errors(response, "deleting topic", allow=[unknown])

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """The listed end offset of each partition of ``topic`` (ListOffsets to each
        partition's leader); ``KafkaTopicError`` if it is missing or went away meanwhile.

        No request names the topic in a Metadata request (the leaders come from the
        metadata of all topics): a consumer's ``end_offsets`` refreshes the metadata
        naming its topics while it retries, which makes brokers that auto-create topics
        (noida-db) create again a topic deleted meanwhile. Tansu lists the end of the
        last batch's first record (7 records in one batch: 1; 14 in two: 8), so the
        listed end is below the real one, but not 0 once anything was written.
        """
        async with translating("describing the cluster's topics"):
            described = await self._client.describe_topics()  # all: nothing auto-created
        leaders: dict[int, list[int]] = {}
        for entry in described:
            if entry["topic"] == topic and entry["error_code"] == 0:
                for partition in entry["partitions"]:
                    leaders.setdefault(partition["leader"], []).append(partition["partition"])
        if not leaders:
            raise KafkaTopicError(f"topic {topic!r} does not exist")
        ends: dict[int, int] = {}
        for leader, partitions in leaders.items():
            latest = [(p, OffsetResetStrategy.LATEST) for p in partitions]
            async with translating(f"listing end offsets of {topic!r}"):
                response = await self._client._send_request_to_node(  # no public ListOffsets
                    leader, OffsetRequest(-1, 0, [(topic, latest)])
                )
            for _name, entries in response.topics:
                for partition, code, *found in entries:
                    if code == kerrors.UnknownTopicOrPartitionError.errno:
                        raise KafkaTopicError(f"topic {topic!r} went away")
                    if code:
                        raise error_for_code(code, None, f"listing end offsets of {topic!r}")
                    offset = found[-1]  # v0: a list of offsets; v1 and later: one offset
                    ends[partition] = int(offset[0] if isinstance(offset, list) else offset)
        return ends

    async def committed(self, group_id: str, topic: str, partitions: int) -> dict[int, int | None]:
        """The group's committed offset per partition (None: nothing committed)."""
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        async with translating(f"reading offsets of group {group_id!r} on {topic!r}"):
            # Tansu answers only for explicitly named partitions.
            offsets = await self._client.list_consumer_group_offsets(group_id, partitions=tps)
        result: dict[int, int | None] = dict.fromkeys(range(partitions))
        for tp, meta in offsets.items():
            if tp.topic == topic and meta.offset >= 0:
                result[tp.partition] = meta.offset
        return result

    async def remove_member(self, group_id: str, member_id: str) -> bool:
        """Make a dead member of ``group_id`` leave (LeaveGroup on its behalf).

        For a worker restarted after a crash: its predecessor never left, and
        the group would wait a session timeout to expire it (noida-db 0.2
        never does once a new member joins, so the group is stuck for good).
        Returns False if the broker no longer knew the member.
        """
        async with translating(f"removing member {member_id!r} from group {group_id!r}"):
            node = await self._client.find_coordinator(group_id)
            response = await self._client._send_request_to_node(  # no public LeaveGroup
                node, LeaveGroupRequest(group_id, member_id)
            )
        code = response.error_code
        if code == kerrors.UnknownMemberIdError.errno:
            return False
        if code:
            raise error_for_code(code, None, f"removing member {member_id!r}")
        return True


def _non_default(entries: Iterable[Sequence[Any]]) -> dict[str, str]:
    """Entries set on the topic itself.

    Apache Kafka and noida-db mark them with config source 1 (topic config);
    Tansu 0.6 marks every entry as source 5 (default) but lists only the
    configs set on the topic, so when no entry of source 1 is present and the
    answer is short (no full default table), its entries are taken as set.
    """
    rows = [(e[0], e[1], e[2], e[3] if len(e) > 3 else None) for e in entries]
    explicit = {
        name: value
        for name, value, read_only, source in rows
        if source == _TOPIC_CONFIG_SOURCE and not read_only and value is not None
    }
    if explicit or len(rows) > 10:
        return explicit
    return {
        name: value for name, value, read_only, _ in rows if not read_only and value is not None
    }
