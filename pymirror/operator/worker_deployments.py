"""One split-worker Deployment per QueueSplit, in the operator's namespace.

``worker_deployment(split, settings)`` is the manifest (pure): a Deployment named
``worker_name(split)``, labelled ``pymirror.dev/split: <split>`` (``WORKER_LABEL``) plus
the ``app.kubernetes.io`` labels, with one container ``worker`` running
``[*worker_command, "worker", "sqs"|"kafka", "--split", "<namespace>/<split>", ...]`` (the
original, the fallback and, for Kafka, the group id from the QueueSplit and the client
config by name, ``--client-config``: the worker resolves it itself, so no secret value
is written into the Deployment; a digest of the resolved config on the pod template
restarts the workers when it changes), ``worker_env`` (plus where ConfigMaps and Secrets
are served) as its environment, the worker's resources, ServiceAccount
and grace period, a hardened security context (non-root, read-only root filesystem, no
privilege escalation, every capability dropped; an emptyDir for the few files the Kafka
worker keeps) and, when the worker serves metrics, a readiness probe on that port. The
Deployment kind is ``settings.kinds().deployment``: apps/v1 in a cluster, the stand-in
kind in the sandbox and the tests.

``ensure_worker`` creates it when absent and brings an existing one of ours up to date
(a hash of the spec it wrote is kept in ``SPEC_ANNOTATION``, so an unchanged worker is
never written). A Deployment of that name without our label (or labelled for another
split) is never adopted, overwritten or deleted: ``WorkerDeploymentError`` names it and
the fix. ``delete_worker`` deletes only ours; ``worker_ready`` says whether ours has
rolled out with every replica ready.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import structlog

from pymirror.errors import PymirrorError
from pymirror.operator.settings import OperatorSettings
from registry.errors import AlreadyExistsError, NotFoundError
from registry.kafka_client_configs import load_client_config
from registry.objects import Kube, Obj, Objects
from registry.session_models import API_VERSION, QueueSplit

log = structlog.get_logger("pymirror.operator.worker_deployments")

WORKER_LABEL = "pymirror.dev/split"
#: A hash of the spec ``ensure_worker`` last wrote (an unchanged worker is not written).
SPEC_ANNOTATION = "pymirror.dev/worker-spec"
#: On a Kafka worker's pod template: :func:`config_digest` of its resolved client config.
CONFIG_DIGEST_ANNOTATION = "pymirror.dev/client-config-digest"
#: The worker's env var naming where ConfigMaps and Secrets are served (its settings).
CONFIG_KINDS_VAR = "PYMIRROR_OPERATOR__CONFIG_KINDS"
CONTAINER = "worker"
APP_LABELS = {
    "app.kubernetes.io/name": "pymirror-worker",
    "app.kubernetes.io/component": "split-worker",
    "app.kubernetes.io/part-of": "pymirror",
    "app.kubernetes.io/managed-by": "pymirror-operator",
}
#: The uid/gid the worker runs as (the usual "nonroot" of distroless-style images).
NON_ROOT_ID = 65532
_PREFIX = "pymirror-worker-"
_MAX_NAME = 63


class WorkerDeploymentError(PymirrorError):
    """A worker Deployment cannot be made or touched; the message names it and the fix."""


def worker_name(split: str) -> str:
    """The worker Deployment's name for QueueSplit ``split``: ``pymirror-worker-<split>``,
    a DNS-1123 label of at most 63 characters (truncated with a hash of ``split``)."""
    name = _PREFIX + split
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(split.encode()).hexdigest()[:10]
    return name[: _MAX_NAME - len(digest) - 1].rstrip("-.") + "-" + digest


def _split_ref(split: QueueSplit, settings: OperatorSettings) -> str:
    return f"{settings.namespace}/{split.metadata.name}"


def worker_args(
    split: QueueSplit, settings: OperatorSettings, properties: Mapping[str, str] | None = None
) -> list[str]:
    """The worker container's command: ``pymirror worker sqs|kafka --split NS/NAME ...``.

    ``WorkerDeploymentError`` when the split has no fallback yet (the worker needs it) or,
    for Kafka, no ``bootstrap.servers`` among ``properties`` (the resolved client config,
    checked here; the command names the config, ``--client-config``, never its values)."""
    spec = split.spec
    what = f"QueueSplit {_split_ref(split, settings)}"
    if not spec.fallback:
        raise WorkerDeploymentError(
            f"{what} has no spec.fallback: record and create the fallback before its worker"
        )
    command = [*settings.worker_command, "worker"]
    ref = ["--split", _split_ref(split, settings)]
    if spec.kind == "SQS":
        command += ["sqs", *ref, "--queue", spec.original, "--fallback-queue", spec.fallback]
    else:
        props = dict(properties or {})
        if "bootstrap.servers" not in props:
            raise WorkerDeploymentError(
                f"{what}: its client config {spec.client_config!r} resolves to no "
                "bootstrap.servers; set it in that MirrordKafkaClientConfig (or a parent)"
            )
        state = settings.worker_state_dir.rstrip("/")
        command += ["kafka", *ref, "--topic", spec.original, "--group-id", str(spec.group_id)]
        command += ["--fallback-topic", spec.fallback]
        command += ["--member-file", f"{state}/member", "--hand-back-file", f"{state}/hand-back"]
        # the worker resolves the config itself: no property value (a password, a SASL
        # secret) is ever written into the Deployment
        command += ["--client-config", str(spec.client_config)]
    if settings.worker_metrics_port is not None:
        command += ["--metrics-port", str(settings.worker_metrics_port)]
    return command


def _worker_env(settings: OperatorSettings) -> dict[str, str]:
    """``worker_env`` plus where ConfigMaps and Secrets are served (``CONFIG_KINDS_VAR``),
    which a Kafka worker needs to resolve its client config."""
    kinds = json.dumps(dict(settings.config_kinds), sort_keys=True)
    return {CONFIG_KINDS_VAR: kinds, **settings.worker_env}


def config_digest(properties: Mapping[str, str]) -> str:
    """A digest of the resolved client properties, kept in the pod template
    (``CONFIG_DIGEST_ANNOTATION``) so a changed config or Secret restarts the workers;
    SHA-256 over every name and value, 16 hex digits: no value can be read from it."""
    data = json.dumps(sorted(properties.items()), separators=(",", ":")).encode()
    return hashlib.sha256(b"pymirror-client-config\0" + data).hexdigest()[:16]


def _container(command: list[str], settings: OperatorSettings) -> Obj:
    container: Obj = {
        "name": CONTAINER,
        "image": settings.worker_image,
        "command": command,
        "env": [{"name": k, "value": v} for k, v in sorted(_worker_env(settings).items())],
        "resources": settings.worker_resources,
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "state", "mountPath": settings.worker_state_dir},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    port = settings.worker_metrics_port
    if port is not None:
        container["ports"] = [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
        container["readinessProbe"] = {
            "httpGet": {"path": "/metrics", "port": "metrics"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        }
    return container


def worker_deployment(
    split: QueueSplit,
    settings: OperatorSettings,
    *,
    properties: Mapping[str, str] | None = None,
) -> Obj:
    """The worker Deployment of ``split`` (see the module docstring); ``properties`` are
    the resolved Kafka client properties (Kafka only)."""
    name = split.metadata.name
    if not name:
        raise WorkerDeploymentError("the QueueSplit has no metadata.name")
    selector = {WORKER_LABEL: name, "app.kubernetes.io/name": APP_LABELS["app.kubernetes.io/name"]}
    labels = {**APP_LABELS, "app.kubernetes.io/instance": worker_name(name), WORKER_LABEL: name}
    pod_spec: Obj = {
        "serviceAccountName": settings.worker_service_account,
        "terminationGracePeriodSeconds": settings.worker_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NON_ROOT_ID,
            "runAsGroup": NON_ROOT_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(worker_args(split, settings, properties), settings)],
        "volumes": [{"name": "state", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
    }
    spec: Obj = {
        "replicas": settings.worker_replicas,
        "revisionHistoryLimit": 2,
        "selector": {"matchLabels": selector},
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if split.spec.kind == "Kafka":
        digest = config_digest(properties or {})
        spec["template"]["metadata"]["annotations"] = {CONFIG_DIGEST_ANNOTATION: digest}
    metadata: Obj = {
        "name": worker_name(name),
        "namespace": settings.namespace,
        "labels": labels,
        "annotations": {SPEC_ANNOTATION: _spec_hash(spec)},
    }
    if split.metadata.uid:
        metadata["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": "QueueSplit",
                "name": name,
                "uid": split.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ]
    return {
        "apiVersion": settings.worker_resource().api_version,
        "kind": "Deployment",
        "metadata": metadata,
        "spec": spec,
    }


def _spec_hash(spec: Mapping[str, Any]) -> str:
    data = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def _deployments(kube: Kube, settings: OperatorSettings) -> Objects:
    return kube.objects(settings.worker_resource(), settings.namespace)


def _check_ours(obj: Mapping[str, Any], split: str, settings: OperatorSettings) -> None:
    """``WorkerDeploymentError`` unless ``obj`` is the worker Deployment of ``split``."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get(WORKER_LABEL) == split:
        return
    name = (obj.get("metadata") or {}).get("name")
    whose = (
        f"it is labelled {WORKER_LABEL}={labels[WORKER_LABEL]}"
        if WORKER_LABEL in labels
        else f"it has no {WORKER_LABEL} label: pymirror did not create it"
    )
    raise WorkerDeploymentError(
        f"Deployment {settings.namespace}/{name} exists but is not the worker of QueueSplit "
        f"{split} ({whose}); pymirror neither adopts nor changes it: rename or delete that "
        "Deployment, or run the operator in another namespace"
    )


