"""The Kafka adapter: the only module that imports aiokafka.

It offers what the split worker needs and nothing else:

* :class:`KafkaClients` builds clients from :class:`KafkaClientOptions`
  (translated client properties) - every client gets the same settings;
* :class:`KafkaAdmin` - topic partition count and non-default configs,
  create a temporary topic like the original, delete, a group's committed
  offsets;
* :class:`GroupConsumer` - joins the workload's consumer group with
  auto-commit off and reports partition revocation/assignment to async
  callbacks; :class:`TopicReader` - reads assigned partitions (no group join)
  up to their *real* end;
* :class:`Forwarder` - a pipelined ``acks=all`` producer: ``send`` returns a
  future of the written offset, never waits for the acknowledgement itself.

aiokafka errors are translated here (``raise KafkaError(...) from e``).
Records are passed through as aiokafka's ``ConsumerRecord`` objects, typed by
the :class:`KafkaRecord` protocol, so the hot path copies nothing.

Broker quirks handled here: noida-db creates a missing topic when a Metadata
request names it, so existence is checked against the full topic list
first; Tansu 0.6 under-reports ``ListOffsets`` end
offsets after a batched produce, so :meth:`TopicReader.end_offsets` probes
past the listed end with a fetch before it trusts it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kerrors
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.protocol.group import LeaveGroupRequest
from aiokafka.structs import OffsetAndMetadata

from splitter.errors import KafkaError, KafkaForwardError, KafkaTopicError, KafkaUnavailableError
from splitter.kafka.properties import KafkaClientOptions, SslFiles

log = structlog.get_logger()

Partition = tuple[str, int]
"""(topic, partition number)."""

Headers = Sequence[tuple[str, bytes]]

# Config sources in DescribeConfigs v1+: 1 = set on the topic.
_TOPIC_CONFIG_SOURCE = 1
_ASSIGNORS = {
    "range": RangePartitionAssignor,
    "roundrobin": RoundRobinPartitionAssignor,
    "sticky": StickyPartitionAssignor,
}


class KafkaRecord(Protocol):
    """What the worker reads of a consumed record (aiokafka's ``ConsumerRecord``)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers


class Destination(Protocol):
    """Where a record is forwarded (``splitter.routing.Target``)."""

    @property
    def destination(self) -> str: ...


@dataclass(frozen=True)
class TopicSpec:
    """What a temporary topic copies from its original."""

    partitions: int
    configs: Mapping[str, str]


def _translate(e: Exception, what: str) -> KafkaError:
    if isinstance(e, kerrors.UnknownTopicOrPartitionError):
        return KafkaTopicError(f"{what}: topic or partition does not exist")
    if isinstance(
        e,
        kerrors.KafkaConnectionError
        | kerrors.KafkaTimeoutError
        | kerrors.NodeNotReadyError
        | kerrors.RequestTimedOutError
        | kerrors.NotCoordinatorForGroupError
        | kerrors.CoordinatorNotAvailableError
        | kerrors.RebalanceInProgressError
        # A commit refused by a rebalance: the next owner re-reads from the last commit.
        | kerrors.CommitFailedError
        | kerrors.IllegalGenerationError
        | kerrors.UnknownMemberIdError
        | kerrors.NotLeaderForPartitionError
        | kerrors.LeaderNotAvailableError,
    ):
        return KafkaUnavailableError(f"{what}: {type(e).__name__}: {e}")
    return KafkaError(f"{what}: {type(e).__name__}: {e}")


@asynccontextmanager
async def _translating(what: str) -> AsyncIterator[None]:
    try:
        yield
    except kerrors.KafkaError as e:
        raise _translate(e, what) from e
    except OSError as e:
        raise KafkaUnavailableError(f"{what}: {e}") from e


def _ssl_context(files: SslFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=files.cafile)
    context.check_hostname = files.check_hostname
    if files.certfile:
        context.load_cert_chain(files.certfile, files.keyfile, files.password)
    return context


def _check_response_errors(response: Any, what: str, *, allow: Iterable[int] = ()) -> None:
    obj = response.to_object()
    entries = obj.get("topic_errors") or obj.get("topic_error_codes") or []
    for entry in entries:
        code = entry["error_code"]
        if code and code not in allow:
            error = kerrors.for_code(code)
            message = entry.get("error_message") or error.description
            raise _translate(error(message), f"{what} {entry['topic']!r}")


class KafkaClients:
    """Builds aiokafka clients that all share one set of translated properties."""

    def __init__(self, options: KafkaClientOptions, *, client_id: str = "pymirror") -> None:
        self.options = options
        common = dict(options.common)
        common.setdefault("client_id", client_id)
        if options.ssl is not None:
            common["ssl_context"] = _ssl_context(options.ssl)
        self._common = common

    @property
    def bootstrap(self) -> str:
        return self.options.bootstrap

    def admin(self) -> KafkaAdmin:
        return KafkaAdmin(AIOKafkaAdminClient(**self._common))

    def forwarder(self, **overrides: Any) -> Forwarder:
        kwargs: dict[str, Any] = {"linger_ms": 5, "enable_idempotence": False}
        kwargs |= dict(self.options.producer) | overrides
        return Forwarder(AIOKafkaProducer(acks="all", **self._common, **kwargs))

    def _consumer_kwargs(
        self, group_id: str | None, overrides: Mapping[str, Any]
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"auto_offset_reset": "earliest", "max_poll_records": 500}
        kwargs |= dict(self.options.consumer) | dict(overrides)
        strategy = kwargs.pop("partition_assignment_strategy", None)
        if strategy is not None:
            kwargs["partition_assignment_strategy"] = (_ASSIGNORS[strategy],)
        return {
            **self._common,
            **kwargs,
            "group_id": group_id,
            "enable_auto_commit": False,
        }

    def group_consumer(
        self, topic: str, group_id: str, listener: RebalanceCallbacks, **overrides: Any
    ) -> GroupConsumer:
        consumer = AIOKafkaConsumer(**self._consumer_kwargs(group_id, overrides))
        return GroupConsumer(consumer, topic, group_id, listener)

    def reader(self, group_id: str | None = None, **overrides: Any) -> TopicReader:
        overrides = {"fetch_max_wait_ms": 100, **overrides}
        return TopicReader(AIOKafkaConsumer(**self._consumer_kwargs(group_id, overrides)))


class KafkaAdmin:
    """Topic and group administration; use as ``async with clients.admin() as admin``."""

    def __init__(self, client: AIOKafkaAdminClient) -> None:
        self._client = client

    async def __aenter__(self) -> KafkaAdmin:
        async with _translating("connecting the Kafka admin client"):
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
        described = []
        if await self.exists(topic):
            async with _translating(f"describing topic {topic!r}"):
                described = await self._client.describe_topics([topic])
        for entry in described:
            if entry["topic"] == topic and entry["error_code"] == 0 and entry["partitions"]:
                return len(entry["partitions"])
        raise KafkaTopicError(
            f"topic {topic!r} does not exist; check the topic name in the workload's "
            "MirrordKafkaTopicsConsumer and the bootstrap servers"
        )

    async def exists(self, topic: str) -> bool:
        async with _translating("listing topics"):
            return topic in await self._client.list_topics()

    async def topic_configs(self, topic: str) -> dict[str, str]:
        """The configs set on ``topic`` itself (not broker defaults)."""
        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        async with _translating(f"describing configs of {topic!r}"):
            responses = await self._client.describe_configs([resource])
        configs: dict[str, str] = {}
        for response in responses:
            for _code, _msg, _type, name, entries in response.resources:
                if name != topic:
                    continue
                configs |= _non_default(entries)
        return configs

    async def spec_of(self, topic: str) -> TopicSpec:
        return TopicSpec(await self.partitions(topic), await self.topic_configs(topic))

    async def create_topic(self, name: str, spec: TopicSpec) -> None:
        """Create ``name`` with the spec's partitions and configs; fail if it exists."""
        new = NewTopic(name, spec.partitions, 1, topic_configs=dict(spec.configs))
        async with _translating(f"creating topic {name!r}"):
            response = await self._client.create_topics([new])
        _check_response_errors(response, "creating topic")

    async def delete_topic(self, name: str) -> None:
        """Delete ``name``; a topic that is already gone is fine."""
        unknown = kerrors.UnknownTopicOrPartitionError.errno
        async with _translating(f"deleting topic {name!r}"):
            response = await self._client.delete_topics([name])
        _check_response_errors(response, "deleting topic", allow=[unknown])

    async def committed(self, group_id: str, topic: str, partitions: int) -> dict[int, int | None]:
        """The group's committed offset per partition (None: nothing committed)."""
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        async with _translating(f"reading offsets of group {group_id!r} on {topic!r}"):
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
        async with _translating(f"removing member {member_id!r} from group {group_id!r}"):
            node = await self._client.find_coordinator(group_id)
            response = await self._client._send_request_to_node(  # no public LeaveGroup
                node, LeaveGroupRequest(group_id, member_id)
            )
        code = response.error_code
        if code == kerrors.UnknownMemberIdError.errno:
            return False
        if code:
            raise _translate(kerrors.for_code(code)(), f"removing member {member_id!r}")
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


class RebalanceCallbacks(Protocol):
    async def partitions_revoked(self, partitions: set[Partition]) -> None: ...

    async def partitions_assigned(self, partitions: set[Partition]) -> None: ...


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, callbacks: RebalanceCallbacks) -> None:
        self._callbacks = callbacks

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._callbacks.partitions_revoked({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._callbacks.partitions_assigned({(tp.topic, tp.partition) for tp in assigned})


class GroupConsumer:
    """Consumes one topic as a member of a consumer group; auto-commit is off."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topic: str,
        group_id: str,
        callbacks: RebalanceCallbacks,
    ) -> None:
        self._consumer = consumer
        self.topic = topic
        self.group_id = group_id
        self._listener = _Listener(callbacks)

    async def start(self) -> None:
        self._consumer.subscribe([self.topic], listener=self._listener)
        async with _translating(f"joining group {self.group_id!r} on {self.topic!r}"):
            await self._consumer.start()

    async def stop(self) -> None:
        """Leave the group (revocation callbacks run first) and close."""
        async with _translating(f"leaving group {self.group_id!r}"):
            await self._consumer.stop()

    async def fetch(self, timeout_ms: int, max_records: int) -> dict[Partition, list[KafkaRecord]]:
        async with _translating(f"fetching from {self.topic!r}"):
            batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return {(tp.topic, tp.partition): records for tp, records in batch.items()}

    def assignment(self) -> set[Partition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    @property
    def member_id(self) -> str | None:
        """This member's id in the group once joined (aiokafka keeps it on its coordinator)."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        member = getattr(coordinator, "member_id", "")
        return str(member) if member else None

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit the next offset to read per partition."""
        if not offsets:
            return
        payload = {TopicPartition(t, p): OffsetAndMetadata(o, "") for (t, p), o in offsets.items()}
        member = self.member_id
        try:
            async with _translating(f"committing offsets of group {self.group_id!r}"):
                await self._consumer.commit(payload)
        except KafkaUnavailableError:
            self._keep_member_id(member)
            raise

    def _keep_member_id(self, member: str | None) -> None:
        """Rejoin under our member id after a commit refused with ILLEGAL_GENERATION.

        aiokafka answers a refused commit by forgetting its member id and
        joining again as a *new* member; the old id stays in the group until
        the broker expires it (a session timeout on Apache Kafka; never on
        noida-db 0.2, whose group then waits for it forever - and noida bumps
        the generation as soon as a member joins, so every commit racing a
        join, the revocation commit included, is refused there). Rejoining
        under the same id, as the Java client does since Kafka 2.x, is a plain
        rejoin; if the broker no longer knows the id, the join says so and
        aiokafka starts afresh. Runs before the rejoin: no await since the reset.
        """
        coordinator = getattr(self._consumer, "_coordinator", None)
        if member is None or coordinator is None or coordinator.member_id:
            return
        coordinator.member_id = member
        log.info("kafka rejoining under the same member id", group=self.group_id, member=member)


class TopicReader:
    """Reads assigned partitions without joining a group; use as an async context manager."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer

    async def __aenter__(self) -> TopicReader:
        async with _translating("connecting a Kafka reader"):
            await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    def assign(self, partitions: Iterable[Partition]) -> None:
        self._consumer.assign([TopicPartition(t, p) for t, p in partitions])

    def seek(self, partition: Partition, offset: int) -> None:
        self._consumer.seek(TopicPartition(*partition), offset)

    async def position(self, partition: Partition) -> int:
        async with _translating(f"reading the position on {partition}"):
            position: int = await self._consumer.position(TopicPartition(*partition))
        return position

    async def fetch(self, timeout_ms: int) -> dict[Partition, list[KafkaRecord]]:
        async with _translating("reading"):
            batch = await self._consumer.getmany(timeout_ms=timeout_ms)
        return {(tp.topic, tp.partition): records for tp, records in batch.items()}

    async def listed_end_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        tps = [TopicPartition(t, p) for t, p in partitions]
        async with _translating("listing end offsets"):
            ends = await self._consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    async def read_to_end(
        self,
        starts: Mapping[Partition, int | None],
        on_records: Callable[[Partition, list[KafkaRecord]], Awaitable[None]],
        *,
        idle_ms: int = 300,
    ) -> dict[Partition, int]:
        """Read each partition from its start (None: earliest) to its real end.

        The end is the listed end offset, or further if a fetch there still
        returns records (Tansu under-reports end offsets). Returns the offset
        after the last record seen per partition.
        """
        self.assign(starts)
        for partition, start in starts.items():
            if start is not None:
                self.seek(partition, start)
        ends = await self.listed_end_offsets(starts)
        positions = {p: await self.position(p) for p in starts}
        pending = {p for p in starts if positions[p] < ends[p]}
        idle = 0
        while pending or idle < idle_ms:
            batch = await self.fetch(timeout_ms=100)
            if not batch:
                idle += 100
                continue
            idle = 0
            for partition, records in batch.items():
                await on_records(partition, records)
                positions[partition] = records[-1].offset + 1
                if positions[partition] >= ends[partition]:
                    pending.discard(partition)
        return positions

    async def end_offsets(
        self, partitions: Iterable[Partition], *, idle_ms: int = 300
    ) -> dict[Partition, int]:
        """Real end offsets: listed ends, moved past any record a fetch still finds there."""
        listed = await self.listed_end_offsets(partitions)

        async def ignore(_p: Partition, _r: list[KafkaRecord]) -> None:
            return None

        return await self.read_to_end(dict(listed), ignore, idle_ms=idle_ms)


class Forwarder:
    """A pipelined ``acks=all`` producer; use as an async context manager."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def __aenter__(self) -> Forwarder:
        async with _translating("connecting the Kafka producer"):
            await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        timestamp_ms: int | None,
    ) -> asyncio.Future[Any]:
        """Queue one record; the future resolves when the broker acknowledged it."""
        try:
            return await self._producer.send(  # type: ignore[no-any-return]
                topic,
                value,
                key=key,
                partition=partition,
                timestamp_ms=timestamp_ms,
                headers=list(headers),
            )
        except kerrors.KafkaError as e:
            raise _translate(e, f"forwarding to {topic!r}[{partition}]") from e

    async def send_routed(
        self,
        partition: int,
        records: Sequence[KafkaRecord],
        routes: Sequence[Sequence[Destination]],
    ) -> list[asyncio.Future[Any] | list[asyncio.Future[Any]]]:
        """Queue each record to each of its destinations, same partition, unchanged.

        ``routes[i]`` are the destinations of ``records[i]``. Returns, per
        record, the future of its one forward or the list of its futures.
        One coroutine for the whole batch: this is the worker's hot path.
        """
        send = self._producer.send
        forwards: list[asyncio.Future[Any] | list[asyncio.Future[Any]]] = []
        topic = ""
        try:
            for record, targets in zip(records, routes, strict=True):
                headers = list(record.headers)
                sent = []
                for target in targets:
                    topic = target.destination
                    sent.append(
                        await send(
                            topic,
                            record.value,
                            key=record.key,
                            partition=partition,
                            timestamp_ms=record.timestamp,
                            headers=headers,
                        )
                    )
                forwards.append(sent[0] if len(sent) == 1 else sent)
        except kerrors.KafkaError as e:
            raise _translate(e, f"forwarding to {topic!r}[{partition}]") from e
        return forwards

    async def flush(self) -> None:
        async with _translating("flushing the Kafka producer"):
            await self._producer.flush()


def forward_failure(future: asyncio.Future[Any], where: str) -> KafkaForwardError | None:
    """The error of a completed forward future, translated, or None."""
    if future.cancelled():
        return KafkaForwardError(f"forward to {where} was cancelled")
    error = future.exception()
    if error is None:
        return None
    forward = KafkaForwardError(f"forward to {where} failed: {type(error).__name__}: {error}")
    forward.__cause__ = error
    return forward
