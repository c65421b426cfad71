"""Building the aiokafka clients of a split worker (adapter side).

:class:`KafkaClients` turns :class:`~splitter.kafka.properties.KafkaClientOptions`
(translated client properties) into the adapter objects - every client gets
the same connection and security settings:

* :meth:`~KafkaClients.admin` -> :class:`~splitter.kafka.admin.KafkaAdmin`;
* :meth:`~KafkaClients.group_consumer` ->
  :class:`~splitter.kafka.consuming.GroupConsumer` (auto-commit always off);
* :meth:`~KafkaClients.reader` -> :class:`~splitter.kafka.reading.TopicReader`;
* :meth:`~KafkaClients.forwarder` -> :class:`~splitter.kafka.forwarding.Forwarder`
  (``acks=all``, always; ``max_record_bytes`` sizes its requests for the
  largest record a topic allows, its ``max.message.bytes``).

Every consumer reads with ``isolation_level=read_committed`` (records of
aborted transactions are never forwarded, moved or counted), always.

The aiokafka arguments set here (``_PRODUCER_DEFAULTS``,
``_CONSUMER_DEFAULTS``) are client-property defaults: the workload's
``MirrordKafkaClientConfig`` properties override them.

The adapter is this module with :mod:`~splitter.kafka.admin`,
:mod:`~splitter.kafka.consuming`, :mod:`~splitter.kafka.reading`,
:mod:`~splitter.kafka.forwarding` and :mod:`~splitter.kafka.translating`:
the only modules that import aiokafka.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

from splitter.kafka.admin import KafkaAdmin
from splitter.kafka.consuming import GroupConsumer, RebalanceCallbacks
from splitter.kafka.forwarding import Forwarder, NullableProducer
from splitter.kafka.properties import KafkaClientOptions, SslFiles
from splitter.kafka.reading import TopicReader

_ASSIGNORS = {
    "range": RangePartitionAssignor,
    "roundrobin": RoundRobinPartitionAssignor,
    "sticky": StickyPartitionAssignor,
}
#: A short linger batches a burst into few requests; idempotence needs
#: broker features (producer ids) the test brokers lack.
_PRODUCER_DEFAULTS: Mapping[str, Any] = {"linger_ms": 5, "enable_idempotence": False}
#: A partition the group never committed starts where the workload's own consumer
#: would start it: its ``auto.offset.reset`` property, else the clients' default,
#: latest (starting at earliest would replay the topic's whole history).
_CONSUMER_DEFAULTS: Mapping[str, Any] = {"auto_offset_reset": "latest", "max_poll_records": 500}
#: A reader's fetch returns within 100 ms when nothing is there, so probing an end is
#: quick; a reader given no start offset reads from the beginning (session end: what
#: the developer never committed is all leftovers).
_READER_DEFAULTS: Mapping[str, Any] = {"fetch_max_wait_ms": 100, "auto_offset_reset": "earliest"}
#: Headroom over a topic's max.message.bytes for the produce request around one record.
_REQUEST_OVERHEAD = 16 * 1024


def _ssl_context(files: SslFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=files.cafile)
    context.check_hostname = files.check_hostname
    if files.certfile:
        context.load_cert_chain(files.certfile, files.keyfile, files.password)
    return context


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

    def forwarder(self, *, max_record_bytes: int | None = None, **overrides: Any) -> Forwarder:
        """A forwarder; ``max_record_bytes``: the largest record it must carry (a topic's
        ``max.message.bytes``), so no record a topic allows is refused by the producer."""
        kwargs = dict(_PRODUCER_DEFAULTS) | dict(self.options.producer) | overrides
        if max_record_bytes is not None:
            needed = max_record_bytes + _REQUEST_OVERHEAD
            kwargs["max_request_size"] = max(kwargs.get("max_request_size", 0), needed)
        return Forwarder(NullableProducer(acks="all", **self._common, **kwargs))

    def consumer_kwargs(self, group_id: str | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The aiokafka consumer arguments: defaults < properties < ``overrides``."""
        kwargs = dict(_CONSUMER_DEFAULTS) | dict(self.options.consumer) | dict(overrides)
        strategy = kwargs.pop("partition_assignment_strategy", None)
        if strategy is not None:
            kwargs["partition_assignment_strategy"] = (_ASSIGNORS[strategy],)
        return {
            **self._common,
            **kwargs,
            "group_id": group_id,
            "enable_auto_commit": False,
            "isolation_level": "read_committed",
        }

    def group_consumer(
        self, topic: str, group_id: str, listener: RebalanceCallbacks, **overrides: Any
    ) -> GroupConsumer:
        consumer = AIOKafkaConsumer(**self.consumer_kwargs(group_id, overrides))
        return GroupConsumer(consumer, topic, group_id, listener)

    def reader(self, group_id: str | None = None, **overrides: Any) -> TopicReader:
        kwargs = self.consumer_kwargs(group_id, {**_READER_DEFAULTS, **overrides})
        return TopicReader(AIOKafkaConsumer(**kwargs))