async def _properties(kube: Kube, split: QueueSplit, settings: OperatorSettings) -> dict[str, str]:
    if split.spec.kind != "Kafka" or split.spec.client_config is None:
        return {}
    return await load_client_config(
        kube, settings.namespace, split.spec.client_config, config=settings.config_kinds.kinds()
    )


async def ensure_worker(kube: Kube, split: QueueSplit, settings: OperatorSettings) -> Obj:
    """The worker Deployment of ``split``: created if absent, updated if ours and its spec
    is not the one wanted, returned as is otherwise. ``WorkerDeploymentError`` if a
    Deployment of that name is not ours (see the module docstring) or the split cannot
    have a worker yet; ``ClientConfigError`` if a Kafka split's client config does not
    resolve."""
    wanted = worker_deployment(split, settings, properties=await _properties(kube, split, settings))
    name = str(split.metadata.name)
    deployments = _deployments(kube, settings)
    current = await _created_unless_there(deployments, wanted, name)
    if current is None:  # created by someone else between our get and create
        current = await deployments.get(wanted["metadata"]["name"])
    _check_ours(current, name, settings)
    if _annotation(current) == _annotation(wanted):
        return current
    return await _refresh(deployments, wanted, name, settings)


async def _created_unless_there(deployments: Objects, wanted: Obj, split: str) -> Obj | None:
    """The Deployment as it is, else as created now; None if it appeared in between."""
    try:
        return await deployments.get(wanted["metadata"]["name"])
    except NotFoundError:
        pass
    try:
        created = await deployments.create(wanted)
    except AlreadyExistsError:
        return None
    log.info("worker deployment created", split=split, deployment=created["metadata"]["name"])
    return created


