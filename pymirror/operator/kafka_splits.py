"""The Kafka side of a QueueSplit: the operator's temporary topics of one split.

``Splits`` (pymirror/operator/splits.py) drives a Kafka split exactly as an SQS one; what
differs is here. ``client_properties`` resolves the split's ``MirrordKafkaClientConfig``
(operator namespace, ``registry.kafka_client_configs.load_client_config``),
``operator_clients`` makes the clients of those properties; ``Splits`` keeps one admin
client per split and wraps it in a ``KafkaTopics`` per call. ``open_topics`` does both
with an admin client of its own::

    async with open_topics(kube, settings, client_config, original) as topics:
        name = topics.new_name(fallback=False)      # rendered by kafka.topic_format
        await topics.create(name, fallback=False)   # after it was recorded
        await topics.delete(name, fallback=False)   # only a name the format gives

* A temporary topic (a session's, or the fallback) is named by the Kafka topic format
  (``kafka.topic_format``, mirrord's ``OPERATOR_KAFKA_SPLITTING_TOPIC_FORMAT``) and gets
  the original's partition count, its topic configs and its replication factor, capped
  by the live brokers (``splitter.kafka.topics``). ``create`` of a topic that exists
  already is done (the name was recorded before any create, and its 10 random digits
  are this split's): an operator killed between the create and marking the record
  created, or two joins at once, end the same.
* Nothing is deleted that pymirror did not create: ``delete`` deletes a recorded name
  only if the topic format renders exactly that name for this split's original and the
  record's role (fallback or session); any other name is logged and left alone.
* ``never_held_records`` tells ``Splits.leave`` that a session's topic is missing or
  empty (every partition's listed end is 0): nothing was ever forwarded there, so no
  worker owes it an end. It asks the split's admin client (ListOffsets to the leaders,
  ``KafkaAdmin.end_offsets``), never a consumer of its own: a consumer's retries name the
  topic in metadata requests, and noida-db creates a topic named so again after the
  worker deleted it (an orphan). A look that fails (a broker away) says False: the
  caller looks again on its next pass.
* ``is_temporary`` says whether a topic looks like one of pymirror's temporary topics of
  any original (a workload env still patched to a fallback).

Kafka errors pass through as the ``splitter`` tree (``KafkaTopicError`` for a missing
original, ``KafkaUnavailableError``, retriable, for a broker away); a client config that
does not resolve is a ``ClientConfigError``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace

import structlog

from pymirror.settings import Settings
from registry.kafka_client_configs import load_client_config
from registry.objects import Kube
from splitter.errors import KafkaError, KafkaTopicError
from splitter.kafka.admin import KafkaAdmin
from splitter.kafka.clients import KafkaClients
from splitter.kafka.properties import translate_properties
from splitter.kafka.topics import replication_factor
from splitter.naming import RANDOM_DIGITS, NameFormat

log = structlog.get_logger("pymirror.operator.kafka_splits")

_DIGITS = re.compile(rf"(?=([0-9]{{{RANDOM_DIGITS}}}))")
#: Stand-ins rendered into a format to make its pattern (broker-legal, so kept as they are).
_ANY_ORIGINAL = "pymirrorAnyOriginalTopic"
_ANY_DIGITS = "0123456789"


class KafkaTopics:
    """The temporary topics of one Kafka split (see the module docstring)."""

    def __init__(
        self,
        clients: KafkaClients,
        admin: KafkaAdmin,
        settings: Settings,
        original: str,
    ) -> None:
        self.clients = clients
        self.admin = admin
        self.settings = settings
        self.original = original
        self.name_format: NameFormat = settings.kafka.name_format

    # --- names ------------------------------------------------------------------------------

    def new_name(self, *, fallback: bool) -> str:
        """A fresh temporary topic name for the original (random digits)."""
        return self.name_format.render(self.original, fallback=fallback)

    def owned(self, name: str, *, fallback: bool) -> bool:
        """Whether the topic format renders exactly ``name`` for the original and role."""
        return any(
            self.name_format.render(self.original, fallback=fallback, random_digits=d) == name
            for d in _DIGITS.findall(name)
        )

    def is_temporary(self, topic: str) -> bool:
        """Whether ``topic`` looks like a temporary topic of pymirror for any original."""
        return is_temporary_topic(topic, self.name_format)

    # --- the broker -------------------------------------------------------------------------

    async def check_original(self, what: str) -> None:
        """``KafkaTopicError`` naming ``what`` (the workload) if the original is missing."""
        if not await self.admin.exists(self.original):
            raise KafkaTopicError(
                f"original topic {self.original!r} of {what} does not exist; check the topic "
                "in the workload's env and MirrordKafkaTopicsConsumer, and the "
                "bootstrap.servers of its MirrordKafkaClientConfig"
            )

    async def create(self, name: str, *, fallback: bool) -> None:
        """Create recorded topic ``name`` like the original, unless it exists already."""
        if not self.owned(name, fallback=fallback):
            role = "fallback" if fallback else "session"
            raise KafkaTopicError(
                f"recorded {role} topic {name!r} does not fit the Kafka topic format "
                f"{self.name_format.template!r} for {self.original!r} (was kafka.topic_format "
                "changed while the split ran?); restore the format, or end the split's sessions"
            )
        if await self.admin.exists(name):
            return
        spec = await self.admin.spec_of(self.original)
        live = await self.admin.live_brokers()
        configured = self.settings.kafka.topic_replication_factor
        spec = replace(spec, replication=replication_factor(spec.replication, live, configured))
        try:
            await self.admin.create_topic(name, spec)
        except KafkaError:
            if not await self.admin.exists(name):  # not a create that raced ours
                raise
        log.info("kafka temporary topic created", topic=name, partitions=spec.partitions)

    async def never_held_records(self, name: str) -> bool:
        """``name`` is missing, or no record was ever written to it (False when that cannot
        be told now, e.g. a broker away: the caller looks again on its next pass). Over the
        split's admin client: no connection of its own, and no metadata request naming the
        topic, which would create it again on noida-db when the worker deleted it meanwhile."""
        try:
            ends = await self.admin.end_offsets(name)
        except KafkaTopicError:
            return True  # missing, or the worker deleted it meanwhile
        except KafkaError as e:
            log.info(
                "kafka session topic not measured; looked at again later", topic=name, error=str(e)
            )
            return False
        return all(end == 0 for end in ends.values())

    async def delete(self, name: str, *, fallback: bool) -> bool:
        """Delete ``name`` if the format gives it for this role (True: pymirror's)."""
        if not self.owned(name, fallback=fallback):
            log.warning(
                "recorded topic does not fit the topic format: not pymirror's, left alone",
                topic=name,
                original=self.original,
                format=self.name_format.template,
            )
            return False
        await self.admin.delete_topic(name)  # a topic already gone is fine
        log.info("kafka temporary topic deleted", topic=name, fallback=fallback)
        return True


def is_temporary_topic(topic: str, name_format: NameFormat) -> bool:
    """Whether ``topic`` fits ``name_format`` for some original (either role)."""
    for fallback in (True, False):
        rendered = name_format.render(_ANY_ORIGINAL, fallback=fallback, random_digits=_ANY_DIGITS)
        pattern = re.escape(rendered).replace(_ANY_ORIGINAL, ".+")
        pattern = pattern.replace(_ANY_DIGITS, rf"\d{{{RANDOM_DIGITS}}}", 1)
        if re.fullmatch(pattern, topic):
            return True
    return False


async def client_properties(kube: Kube, settings: Settings, client_config: str) -> dict[str, str]:
    """The Kafka properties of MirrordKafkaClientConfig ``client_config`` (operator
    namespace), resolved now (an edited config is seen on the next call)."""
    operator = settings.operator
    properties = await load_client_config(
        kube, operator.namespace, client_config, config=operator.config_kinds.kinds()
    )
    return dict(properties)


def operator_clients(properties: Mapping[str, str]) -> KafkaClients:
    """The operator's Kafka clients for ``properties`` (``KafkaPropertyError`` if bad)."""
    return KafkaClients(translate_properties(properties), client_id="pymirror-operator")


@asynccontextmanager
async def open_topics(
    kube: Kube, settings: Settings, client_config: str, original: str
) -> AsyncIterator[KafkaTopics]:
    """The topics of a split whose client config is ``client_config`` (operator namespace),
    over an admin client of their own (``Splits`` keeps one per split instead)."""
    clients = operator_clients(await client_properties(kube, settings, client_config))
    async with clients.admin() as admin:
        yield KafkaTopics(clients, admin, settings, original)
