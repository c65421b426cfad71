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

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from registry.errors import ModelError
from registry.resources import Resource

GROUP = "queues.mirrord.metalbear.co"
VERSION = "v1alpha"
API_VERSION = f"{GROUP}/{VERSION}"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_REF = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$"

U32_MAX = 2**32 - 1
NonEmpty = Annotated[str, Field(min_length=1)]
WorkloadType = Literal["Deployment", "StatefulSet", "Rollout"]


class WireModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, strict=True, extra="allow"
    )


class ObjectMeta(WireModel):
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


class KindObject(WireModel):
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


class QueueNameSource(WireModel):
    """Where the consumer reads the queue name: exactly one of ``env_var`` and ``regex_pattern``."""

    env_var: NonEmpty | None = None
    """Env var of the consumer's container holding the queue name or URL."""
    regex_pattern: NonEmpty | None = None
    """A regex on env var names: every matching env var holds a queue to split."""

    @model_validator(mode="after")
    def _exactly_one(self) -> QueueNameSource:
        if (self.env_var is None) == (self.regex_pattern is None):
            raise ValueError("exactly one of envVar and regexPattern")
        return self


class _QueueFields(WireModel):
    """The fields the CRD types for every ``queueType`` (the rest is kept as extra)."""

    SUPPORTED: ClassVar[bool]
    queue_type: NonEmpty
    name_source: QueueNameSource | None = None
    fallback_name: NonEmpty | None = None
    """The queue name when the env var is absent from the consumer (the patch adds it)."""
    names_from_json_map: bool | None = None
    """The value is a JSON object whose values are the queue names."""
    tags: dict[str, str] | None = None
    """Tags on every temporary queue made for this queue (they win over the original's)."""
    sns: bool | None = None
    """Filters also match SNS notification attributes carried in the JSON body."""
    s3_event: bool | None = None
    """mirrord's S3 event notification matching; kept, reported as unsupported."""


class SqsQueueDetails(_QueueFields):
    """An SQS queue: the one ``queueType`` pymirror splits."""

    SUPPORTED = True
    queue_type: Literal["SQS"]
    name_source: QueueNameSource


class UnknownQueueDetails(_QueueFields):
    """Any other ``queueType`` (RMQ, or one a later mirrord adds): kept as written, fields
    included, so that listing and watching registries never fails on it; the session that
    asks for such a queue is failed as unsupported (``SUPPORTED`` is False)."""

    SUPPORTED = False

    @model_validator(mode="after")
    def _not_sqs(self) -> UnknownQueueDetails:
        if self.queue_type == "SQS":  # only reachable when built directly
            raise ValueError("queueType SQS is SqsQueueDetails")
        return self


def _queue_kind(value: Any) -> str | None:
    if isinstance(value, _QueueFields):
        return _SQS if value.SUPPORTED else _OTHER
    queue_type = (
        value.get("queueType", value.get("queue_type")) if isinstance(value, dict) else None
    )
    if queue_type is None:
        return None  # pydantic reports the missing queueType
    return _SQS if queue_type == "SQS" else _OTHER


_SQS, _OTHER = "queueType=SQS", "queueType=other"
_UNION_TAGS = {_SQS, _OTHER}
"""Tags pydantic puts in error locations; ``_fields`` leaves them out."""
QueueDetails = Annotated[
    Annotated[SqsQueueDetails, Tag(_SQS)] | Annotated[UnknownQueueDetails, Tag(_OTHER)],
    Discriminator(
        _queue_kind,
        custom_error_type="queue_type_missing",
        custom_error_message="queueType: Field required",
    ),
]
"""One queue of a registry: ``SqsQueueDetails`` or ``UnknownQueueDetails`` (by ``queueType``)."""


class QueueConsumer(WireModel):
    name: NonEmpty
    container: str | None = None
    workload_type: WorkloadType


class WorkloadQueueRegistrySpec(WireModel):
    queues: dict[str, QueueDetails]
    consumer: QueueConsumer
    workload_restart_timeout: Annotated[int, Field(ge=0, le=U32_MAX)] | None = None
    """Seconds to wait for the patched workload's rollout; unset = 120."""


class MirrordWorkloadQueueRegistry(KindObject):
    """SQS queues (queue id -> details) a workload consumes; in the target's namespace."""

    RESOURCE = Resource(GROUP, VERSION, "mirrordworkloadqueueregistries")
    kind: Literal["MirrordWorkloadQueueRegistry"] = "MirrordWorkloadQueueRegistry"
    spec: WorkloadQueueRegistrySpec