async def _refresh(
    deployments: Objects, wanted: Obj, split: str, settings: OperatorSettings
) -> Obj:
    """Write ``wanted``'s spec, labels and annotation into our Deployment (409s retried)."""

    def refresh(obj: Obj) -> Obj | None:
        _check_ours(obj, split, settings)
        if _annotation(obj) == _annotation(wanted):
            return None
        meta = obj["metadata"]
        meta["labels"] = {**(meta.get("labels") or {}), **wanted["metadata"]["labels"]}
        meta["annotations"] = {
            **(meta.get("annotations") or {}),
            **wanted["metadata"]["annotations"],
        }
        obj["spec"] = wanted["spec"]
        return obj

    updated = await deployments.update(wanted["metadata"]["name"], refresh)
    log.info("worker deployment updated", split=split, deployment=updated["metadata"]["name"])
    return updated


def _annotation(obj: Mapping[str, Any]) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(SPEC_ANNOTATION)
    return value if isinstance(value, str) else None


async def delete_worker(kube: Kube, split_name: str, settings: OperatorSettings) -> bool:
    """Delete the worker Deployment of ``split_name``: True if it was deleted, False if
    there is none. ``WorkerDeploymentError`` (nothing deleted) if that name is not ours."""
    deployments = _deployments(kube, settings)
    try:
        current = await deployments.get(worker_name(split_name))
    except NotFoundError:
        return False
    _check_ours(current, split_name, settings)
    gone = await deployments.delete(
        current["metadata"]["name"],
        missing_ok=True,
        propagation_policy="Background",
        uid=current["metadata"].get("uid"),
    )
    if gone is not None:
        log.info("worker deployment deleted", split=split_name, deployment=worker_name(split_name))
    return gone is not None


async def worker_ready(kube: Kube, split_name: str, settings: OperatorSettings) -> bool:
    """Whether the worker Deployment of ``split_name`` exists, is ours, and its status shows
    the current generation rolled out with every replica updated and ready (False for a
    Deployment of that name that is not ours)."""
    try:
        obj = await _deployments(kube, settings).get(worker_name(split_name))
    except NotFoundError:
        return False
    if ((obj.get("metadata") or {}).get("labels") or {}).get(WORKER_LABEL) != split_name:
        return False  # not ours: never ready (ensure_worker says why)
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    observed = int(status.get("observedGeneration", 0))
    return observed >= int(meta.get("generation", 1)) and all(
        int(status.get(field, 0)) >= replicas for field in ("updatedReplicas", "readyReplicas")
    )
