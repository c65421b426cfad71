"""Where a kind is served: group, version and plural, and its REST paths (pure).

Workloads and Secrets are data too (``Resource("apps", "v1", "deployments")``,
``Resource("", "v1", "secrets")``), so tests can point them at the stand-in
CRDs of the test API server (tests/kube/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    """A namespaced resource type; ``group`` is "" for the core API (``/api/v1``)."""

    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        """``apiVersion`` of its objects: ``group/version``, or ``version`` for core."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection_path(self) -> str:
        """``/apis/{group}/{version}/namespaces/{namespace}/{plural}`` (placeholders filled
        by the client, which URL-quotes them)."""
        base = "/apis/{group}/{version}" if self.group else "/api/{version}"
        return base + "/namespaces/{namespace}/{plural}"

    def object_path(self, subresource: str | None = None) -> str:
        """The path of one object, or of its ``subresource`` (``status``...)."""
        path = self.collection_path() + "/{name}"
        return path + "/" + subresource if subresource else path

    def path_params(self, namespace: str, name: str | None = None) -> dict[str, str]:
        params = {
            "group": self.group,
            "version": self.version,
            "namespace": namespace,
            "plural": self.plural,
        }
        if name is not None:
            params["name"] = name
        return params

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


#: Pods (core/v1), for the capture tap and exec.
PODS = Resource("", "v1", "pods")
