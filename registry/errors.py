"""Errors of CRD models and Kubernetes access.

``RegistryError`` is this layer's root. ``retriable`` is data on the class:
True means the condition is temporary and the caller may retry::

    RegistryError
    ├── ClientConfigError       a MirrordKafkaClientConfig chain cannot be resolved
    ├── ModelError              an object does not match its kind's model (registry.models)
    ├── KubeConfigError         no usable kubeconfig / in-cluster configuration
    ├── WorkloadError           a workload, its pod template or container cannot be used
    │   ├── WorkloadNotFoundError   the workload (or a Rollout's workloadRef) does not exist
    │   ├── EnvAnnotationError      the original-env annotation (registry.env_patch) is unreadable
    │   └── RolloutTimeoutError     a workload did not finish its rollout in time
    ├── ConfigSourceError       a ConfigMap or Secret (or a key of it) cannot be read
    │   └── ConfigSourceNotFoundError   no such object or key
    ├── EnvReadingError         a queue name/topic/group id cannot be read from a pod template
    └── KubeApiError            the API server refused a request (``status``, ``reason``)
        ├── BadRequestError     400, or a request the client could not even build
        ├── UnauthorizedError   401: credentials missing, wrong or expired
        ├── ForbiddenError      403: RBAC denies the verb on the resource
        ├── NotFoundError       404: no such object (or resource type)
        ├── ConflictError       409: stale resourceVersion, or a server-side apply conflict
        │   └── AlreadyExistsError  409 on create: the name is taken
        ├── GoneError           410: the resourceVersion is too old (watches re-list)
        ├── InvalidError        422: schema validation; ``causes`` holds the server's fields
        └── UnavailableError    429, 5xx, connection refused/reset, timeouts (retriable)

``registry.kube`` translates every vendor exception into this tree at the seam
(``raise X(...) from e``); nothing above it sees ``kubernetes`` or ``urllib3``.
"""

from __future__ import annotations

from typing import ClassVar


class RegistryError(Exception):
    """Root of the errors raised by CRD models and Kubernetes access."""

    retriable: ClassVar[bool] = False


class ClientConfigError(RegistryError):
    """A ``MirrordKafkaClientConfig`` chain cannot be resolved (missing, cycle, bad secret ref)."""


class ModelError(RegistryError):
    """An object read from the API does not match the model of its kind."""


class KubeConfigError(RegistryError):
    """No kubeconfig, context or in-cluster configuration could be loaded."""


class KubeApiError(RegistryError):
    """The Kubernetes API refused or failed a request.

    ``status`` is the HTTP status (None when no response came back), ``reason`` the
    Status reason (``NotFound``, ``AlreadyExists``, ``Invalid``, ``Expired``...) and
    ``causes`` the ``(field, message)`` pairs of the server's Status details.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str = "",
        causes: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.causes = causes


class BadRequestError(KubeApiError):
    """400, or a request the client library could not build (bad argument)."""


class UnauthorizedError(KubeApiError):
    """401: the credentials are missing, wrong or expired."""


class ForbiddenError(KubeApiError):
    """403: authorization (RBAC) denies this verb on this resource."""


class NotFoundError(KubeApiError):
    """404: the object, namespace-scoped resource or API group does not exist."""


class ConflictError(KubeApiError):
    """409: the object changed since it was read, or an apply conflicts with another manager."""


class AlreadyExistsError(ConflictError):
    """409 on create: an object of that name already exists."""


class GoneError(KubeApiError):
    """410: the requested resourceVersion is older than the server keeps; list again."""


class InvalidError(KubeApiError):
    """422: the object fails the schema or a server-side rule; ``causes`` names the fields."""


class UnavailableError(KubeApiError):
    """The API server cannot answer now: 429, 5xx, connection refused or reset, timeout."""

    retriable = True


class WorkloadError(RegistryError):
    """A workload, its pod template or a container cannot be used."""


class WorkloadNotFoundError(WorkloadError):
    """The workload (or the Deployment a Rollout's ``workloadRef`` names) does not exist."""


class EnvAnnotationError(WorkloadError):
    """The ``pymirror.dev/original-env`` annotation of a workload is not in the format
    ``registry.env_patch`` writes (edited by hand?): nothing can be restored from it."""


class RolloutTimeoutError(WorkloadError):
    """A workload did not finish its rollout within ``workloadRestartTimeout``.

    ``workload`` names it (``Deployment shop/meme-app``), ``missing`` says what was still
    missing when the time ran out (``2 of 3 updated replicas ready``)."""

    def __init__(self, message: str, *, workload: str, missing: str) -> None:
        super().__init__(message)
        self.workload = workload
        self.missing = missing


class ConfigSourceError(RegistryError):
    """A ConfigMap or Secret, or one of its keys, cannot be read."""


class ConfigSourceNotFoundError(ConfigSourceError):
    """The ConfigMap or Secret does not exist, or has no such key."""


class EnvReadingError(RegistryError):
    """A queue name, topic or group id cannot be read from the workload's pod template."""
