"""Settings of the operator: the ``operator`` group of the root ``Settings``.

:class:`OperatorSettings` is composed into ``pymirror.settings.Settings`` as ``operator``
(environment ``PYMIRROR_OPERATOR__<FIELD>``; mirrord's ``OPERATOR_SQS_SPLITTING`` and
``OPERATOR_KAFKA_SPLITTING`` set the two switches too). Mappings and lists are given as
JSON (``PYMIRROR_OPERATOR__WORKER_ENV='{"AWS_ENDPOINT_URL": "http://sqs:4566"}'``).

Where the kinds are served is data, as everywhere in pymirror: ``workload_kinds`` and
``config_kinds`` map a kind to its ``apiVersion`` (production: ``apps/v1``, ``v1``; the
sandbox and the tests: the stand-in groups) and ``kinds()`` / ``config_sources()`` turn
them into ``registry`` types. The worker fields describe the split-worker Deployment
(pymirror/operator/worker_deployments.py). The worker's grace period is checked against
the worker's own shutdown bound (its ``PYMIRROR_SQS__*`` / ``PYMIRROR_KAFKA__*`` settings
as ``worker_env`` gives them, defaults otherwise), so a worker is never SIGKILLed while
it still releases or commits what it holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Self, TypeVar

from pydantic import (
    BaseModel,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from registry.config_sources import CONFIG_MAPS, SECRETS, ConfigKinds
from registry.errors import WorkloadError
from registry.resources import Resource
from registry.workloads import WorkloadKinds
from splitter.kafka.settings import KafkaSettings
from splitter.sqs.settings import SqsSettings

#: Seconds the worker's grace period must leave beyond its shutdown bound: closing its
#: clients and the last status write after the worker itself has stopped.
EXIT_MARGIN = 5.0

DEFAULT_WORKLOAD_KINDS = {
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "Rollout": "argoproj.io/v1alpha1",
}
DEFAULT_CONFIG_KINDS = {"ConfigMap": "v1", "Secret": "v1"}
_CONFIG_PLURALS = {"ConfigMap": CONFIG_MAPS.plural, "Secret": SECRETS.plural}
_RESOURCE_KEYS = ("requests", "limits")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _api_version(kind: str, text: str) -> tuple[str, str]:
    """``(group, version)`` of ``GROUP/VERSION`` or of a core ``VERSION``."""
    group, _, version = text.rpartition("/")
    if not version or text.count("/") > 1 or text.startswith("/"):
        raise ValueError(f"{kind}: expected GROUP/VERSION (or v1 for the core group), got {text!r}")
    return group, version


class _ApiVersions(dict[str, str]):
    """``kind -> apiVersion`` as a settings value (JSON in the environment)."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(cls._build, handler(dict[str, str]))

    @classmethod
    def _build(cls, value: dict[str, str]) -> Self:
        raise NotImplementedError


class WorkloadApiVersions(_ApiVersions):
    """apiVersion per workload kind; ``kinds()`` is the ``registry`` view of it."""

    @classmethod
    def _build(cls, value: dict[str, str]) -> Self:
        kinds = WorkloadKinds()
        given: dict[str, str] = {}
        try:
            for kind, api_version in value.items():
                given[kinds.canonical(kind)] = api_version
            kinds.with_api_versions(**given)
        except WorkloadError as e:
            raise ValueError(str(e)) from None
        return cls({**DEFAULT_WORKLOAD_KINDS, **given})

    def kinds(self) -> WorkloadKinds:
        """Where Deployments, StatefulSets and Rollouts are served."""
        return WorkloadKinds().with_api_versions(**self)


class ConfigApiVersions(_ApiVersions):
    """apiVersion per config kind (ConfigMap, Secret); ``kinds()`` is the ``registry`` view."""

    @classmethod
    def _build(cls, value: dict[str, str]) -> Self:
        given: dict[str, str] = {}
        for kind, api_version in value.items():
            known = next((k for k in _CONFIG_PLURALS if k.lower() == kind.lower()), None)
            if known is None:
                raise ValueError(f"unknown config kind {kind!r}; use ConfigMap or Secret")
            _api_version(known, api_version)
            given[known] = api_version
        return cls({**DEFAULT_CONFIG_KINDS, **given})

    def kinds(self) -> ConfigKinds:
        """Where ConfigMaps and Secrets are served."""
        resources = {
            kind: Resource(*_api_version(kind, api_version), _CONFIG_PLURALS[kind])
            for kind, api_version in self.items()
        }
        return ConfigKinds(config_map=resources["ConfigMap"], secret=resources["Secret"])


