"""Pydantic models of the registry kinds, as in ``crds/*.yaml`` (group queues.mirrord.metalbear.co).

Fields are snake_case in Python and camelCase on the wire (aliases); build by
either name. Each model checks what its CRD's schema checks (required fields,
enums, ``minLength``, ``minItems``, the ``loadFromSecret`` pattern, unique topic
ids of the list-map), strictly typed like the API server (no "1" -> 1 coercion).
Fields the models do not know are kept (``extra="allow"``), so an object written
by a newer CRD version survives a read-modify-write. tests/integration/registry/
test_models_agree_with_crds.py keeps models and CRDs in agreement against the
real API server.

``parse_object`` picks the model by ``kind``; ``to_body`` gives the JSON to send.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from registry.errors import ModelError
from registry.resources import Resource

GROUP = "queues.mirrord.metalbear.co"
VERSION = "v1alpha"
API_VERSION = f"{GROUP}/{VERSION}"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_REF = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$"

NonEmpty = Annotated[str, Field(min_length=1)]
WorkloadType = Literal["Deployment", "StatefulSet", "Rollout"]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, strict=True, extra="allow"
    )


class ObjectMeta(_Model):
    """The ``metadata`` fields pymirror reads; the rest (managedFields...) is kept as is."""

    name: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN)] | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None

    @model_validator(mode="after")
    def _named(self) -> ObjectMeta:
        if not self.name and not self.generate_name:
            raise ValueError("metadata.name or metadata.generateName is required")
        return self


class _Object(_Model):
    RESOURCE: ClassVar[Resource]

    api_version: str = API_VERSION
    metadata: ObjectMeta

    def to_body(self) -> dict[str, Any]:
        """The object as JSON for the API: camelCase, only the fields that were set (so a
        ``value: null`` that removes a property stays, and unset optionals are absent)."""
        body = self.model_dump(by_alias=True, mode="json", exclude_unset=True)
        kind = getattr(self, "kind")  # noqa: B009 - every kind model has one
        return {**body, "apiVersion": self.api_version, "kind": kind}


# --- MirrordWorkloadQueueRegistry ---------------------------------------------------------


class QueueNameSource(_Model):
    env_var: NonEmpty
    """Env var of the consumer's container holding the queue name or URL."""


class QueueDetails(_Model):
    queue_type: Literal["SQS", "Kafka"]
    name_source: QueueNameSource
    tags: dict[str, str] | None = None


class QueueConsumer(_Model):
    name: NonEmpty
    container: str | None = None
    workload_type: WorkloadType


class WorkloadQueueRegistrySpec(_Model):
    queues: dict[str, QueueDetails]
    consumer: QueueConsumer


class MirrordWorkloadQueueRegistry(_Object):
    """SQS queues (queue id -> details) a workload consumes; in the target's namespace."""

    RESOURCE = Resource(GROUP, VERSION, "mirrordworkloadqueueregistries")
    kind: Literal["MirrordWorkloadQueueRegistry"] = "MirrordWorkloadQueueRegistry"
    spec: WorkloadQueueRegistrySpec


# --- MirrordKafkaTopicsConsumer -----------------------------------------------------------


class DirectEnvVar(_Model):
    container: NonEmpty
    variable: NonEmpty


class EnvSource(_Model):
    direct_env_var: DirectEnvVar


class KafkaTopic(_Model):
    id: NonEmpty
    client_config: NonEmpty
    """A MirrordKafkaClientConfig in the operator's namespace."""
    group_id_sources: Annotated[list[EnvSource], Field(min_length=1)]
    name_sources: Annotated[list[EnvSource], Field(min_length=1)]


class KafkaTopicsConsumerSpec(_Model):
    consumer_api_version: NonEmpty
    consumer_kind: WorkloadType
    consumer_name: NonEmpty
    topics: list[KafkaTopic]

    @model_validator(mode="after")
    def _unique_ids(self) -> KafkaTopicsConsumerSpec:
        ids = [t.id for t in self.topics]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:  # topics is a list-map keyed by id
            raise ValueError(f"spec.topics: duplicate id {', '.join(duplicates)}")
        return self


class MirrordKafkaTopicsConsumer(_Object):
    """Kafka topics a workload consumes; in the target's namespace."""

    RESOURCE = Resource(GROUP, VERSION, "mirrordkafkatopicsconsumers")
    kind: Literal["MirrordKafkaTopicsConsumer"] = "MirrordKafkaTopicsConsumer"
    spec: KafkaTopicsConsumerSpec


# --- MirrordKafkaClientConfig -------------------------------------------------------------


class KafkaClientProperty(_Model):
    name: NonEmpty
    value: JsonValue = None
    """A string, number or boolean; null (or absent) removes an inherited property. The CRD
    accepts any JSON here; registry.kafka_client_configs rejects non-scalars by name."""


class KafkaClientConfigSpec(_Model):
    parent: NonEmpty | None = None
    load_from_secret: Annotated[str, Field(pattern=SECRET_REF)] | None = None
    """``<namespace>/<name>`` of a Secret whose data entries are properties."""
    properties: list[KafkaClientProperty] | None = None


class MirrordKafkaClientConfig(_Object):
    """Kafka client properties with inheritance; in the operator's namespace."""

    RESOURCE = Resource(GROUP, VERSION, "mirrordkafkaclientconfigs")
    kind: Literal["MirrordKafkaClientConfig"] = "MirrordKafkaClientConfig"
    spec: KafkaClientConfigSpec


RegistryObject = (
    MirrordWorkloadQueueRegistry | MirrordKafkaTopicsConsumer | MirrordKafkaClientConfig
)
KINDS: dict[str, type[RegistryObject]] = {
    m.__name__: m
    for m in (MirrordWorkloadQueueRegistry, MirrordKafkaTopicsConsumer, MirrordKafkaClientConfig)
}


def parse_object(obj: dict[str, Any]) -> RegistryObject:
    """The model of ``obj`` (by its ``kind``); ``ModelError`` naming the object and fields."""
    kind = obj.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ModelError(f"kind {kind!r} is none of {', '.join(KINDS)}")
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        raise ModelError(f"{kind} {_name(obj)}: {_fields(e)}") from e


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name")) if isinstance(meta, dict) else "(no metadata)"


def _fields(e: ValidationError) -> str:
    """``spec.consumer.workloadType: Input should be ...; ...`` (wire names)."""
    return "; ".join(".".join(str(p) for p in err["loc"]) + f": {err['msg']}" for err in e.errors())
