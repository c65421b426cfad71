"""Pydantic models of pymirror's own kinds, as in ``crds/splitsessions.yaml`` and
``crds/queuesplits.yaml`` (group pymirror.dev, version v1alpha1).

Same conventions as ``registry.models``: snake_case in Python, camelCase on the
wire, strict types, unknown fields kept, and every check the CRD makes (enums,
minimums, name patterns, list-map keys, the CEL rules) made here too, so that
tests/integration/registry/test_models_agree_with_crds.py holds for these kinds.
Defaults the server fills in (``leaseSeconds``, ``mode``, ``handBack``) are the
model's defaults too; ``to_body`` leaves them out unless they were set.

``parse_pymirror_object`` picks the model by ``kind``.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from registry.models import (
    DNS_SUBDOMAIN,
    SECRET_REF,
    KindObject,
    NonEmpty,
    WireModel,
    WorkloadType,
    parse_kind,
)
from registry.resources import Resource

GROUP = "pymirror.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[tT](\d{2}):(\d{2}):(\d{2})(\.\d+)?([zZ]|[+-]\d{2}:\d{2})"
)


def _date_time(value: str) -> str:
    """The API server's ``format: date-time``: RFC 3339 with a real date and an offset."""
    match = _RFC3339.fullmatch(value)
    valid = match is not None
    if match is not None:
        year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
        try:
            date(year, month, day)
        except ValueError:
            valid = False
        valid = valid and hour < 24 and minute < 60 and second < 60
    if not valid:
        raise ValueError(f"{value!r} is not an RFC 3339 date-time (e.g. 2026-01-02T03:04:05Z)")
    return value


DateTime = Annotated[str, AfterValidator(_date_time)]
Subdomain = Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN)]
Label = Annotated[str, Field(max_length=63, pattern=DNS_LABEL)]
SessionRef = Annotated[str, Field(pattern=SECRET_REF)]
"""``<namespace>/<name>`` of a SplitSession."""
NonNegative = Annotated[int, Field(ge=0)]
QueueKind = Literal["SQS", "Kafka"]
Mode = Literal["steal", "mirror"]


class Condition(WireModel):
    type: NonEmpty
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_transition_time: DateTime | None = None
    observed_generation: NonNegative | None = None


