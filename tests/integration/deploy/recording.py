"""A KubeTransport that records what it sends, as RBAC sees it (registry.permissions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registry.kube import KubeTransport, LineStream
from registry.permissions import Access, access_of

#: The test API server's stand-in groups -> the production groups the chart grants.
PRODUCTION_GROUPS = {"apps.pymirror.test": "apps", "core.pymirror.test": ""}


class RecordingTransport:
    """A KubeTransport that records the RBAC view of every request it sends."""

    def __init__(self, inner: KubeTransport) -> None:
        self.inner = inner
        self.description = inner.description
        self.accesses: list[Access] = []

    def _record(self, method: str, path: str, params: Mapping[str, str], query: Any) -> None:
        filled = path.format(**params) if params else path
        self.accesses.append(access_of(method, filled, list(query)))

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self._record(method, path, kwargs.get("params") or {}, kwargs.get("query", ()))
        return self.inner.request(method, path, **kwargs)

    def stream(self, path: str, **kwargs: Any) -> LineStream:
        query = [*kwargs.get("query", ()), ("watch", "1")]
        self._record("GET", path, kwargs.get("params") or {}, query)
        return self.inner.stream(path, **kwargs)

    def exec(self, *args: Any) -> Any:
        raise AssertionError("the operator never execs into a pod")

    def close(self) -> None:
        self.inner.close()


def production(access: Access) -> Access:
    group = PRODUCTION_GROUPS.get(access.group, access.group)
    return Access(group, access.resource, access.verb, access.namespace)
