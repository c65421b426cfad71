"""Temporary Kafka topics: named by the topic format, shaped like the original.

A temporary topic (a session's, or the fallback the workload reads) gets the
original's partition count - so forwarding to the same partition number keeps
per-partition order - and the configs set on the original (retention,
cleanup policy, ...). Names come from ``OPERATOR_KAFKA_SPLITTING_TOPIC_FORMAT``
(:class:`~splitter.naming.NameFormat`). Everything is checked before the
first topic is created: a missing original raises ``KafkaTopicError`` and
nothing is left behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from splitter.kafka.admin import KafkaAdmin, TopicSpec
from splitter.naming import NameFormat


@dataclass(frozen=True)
class TemporaryTopic:
    name: str
    original: str
    fallback: bool
    spec: TopicSpec


async def create_temporary_topic(
    admin: KafkaAdmin,
    original: str,
    name_format: NameFormat,
    *,
    fallback: bool,
    spec: TopicSpec | None = None,
    random_digits: str | None = None,
) -> TemporaryTopic:
    """Create a topic like ``original`` (``KafkaTopicError`` if the original is missing)."""
    if spec is None:
        spec = await admin.spec_of(original)
    name = name_format.render(original, fallback=fallback, random_digits=random_digits)
    await admin.create_topic(name, spec)
    return TemporaryTopic(name, original, fallback, spec)