def worker_shutdown_bound(env: Mapping[str, str]) -> float:
    """Seconds a split worker takes at most from SIGTERM to exit, with the settings ``env``
    gives it (``PYMIRROR_SQS__*``, ``PYMIRROR_KAFKA__*``; defaults for the rest): the longer
    of the SQS bound (``shutdown_grace``, a long poll under way: ``wait_seconds``) and the
    Kafka one (``flush_timeout``). ``ValueError`` naming the variable if one is invalid."""
    sqs = _worker_group(env, "SQS", SqsSettings)
    kafka = _worker_group(env, "KAFKA", KafkaSettings)
    return max(sqs.shutdown_grace, float(sqs.wait_seconds), kafka.flush_timeout)


_Group = TypeVar("_Group", bound=BaseModel)


def _worker_group(env: Mapping[str, str], group: str, model: type[_Group]) -> _Group:
    """The worker's ``group`` settings from the ``PYMIRROR_<GROUP>__*`` entries of ``env``."""
    prefix = f"PYMIRROR_{group}__"
    names = {}
    for name in env:
        field = name.upper().removeprefix(prefix).lower()
        if name.upper().startswith(prefix) and field in model.model_fields:
            names[field] = name
    try:
        return model.model_validate({field: env[name] for field, name in names.items()})
    except ValidationError as e:
        problems = []
        for err in e.errors():
            variable = names.get(str(err["loc"][0]), prefix + str(err["loc"][0]).upper())
            problems.append(f"{variable}={env.get(variable)!r}: {err['msg']}")
        raise ValueError(
            f"worker_env sets an invalid worker setting: {'; '.join(problems)}"
        ) from None