# --- MirrordKafkaTopicsConsumer -----------------------------------------------------------


class DirectEnvVar(WireModel):
    container: NonEmpty
    variable: NonEmpty
    fallback: NonEmpty | None = None
    """The value when the variable is not in the pod spec (the patch then adds it)."""


class EnvSource(WireModel):
    direct_env_var: DirectEnvVar


class KafkaTopic(WireModel):
    id: NonEmpty
    client_config: NonEmpty
    """A MirrordKafkaClientConfig in the operator's namespace."""
    group_id_sources: list[EnvSource] = Field(default_factory=list)
    """Where the pod spec holds the consumer group id (plain consumers)."""
    application_id_sources: list[EnvSource] = Field(default_factory=list)
    """Kafka Streams application ids: kept, reported as unsupported."""
    name_sources: Annotated[list[EnvSource], Field(min_length=1)]

    @model_validator(mode="after")
    def _one_id_kind(self) -> KafkaTopic:
        if bool(self.group_id_sources) == bool(self.application_id_sources):
            raise ValueError(
                "exactly one of groupIdSources and applicationIdSources must be non-empty"
            )
        return self


class KafkaTopicsConsumerSpec(WireModel):
    consumer_api_version: NonEmpty
    consumer_kind: WorkloadType
    consumer_name: NonEmpty
    consumer_restart_timeout: Annotated[int, Field(ge=0, le=U32_MAX)] | None = None
    """Seconds to wait for the patched workload's rollout; unset = 60."""
    split_ttl: Annotated[int, Field(ge=0, le=U32_MAX)] | None = None
    """Seconds a split outlives its last session (no restart for the next); unset = 0."""
    topics: list[KafkaTopic]

    @model_validator(mode="after")
    def _unique_ids(self) -> KafkaTopicsConsumerSpec:
        ids = [t.id for t in self.topics]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:  # topics is a list-map keyed by id
            raise ValueError(f"spec.topics: duplicate id {', '.join(duplicates)}")
        return self


class MirrordKafkaTopicsConsumer(KindObject):
    """Kafka topics a workload consumes; in the target's namespace."""

    RESOURCE = Resource(GROUP, VERSION, "mirrordkafkatopicsconsumers")
    kind: Literal["MirrordKafkaTopicsConsumer"] = "MirrordKafkaTopicsConsumer"
    spec: KafkaTopicsConsumerSpec


# --- MirrordKafkaClientConfig -------------------------------------------------------------


class KafkaClientProperty(WireModel):
    name: NonEmpty
    value: JsonValue = None
    """A string, number or boolean; null (or absent) removes an inherited property. The CRD
    accepts any JSON here; registry.kafka_client_configs rejects non-scalars by name."""


class KafkaAuthenticationExtra(WireModel):
    kind: NonEmpty
    """``MSK_IAM`` in mirrord; pymirror reports any as unsupported."""
    aws_region: NonEmpty | None = None


class KafkaClientConfigSpec(WireModel):
    parent: NonEmpty | None = None
    load_from_secret: Annotated[str, Field(pattern=SECRET_REF)] | None = None
    """``<namespace>/<name>`` of a Secret whose data entries are properties."""
    properties: list[KafkaClientProperty] | None = None
    client_implementation: NonEmpty | None = None
    """``librdkafka`` or ``java`` in mirrord (any value kept); pymirror uses aiokafka."""
    authentication_extra: KafkaAuthenticationExtra | None = None


class MirrordKafkaClientConfig(KindObject):
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


_M = TypeVar("_M", bound=KindObject)


def parse_object(obj: dict[str, Any]) -> RegistryObject:
    """The model of ``obj`` (by its ``kind``); ``ModelError`` naming the object and fields."""
    return parse_kind(obj, KINDS)


def parse_kind(obj: dict[str, Any], kinds: dict[str, type[_M]]) -> _M:
    """``obj`` validated by ``kinds[obj["kind"]]``; ``ModelError`` naming the object and the
    wire fields (also for a kind that is not in ``kinds``)."""
    kind = obj.get("kind")
    model = kinds.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ModelError(f"kind {kind!r} is none of {', '.join(kinds)}")
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        raise ModelError(f"{kind} {_name(obj)}: {_fields(e)}") from e


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name")) if isinstance(meta, dict) else "(no metadata)"


def _fields(e: ValidationError) -> str:
    """``spec.consumer.workloadType: Input should be ...; ...`` (wire names)."""
    return "; ".join(
        ".".join(str(p) for p in err["loc"] if p not in _UNION_TAGS) + f": {err['msg']}"
        for err in e.errors()
    )
