"""The demo driver's view of the sandbox's Kafka broker (plain, synchronous kafka-python, as
its SQS side uses boto3; every call blocks, so the driver runs them in a thread).

* ``create`` makes the workload's topic; ``send`` produces the demo's records, one
  request each (Tansu 0.6 under-reports a partition's end offset after a batched
  produce, so the demo's own records never make one);
* ``unconsumed`` counts the records of a topic past what the workload's group committed
  (the group every consumer of the split is in), measured against the partitions' real
  ends: the listed end, moved past any record a fetch still finds there (the split
  worker's forwards are batched);
* ``settled`` says no topic holds an unconsumed record; ``topics`` lists them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pymirror.demo.plan import Message

#: One fetch of an end probe waits this long for a record past the listed end.
_PROBE_MS = 200


class Topics:
    def __init__(self, bootstrap: str, group: str) -> None:
        from kafka import KafkaConsumer, KafkaProducer  # type: ignore[import-untyped]
        from kafka.admin import KafkaAdminClient  # type: ignore[import-untyped]

        self.group = group
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=0, enable_idempotence=False
        )
        # In the group only to read its committed offsets: it never subscribes, so it
        # never joins.
        self.looker = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            fetch_max_wait_ms=_PROBE_MS // 2,
        )

    def close(self) -> None:
        self.looker.close(autocommit=False)
        self.producer.close()
        self.admin.close()

    def create(self, topic: str) -> None:
        from kafka.admin import NewTopic

        self.admin.create_topics([NewTopic(topic, 1, 1)])

    def send(self, topic: str, messages: Iterable[Message]) -> None:
        for m in messages:
            headers = [("author", m.author.encode())]
            value = json.dumps(m.body).encode()
            self.producer.send(topic, value=value, headers=headers).get(timeout=30)

    def topics(self) -> set[str]:
        """Every topic but the broker's internal ones."""
        return {t for t in self.looker.topics() if not t.startswith("__")}

    def unconsumed(self, topic: str) -> int:
        """Records of ``topic`` past the group's committed offsets (0 for a topic gone)."""
        from kafka import TopicPartition

        partitions = self.looker.partitions_for_topic(topic) or set()
        count = 0
        for p in sorted(partitions):
            tp = TopicPartition(topic, p)
            count += max(0, self._real_end(tp) - (self.looker.committed(tp) or 0))
        return count

    def _real_end(self, tp: Any) -> int:
        [end] = self.looker.end_offsets([tp]).values()
        self.looker.assign([tp])
        while True:
            self.looker.seek(tp, end)
            records = self.looker.poll(timeout_ms=_PROBE_MS).get(tp)
            if not records:
                return int(end)
            end = records[-1].offset + 1

    def settled(self, holding: Iterable[str] = ()) -> bool:
        """No topic (but those of ``holding``) holds a record the group did not consume."""
        return all(self.unconsumed(t) == 0 for t in self.topics() - set(holding))