def _unique(items: list[Any] | None, key: str, *fields: str) -> None:
    """A list-map's keys are unique (the API server rejects a duplicate)."""
    keys = [tuple(getattr(i, f) for f in fields) for i in items or ()]
    duplicates = sorted({"/".join(map(str, k)) for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"{key}: duplicate {'/'.join(fields)} {', '.join(duplicates)}")


# --- SplitSession -------------------------------------------------------------------------


class SessionTarget(WireModel):
    api_version: NonEmpty
    kind: WorkloadType
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
    container: Label | None = None
    """The container whose env holds the queue names; unset = the first."""


class SessionOwner(WireModel):
    username: NonEmpty
    hostname: NonEmpty
    k8s_username: NonEmpty = Field(alias="k8sUsername")


class SessionQueue(WireModel):
    id: NonEmpty
    """The queue's id in the target's registry; ``*`` = every queue of this kind."""
    kind: QueueKind
    message_filter: dict[str, str] | None = None
    """Attribute (SQS) or header (Kafka) name to regex; all must match."""
    jq_filter: NonEmpty | None = None
    mode: Mode = "steal"


class SplitSessionSpec(WireModel):
    target: SessionTarget
    owner: SessionOwner
    queues: Annotated[list[SessionQueue], Field(min_length=1)]
    lease_seconds: Annotated[int, Field(ge=6)] = 30
    renew_time: DateTime | None = None

    @model_validator(mode="after")
    def _unique_queues(self) -> SplitSessionSpec:
        _unique(self.queues, "spec.queues", "id", "kind")
        return self


class SessionQueueStatus(WireModel):
    """What the local process gets for one split queue."""

    id: NonEmpty
    original: NonEmpty
    kind: QueueKind | None = None
    split: Subdomain | None = None
    """The QueueSplit (operator namespace) the queue joined."""
    temporary: NonEmpty | None = None
    env_var: NonEmpty | None = None
    value: str | None = None


class SplitSessionStatus(WireModel):
    phase: Literal["Pending", "Ready", "Failed", "Ending"] | None = None
    sequence: Annotated[int, Field(ge=1)] | None = None
    message: str | None = None
    end_reason: Literal["Completed", "Expired", "Killed", "Failed"] | None = None
    queues: list[SessionQueueStatus] | None = None
    conditions: list[Condition] | None = None

    @model_validator(mode="after")
    def _unique_keys(self) -> SplitSessionStatus:
        _unique(self.queues, "status.queues", "id", "original")
        _unique(self.conditions, "status.conditions", "type")
        return self


class SplitSession(KindObject):
    """One developer's session on one target workload; in the target's namespace."""

    RESOURCE = Resource(GROUP, VERSION, "splitsessions")
    api_version: str = API_VERSION
    kind: Literal["SplitSession"] = "SplitSession"
    spec: SplitSessionSpec
    status: SplitSessionStatus | None = None


# --- QueueSplit ---------------------------------------------------------------------------


class SplitTarget(WireModel):
    api_version: NonEmpty
    kind: WorkloadType
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
    namespace: Label
    container: Label | None = None
    env_var: NonEmpty | None = None
    """The env var of the container that names the original."""


class Route(WireModel):
    session: SessionRef
    sequence: Annotated[int, Field(ge=1)]
    destination: NonEmpty
    """The session's temporary queue URL or topic."""
    message_filter: dict[str, str] | None = None
    jq_filter: NonEmpty | None = None
    mode: Mode = "steal"


class QueueSplitSpec(WireModel):
    kind: QueueKind
    queue_id: NonEmpty | None = None
    original: NonEmpty
    group_id: NonEmpty | None = None
    """Kafka only (and required there): the workload's consumer group id."""
    client_config: NonEmpty | None = None
    """Kafka only (and required there): the MirrordKafkaClientConfig the worker uses."""
    target: SplitTarget
    fallback: NonEmpty | None = None
    routes: list[Route] | None = None
    hand_back: bool = False

    @model_validator(mode="after")
    def _kafka_fields(self) -> QueueSplitSpec:
        kafka = self.kind == "Kafka"
        for name, value in (("groupId", self.group_id), ("clientConfig", self.client_config)):
            if (value is not None) != kafka:
                raise ValueError(f"spec.{name} is set for a Kafka topic and only then")
        _unique(self.routes, "spec.routes", "session")
        return self


class HandBackStatus(WireModel):
    phase: Literal["Draining", "Returning", "Done"] | None = None
    remaining: NonNegative | None = None
    message: str | None = None


class SplitCounters(WireModel):
    read: NonNegative | None = None
    unmatched: NonNegative | None = None
    fallback: NonNegative | None = None
    failed: NonNegative | None = None
    lag: NonNegative | None = None
    forwarded: dict[str, NonNegative] | None = None
    """Per session."""


class TemporaryResource(WireModel):
    """A temporary queue/topic, recorded before it is created; only these are deleted."""

    name: NonEmpty
    url: NonEmpty | None = None
    role: Literal["fallback", "session"]
    session: SessionRef | None = None
    created: bool | None = None

    @model_validator(mode="after")
    def _session_iff_role(self) -> TemporaryResource:
        if (self.session is not None) != (self.role == "session"):
            raise ValueError("session is set for a session's resource and only then")
        return self


class WorkloadPatchStatus(WireModel):
    state: Literal["Patching", "RolledOut", "Restoring", "Restored"]
    observed_generation: NonNegative | None = None


class QueueSplitStatus(WireModel):
    applied_generation: NonNegative | None = None
    active_sessions: NonNegative | None = None
    ended_sessions: list[SessionRef] | None = None
    hand_back: HandBackStatus | None = None
    counters: SplitCounters | None = None
    temporary_resources: list[TemporaryResource] | None = None
    workload: WorkloadPatchStatus | None = None
    worker_deployment: Subdomain | None = None
    conditions: list[Condition] | None = None

    @model_validator(mode="after")
    def _unique_keys(self) -> QueueSplitStatus:
        ended = self.ended_sessions or []
        if len(set(ended)) != len(ended):  # a list-type set
            raise ValueError("status.endedSessions: duplicate session")
        _unique(self.temporary_resources, "status.temporaryResources", "name")
        _unique(self.conditions, "status.conditions", "type")
        return self


class QueueSplit(KindObject):
    """One original queue/topic of a target while it is split; in the operator's namespace."""

    RESOURCE = Resource(GROUP, VERSION, "queuesplits")
    api_version: str = API_VERSION
    kind: Literal["QueueSplit"] = "QueueSplit"
    spec: QueueSplitSpec
    status: QueueSplitStatus | None = None


PymirrorObject = SplitSession | QueueSplit
PYMIRROR_KINDS: dict[str, type[PymirrorObject]] = {
    m.__name__: m for m in (SplitSession, QueueSplit)
}


def parse_pymirror_object(obj: dict[str, Any]) -> PymirrorObject:
    """The model of ``obj`` (by its ``kind``); ``ModelError`` naming the object and fields."""
    return parse_kind(obj, PYMIRROR_KINDS)