class OperatorSettings(BaseModel):
    """The operator (``pymirror operator``) and the split-worker Deployments it creates."""

    namespace: str = Field(
        "pymirror-system",
        min_length=1,
        description="The operator's namespace: QueueSplits, worker Deployments and "
        "MirrordKafkaClientConfigs live here.",
    )
    session_namespaces: list[str] = Field(
        default_factory=list,
        description='Namespaces to watch SplitSessions in, JSON (e.g. ["shop", "billing"]); '
        "empty = every namespace. `pymirror operator --namespace` overrides it.",
    )
    sqs_splitting: bool = Field(
        True,
        description="Split SQS queues; false refuses SQS queues in sessions. Also read from "
        "OPERATOR_SQS_SPLITTING (mirrord's name).",
    )
    kafka_splitting: bool = Field(
        True,
        description="Split Kafka topics; false refuses Kafka topics in sessions. Also read "
        "from OPERATOR_KAFKA_SPLITTING (mirrord's name).",
    )
    workload_restart_timeout: float = Field(
        120.0,
        gt=0,
        description="Seconds a patched workload may take to roll out (a registry's "
        "workloadRestartTimeout wins); mirrord's default.",
    )
    resync_seconds: float = Field(
        60.0,
        gt=0,
        description="Seconds between two full reconciles of every object, besides the watch "
        "events; catches what a lost event or a crash left.",
    )
    reconcile_workers: int = Field(
        32,
        ge=1,
        le=256,
        description="Objects reconciled at once (each object one at a time). The QueueSplit "
        "changes of the sessions reconciled meanwhile go out in one write, so this bounds "
        "how many joins or ends of one split share a write: with 4, ending 100 sessions at "
        "once took about 50 writes.",
    )
    gc_interval: float = Field(
        300.0,
        gt=0,
        description="Seconds between two garbage collections (also at start-up): routes of "
        "sessions that are gone, workload env patches, worker Deployments and temporary "
        "queues whose QueueSplit is gone.",
    )
    gc_queues: bool = Field(
        True,
        description="Let garbage collection delete pymirror's temporary SQS queues that no "
        "QueueSplit records, for the originals this operator has split. Turn it off when "
        "another pymirror operator (another cluster or operator namespace) splits the same "
        "queues in the same AWS account: the queue tags do not say which operator made them.",
    )
    workload_kinds: WorkloadApiVersions = Field(
        default_factory=lambda: WorkloadApiVersions(DEFAULT_WORKLOAD_KINDS),
        description="apiVersion per workload kind (Deployment, StatefulSet, Rollout), JSON; "
        "kinds not named keep apps/v1 and argoproj.io/v1alpha1. The worker Deployments are "
        "created as the Deployment kind given here.",
    )
    config_kinds: ConfigApiVersions = Field(
        default_factory=lambda: ConfigApiVersions(DEFAULT_CONFIG_KINDS),
        description="apiVersion per config kind (ConfigMap, Secret), JSON; v1 is the core group.",
    )
    worker_image: str = Field(
        "ghcr.io/pymirror/pymirror:0.1.0",
        min_length=1,
        description="Image of the split-worker containers.",
    )
    worker_command: list[str] = Field(
        default_factory=lambda: ["pymirror"],
        min_length=1,
        description="The worker container's command before `worker sqs|kafka --split ...`, "
        'JSON; the sandbox uses its own interpreter (["python", "-m", "pymirror"]).',
    )
    worker_replicas: int = Field(
        1,
        ge=1,
        description="Replicas of each worker Deployment; more share the original's receives "
        "(SQS) or partitions (Kafka).",
    )
    worker_resources: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        description="The worker container's resources (requests, limits), JSON; no CPU limit "
        "so forwarding is never throttled.",
    )
    worker_grace_seconds: int = Field(
        30,
        gt=0,
        description="terminationGracePeriodSeconds of the worker pods; must exceed the "
        f"worker's shutdown bound (the longer of sqs.shutdown_grace, sqs.wait_seconds and "
        f"kafka.flush_timeout as worker_env sets them) by {EXIT_MARGIN:g} s.",
    )
    worker_service_account: str = Field(
        "pymirror-worker",
        min_length=1,
        description="ServiceAccount of the worker pods (reads and patches queuesplits only).",
    )
    worker_env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment of every worker container, as one JSON object (e.g. "
        "AWS_ENDPOINT_URL, AWS_REGION, PYMIRROR_SQS__DRAIN_TIMEOUT; KUBECONFIG in the "
        "sandbox); not as PYMIRROR_OPERATOR__WORKER_ENV__<NAME>, which lowercases NAME.",
    )
    worker_metrics_port: int | None = Field(
        9400,
        ge=1,
        le=65535,
        description="Port of the worker's Prometheus /metrics, also its readiness probe; "
        "unset = no metrics (the pod is ready once it runs).",
    )
    worker_state_dir: str = Field(
        "/var/run/pymirror",
        min_length=1,
        description="Writable directory of the Kafka worker's own files (group member id, "
        "hand-back record); an emptyDir in the pod.",
    )

    @field_validator("session_namespaces", mode="after")
    @classmethod
    def _valid_namespaces(cls, value: list[str]) -> list[str]:
        bad = [n for n in value if not _NAMESPACE.fullmatch(n)]
        if bad:
            raise ValueError(
                f"not a namespace name: {', '.join(map(repr, bad))}; namespaces are DNS-1123 "
                "labels (lowercase letters, digits and '-', at most 63 characters)"
            )
        return list(dict.fromkeys(value))

    @field_validator("worker_resources", mode="after")
    @classmethod
    def _valid_resources(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        unknown = sorted(set(value) - set(_RESOURCE_KEYS))
        if unknown:
            raise ValueError(
                f"unknown key(s) {', '.join(unknown)}; worker_resources takes requests and limits"
            )
        return value

    @model_validator(mode="after")
    def _grace_exceeds_the_shutdown_bound(self) -> OperatorSettings:
        bound = worker_shutdown_bound(self.worker_env)
        if self.worker_grace_seconds < bound + EXIT_MARGIN:
            raise ValueError(
                f"worker_grace_seconds is {self.worker_grace_seconds} s but a worker may take "
                f"{bound:g} s to stop (the longest of sqs.shutdown_grace, sqs.wait_seconds and "
                f"kafka.flush_timeout) plus {EXIT_MARGIN:g} s to exit: set "
                f"PYMIRROR_OPERATOR__WORKER_GRACE_SECONDS to at least "
                f"{int(bound + EXIT_MARGIN + 0.999)}, or lower those worker settings in "
                "worker_env"
            )
        return self

    def kinds(self) -> WorkloadKinds:
        """Where the workload kinds are served (``workload_kinds.kinds()``)."""
        return self.workload_kinds.kinds()

    def worker_resource(self) -> Resource:
        """Where the worker Deployments are created: the Deployment kind of ``kinds()``."""
        return self.kinds().deployment
