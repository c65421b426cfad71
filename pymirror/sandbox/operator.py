"""The sandbox's operator process: its argv, its settings and its readiness (pure + file reads).

``sandbox up`` runs ``pymirror operator`` like any other component (its own process
group, ``logs/operator.log``) with the settings a local control plane needs, given as
``PYMIRROR_OPERATOR__*`` variables (``operator_env``):

* the worker Deployments run by the local runtime as local processes: the worker command
  is this interpreter (``[sys.executable, "-m", "pymirror"]``), no worker metrics port
  (several workers share one host), ``worker_env`` = the sandbox's client environment
  (KUBECONFIG, the SQS endpoint and credentials, the Kafka bootstrap servers) and JSON
  logs, and a writable ``worker_state_dir`` in the state directory (Kafka workers);
* the kinds are the stand-in ones the sandbox installs (Deployment/StatefulSet in
  ``apps.pymirror.test/v1``, ConfigMap/Secret in ``core.pymirror.test/v1``);
* ``namespace`` is the operator's namespace; SplitSessions are watched in the sandbox's
  demo namespaces (``--namespace``).

``worker_metrics_port`` is unset through the group's JSON
(``PYMIRROR_OPERATOR='{"worker_metrics_port": null}'``; the ``__`` variables merge into
it) or with ``PYMIRROR_OPERATOR__WORKER_METRICS_PORT=null``. The settings are validated
here first (as the operator reads them: over this process's ``PYMIRROR_*`` environment),
so a bad combination fails ``up`` naming the setting rather than in the operator's log.

Ready = the operator logged ``operator controller starting``: it connected to the API
server, its settings are valid and its watches start by listing from there, so nothing
created afterwards is missed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from pymirror.sandbox.errors import SandboxError
from pymirror.sandbox.workloads import KINDS, STAND_IN_KINDS
from pymirror.settings import Settings

DEFAULT_NAMESPACE = "pymirror-system"
READY_EVENT = "operator watching"
#: The stand-in ConfigMap and Secret kinds (pymirror/sandbox/kube/{configmaps,secrets}.yaml).
STAND_IN_CONFIG_API_VERSION = "core.pymirror.test/v1"


def worker_command() -> list[str]:
    """The worker container's command: this interpreter running pymirror."""
    return [sys.executable, "-m", "pymirror"]


def operator_settings(
    namespace: str, client_env: Mapping[str, str], worker_state_dir: Path
) -> dict[str, object]:
    """The operator settings of the sandbox (field -> value), validated."""
    values: dict[str, object] = {
        "namespace": namespace,
        "workload_kinds": {k: STAND_IN_KINDS.resource(k).api_version for k in KINDS},
        "config_kinds": {
            "ConfigMap": STAND_IN_CONFIG_API_VERSION,
            "Secret": STAND_IN_CONFIG_API_VERSION,
        },
        "worker_command": worker_command(),
        "worker_env": {**client_env, "PYMIRROR_LOG__FORMAT": "json"},
        "worker_metrics_port": None,
        "worker_state_dir": str(worker_state_dir),
    }
    try:
        Settings(operator=values)
    except ValidationError as e:
        raise SandboxError(f"the sandbox's operator settings are invalid: {e}") from e
    return values


def operator_env(settings: Mapping[str, object]) -> dict[str, str]:
    """``settings`` as ``PYMIRROR_OPERATOR__*`` variables (JSON for lists and mappings);
    the unset ``None`` values in the group's JSON (``PYMIRROR_OPERATOR``)."""
    env: dict[str, str] = {}
    unset: dict[str, None] = {}
    for field, value in settings.items():
        if value is None:
            unset[field] = None
        elif isinstance(value, str):
            env[f"PYMIRROR_OPERATOR__{field.upper()}"] = value
        else:
            env[f"PYMIRROR_OPERATOR__{field.upper()}"] = json.dumps(value)
    if unset:
        env["PYMIRROR_OPERATOR"] = json.dumps(unset)
    return env


def operator_argv(kubeconfig: Path, namespaces: Sequence[str], metrics_port: int) -> list[str]:
    """``pymirror operator`` watching SplitSessions in ``namespaces``, JSON logs."""
    argv = [*worker_command(), "--log-format", "json", "operator"]
    argv += ["--kubeconfig", str(kubeconfig), "--metrics-port", str(metrics_port)]
    for namespace in namespaces:
        argv += ["--namespace", namespace]
    return argv


def operator_started(log: Path) -> bool:
    """The operator's log has its ``READY_EVENT`` line."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if READY_EVENT not in line:
            continue
        try:
            if json.loads(line).get("event") == READY_EVENT:
                return True
        except (ValueError, AttributeError):
            continue
    return False
