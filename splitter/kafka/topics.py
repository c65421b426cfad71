"""Temporary Kafka topics: named by the topic format, shaped like the original.

A temporary topic (a session's, or the fallback the workload reads) gets the
original's partition count - so forwarding to the same partition number keeps
per-partition order - the configs set on the original (retention, cleanup
policy, ``min.insync.replicas``, ...) and the original's replication factor,
capped by the brokers live now (:func:`replication_factor`;
``KafkaSettings.topic_replication_factor`` sets another one). A replication
factor of 1 next to a copied ``min.insync.replicas`` of 2 would make every
``acks=all`` forward fail. Names come from
``OPERATOR_KAFKA_SPLITTING_TOPIC_FORMAT`` (:class:`~splitter.naming.NameFormat`).
Everything is checked before the first topic is created: a missing original
raises ``KafkaTopicError`` and nothing is left behind.

When the original grows, :func:`grow_to_original` grows its temporary
topics (the ones its name format names) to match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

import structlog

from splitter.errors import KafkaError
from splitter.kafka.admin import KafkaAdmin, TopicSpec, missing_topic
from splitter.naming import NameFormat

log = structlog.get_logger()


@dataclass(frozen=True)
class TemporaryTopic:
    name: str
    original: str
    fallback: bool
    spec: TopicSpec


def replication_factor(original: int, live_brokers: int, configured: int | None = None) -> int:
    """Replicas of a temporary topic: ``configured`` or the original's, at most one per
    live broker, at least one."""
    wanted = configured if configured is not None else original
    return max(1, min(wanted, live_brokers))


async def create_temporary_topic(
    admin: KafkaAdmin,
    original: str,
    name_format: NameFormat,
    *,
    fallback: bool,
    spec: TopicSpec | None = None,
    random_digits: str | None = None,
    replication: int | None = None,
) -> TemporaryTopic:
    """Create a topic like ``original`` (``KafkaTopicError`` if the original is missing).

    ``replication``: the configured replication factor (None: the original's).
    """
    if spec is None:
        spec = await admin.spec_of(original)
    brokers = await admin.live_brokers()
    spec = replace(spec, replication=replication_factor(spec.replication, brokers, replication))
    name = name_format.render(original, fallback=fallback, random_digits=random_digits)
    await admin.create_topic(name, spec)
    return TemporaryTopic(name, original, fallback, spec)


def is_temporary_name(name: str, original: str, name_format: NameFormat) -> bool:
    """Whether ``name`` is a name ``name_format`` gives a temporary topic of ``original``."""
    for fallback in (True, False):
        rendered = name_format.render(original, fallback=fallback, random_digits=_PLACEHOLDER)
        pattern = re.escape(rendered).replace(_PLACEHOLDER, r"\d{10}")
        if re.fullmatch(pattern, name):
            return True
    return False


_PLACEHOLDER = "0123456789"


def _count_of(counts: dict[str, int], topic: str) -> int:
    """``topic``'s partition count among ``counts``; ``KafkaTopicError`` if it is missing."""
    if topic not in counts:
        raise missing_topic(topic)
    return counts[topic]


async def grow_to_original(
    admin: KafkaAdmin, original: str, destinations: Iterable[str], name_format: NameFormat
) -> dict[str, int]:
    """Grow every temporary topic among ``destinations`` to the original's partition count.

    Only topics named by ``name_format`` for ``original`` are grown (pymirror's own;
    a topic someone else made is never changed). A broker that cannot add
    partitions (Tansu 0.6 lacks CreatePartitions) is logged: the forwarder then
    maps the extra source partitions onto the existing ones, order kept.
    Returns the partition count of each destination afterwards.
    """
    destinations = list(destinations)
    known = await admin.partition_counts([original, *destinations])
    wanted = _count_of(known, original)
    counts: dict[str, int] = {}
    for topic in destinations:
        have = _count_of(known, topic)
        if have < wanted and is_temporary_name(topic, original, name_format):
            try:
                await admin.grow(topic, wanted)
            except KafkaError as e:
                log.warning(
                    "kafka temporary topic not grown; extra partitions share existing ones",
                    topic=topic,
                    partitions=have,
                    original_partitions=wanted,
                    error=str(e),
                )
            else:
                log.info("kafka temporary topic grown", topic=topic, partitions=wanted)
                have = wanted
        counts[topic] = have
    return counts
