"""Async access to namespaced objects: get, list, watch, create, apply, patch, delete.

``Kube`` owns one cluster's ``KubeTransport`` and a bounded thread pool: the
``kubernetes`` client is synchronous, so every request runs in that pool, and at
most ``max_concurrency`` requests are in flight (watches read in their own
thread each, so a long watch never holds a request slot)::

    async with Kube.from_kubeconfig(path, context) as kube:
        registries = kube.objects(Resource("queues.mirrord.metalbear.co", "v1alpha",
                                           "mirrordworkloadqueueregistries"), "shop")
        obj = await registries.get("meme-app")
        await registries.update("meme-app", add_label)        # retried on 409
        async for event in registries.watch():               # survives reconnects, 410
            ...

``kube.objects(resource, None)`` is the resource in every namespace: it lists and
watches cluster-wide (each object's ``metadata.namespace`` says where it lives) and
refuses everything else (``ValueError``: a get or a write needs the namespace).

Objects are plain JSON dicts; ``registry.models`` parses the registry kinds.
Errors are ``registry.errors`` (``NotFoundError``, ``ConflictError``, ``InvalidError``,
``UnavailableError``...).

``registry.kube`` (and with it ``kubernetes``) is imported when a ``Kube`` is first
made from a kubeconfig or the service account, not with this module: a process that
only uses the registry's kinds and models (a split worker reading a sessions file)
never loads the vendor client.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from registry.errors import ConflictError, NotFoundError
from registry.resources import Resource
from registry.watching import Watch

if TYPE_CHECKING:
    from registry.kube import ExecStream, KubeTransport, LineStream, Query

T = TypeVar("T")
Obj = dict[str, Any]
Mutation = Callable[[Obj], Obj | None]
"""Gets a deep copy of the current object; returns the object to write, or None for no change."""

PatchType = Literal["json", "merge", "strategic", "apply"]
CONTENT_TYPES: dict[PatchType, str] = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",  # built-in kinds only
    "apply": "application/apply-patch+yaml",  # JSON is YAML
}


@dataclass(frozen=True)
class ObjectList:
    items: list[Obj]
    resource_version: str
    """The list's resourceVersion: watch from here to see every later change."""


class Kube:
    """One cluster: its transport and the bounded pool its blocking calls run in."""

    def __init__(self, transport: KubeTransport, *, max_concurrency: int = 8) -> None:
        self.transport = transport
        self._pool = ThreadPoolExecutor(max(max_concurrency, 1), thread_name_prefix="kube")

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | os.PathLike[str] | None = None,
        context: str | None = None,
        *,
        max_concurrency: int = 8,
    ) -> Kube:
        """From a kubeconfig (default: ``$KUBECONFIG``, ``~/.kube/config``); ``KubeConfigError``."""
        from registry.kube import KubeTransport  # the vendor client, on first use

        transport = KubeTransport.from_kubeconfig(path, context, pool=max_concurrency)
        return cls(transport, max_concurrency=max_concurrency)

    @classmethod
    def in_cluster(cls, *, max_concurrency: int = 8) -> Kube:
        """From the pod's service account; ``KubeConfigError`` outside a pod."""
        from registry.kube import KubeTransport  # the vendor client, on first use

        return cls(KubeTransport.in_cluster(pool=max_concurrency), max_concurrency=max_concurrency)

    @classmethod
    def connect(
        cls, kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None
    ) -> Kube:
        """The kubeconfig when one is named; else in-cluster inside a pod; else the default."""
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster()
        return cls.from_kubeconfig(kubeconfig, context)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the bounded pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def objects(self, resource: Resource, namespace: str | None) -> Objects:
        """The objects of ``resource`` in ``namespace``; None: in every namespace (list and
        watch only)."""
        return Objects(self, resource, namespace)

    async def exec(
        self, namespace: str, pod: str, container: str, command: Sequence[str]
    ) -> ExecStream:
        """Open an exec stream (stdout) of ``command`` in a pod's container."""
        return await self.run(self.transport.exec, namespace, pod, container, command)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.transport.close()

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _name_of(body: Mapping[str, Any]) -> str:
    name = (body.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("the object has no metadata.name")
    return name


def all_namespaces_path(resource: Resource) -> str:
    """``/apis/{group}/{version}/{plural}`` (``/api/{version}/{plural}`` for core): the
    collection across every namespace."""
    return ("/apis/{group}/{version}" if resource.group else "/api/{version}") + "/{plural}"


class Objects:
    """The objects of one resource type in one namespace, or in all (``namespace`` None:
    list and watch only)."""

    def __init__(self, kube: Kube, resource: Resource, namespace: str | None) -> None:
        self.kube = kube
        self.resource = resource
        self.namespace = namespace

    @property
    def all_namespaces(self) -> bool:
        return self.namespace is None

    @property
    def where(self) -> str:
        """The namespace, or ``all namespaces`` (for messages)."""
        return self.namespace if self.namespace is not None else "(all namespaces)"

    def _what(self, verb: str, name: str | None = None) -> str:
        where = f"{self.namespace}/{name}" if name and self.namespace else self.where
        return f"{verb} {self.resource} {where}"

    def _collection(self) -> tuple[str, dict[str, str]]:
        """The collection's path and its parameters."""
        r = self.resource
        if self.namespace is None:
            params = {"group": r.group, "version": r.version, "plural": r.plural}
            return all_namespaces_path(r), params
        return r.collection_path(), r.path_params(self.namespace)

    def _namespace(self, verb: str) -> str:
        if self.namespace is None:
            raise ValueError(
                f"cannot {verb} {self.resource} across all namespaces: "
                "use kube.objects(resource, <the object's namespace>)"
            )
        return self.namespace

    async def _request(
        self,
        method: str,
        verb: str,
        name: str | None = None,
        *,
        subresource: str | None = None,
        query: Query = (),
        body: Any = None,
        content_type: str | None = None,
        what_name: str | None = None,
    ) -> Any:
        if method == "GET" and name is None:
            path, params = self._collection()
        else:
            r = self.resource
            namespace = self._namespace(verb)
            path = r.collection_path() if name is None else r.object_path(subresource)
            params = r.path_params(namespace, name)
        return await self.kube.run(
            self.kube.transport.request,
            method,
            path,
            what=self._what(verb, name or what_name),
            params=params,
            query=query,
            body=body,
            content_type=content_type,
        )

    # --- reads ------------------------------------------------------------------------

    async def get(self, name: str) -> Obj:
        """The object; ``NotFoundError`` if there is none."""
        obj: Obj = await self._request("GET", "get", name)
        return obj

    async def list(
        self,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> ObjectList:
        """Every object (all pages, one consistent snapshot) and the list's resourceVersion;
        across every namespace when ``namespace`` is None."""
        items: list[Obj] = []
        token: str | None = None
        while True:
            query = [("limit", str(page_size))]
            query += _selectors(label_selector, field_selector)
            if token:
                query.append(("continue", token))
            page = await self._request("GET", "list", query=query)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return ObjectList(items, str(meta.get("resourceVersion", "")))

    def watch(
        self,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
        retry_for: float | None = 300.0,
    ) -> Watch:
        """Changes as ``WatchEvent``s; see ``registry.watching.Watch`` for the guarantees.

        Without ``resource_version`` it lists first and yields ADDED for every object.
        """
        return Watch(
            self,
            resource_version=resource_version,
            selectors=_selectors(label_selector, field_selector),
            timeout_seconds=timeout_seconds,
            retry_for=retry_for,
        )

    def open_watch_stream(self, query: Query, read_timeout: float) -> LineStream:
        """One watch connection, blocking (``Watch`` calls it from its own reader thread)."""
        path, params = self._collection()
        return self.kube.transport.stream(
            path,
            what=self._what("watch"),
            params=params,
            query=query,
            read_timeout=read_timeout,
        )

    # --- writes -----------------------------------------------------------------------

    async def create(self, body: Mapping[str, Any], *, field_manager: str | None = None) -> Obj:
        """Create; ``AlreadyExistsError`` if the name is taken, ``InvalidError`` on 422."""
        query = [("fieldManager", field_manager)] if field_manager else []
        name = (body.get("metadata") or {}).get("name")
        obj: Obj = await self._request(
            "POST", "create", query=query, body=dict(body), what_name=name
        )
        return obj

    async def replace(self, body: Mapping[str, Any]) -> Obj:
        """PUT the whole object; with ``metadata.resourceVersion`` set, ``ConflictError`` if
        the object changed since."""
        obj: Obj = await self._request("PUT", "replace", _name_of(body), body=dict(body))
        return obj

    async def patch(
        self,
        name: str,
        body: Any,
        patch_type: PatchType,
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
    ) -> Obj:
        """PATCH with ``patch_type``'s content type (json, merge, strategic, apply)."""
        query: list[tuple[str, str]] = []
        if field_manager:
            query.append(("fieldManager", field_manager))
        if force:
            query.append(("force", "true"))
        obj: Obj = await self._request(
            "PATCH",
            f"{patch_type}-patch",
            name,
            subresource=subresource,
            query=query,
            body=body,
            content_type=CONTENT_TYPES[patch_type],
        )
        return obj

    async def apply(
        self, body: Mapping[str, Any], *, field_manager: str, force: bool = False
    ) -> Obj:
        """Server-side apply ``body`` (the fields this manager owns); ``ConflictError`` if
        another manager owns one of them, unless ``force``."""
        return await self.patch(
            _name_of(body), dict(body), "apply", field_manager=field_manager, force=force
        )

    async def json_patch(self, name: str, ops: Sequence[Mapping[str, Any]]) -> Obj:
        """RFC 6902 operations; a failed ``test`` op is ``InvalidError`` (422)."""
        return await self.patch(name, [dict(op) for op in ops], "json")

    async def merge_patch(self, name: str, patch: Mapping[str, Any]) -> Obj:
        """RFC 7386 merge patch (null deletes a key; lists are replaced)."""
        return await self.patch(name, dict(patch), "merge")

    async def patch_status(self, name: str, status: Mapping[str, Any]) -> Obj:
        """Merge ``status`` into the status subresource (the spec is never touched)."""
        return await self.patch(name, {"status": dict(status)}, "merge", subresource="status")

    async def delete(
        self,
        name: str,
        *,
        missing_ok: bool = False,
        propagation_policy: Literal["Foreground", "Background", "Orphan"] | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> Obj | None:
        """Delete (the object with finalizers only gets a deletionTimestamp). ``uid`` /
        ``resource_version`` are preconditions (``ConflictError`` if they no longer hold).
        Returns what the server returned; None when missing and ``missing_ok``."""
        options: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        preconditions = {
            k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v
        }
        if preconditions:
            options["preconditions"] = preconditions
        try:
            result: Obj = await self._request("DELETE", "delete", name, body=options)
        except NotFoundError:
            if missing_ok:
                return None
            raise
        return result

    # --- read-modify-write ------------------------------------------------------------

    async def update(self, name: str, mutate: Mutation, *, attempts: int = 8) -> Obj:
        """Read, ``mutate`` a copy, write it back guarded by its resourceVersion; on a 409
        read again and retry (up to ``attempts`` writes). ``mutate`` must be repeatable:
        it may run once per attempt. Returns the object as written (or as read when
        ``mutate`` returns None: nothing to change)."""
        last: ConflictError | None = None
        for _ in range(max(attempts, 1)):
            current = await self.get(name)
            wanted = mutate(copy.deepcopy(current))
            if wanted is None:
                return current
            meta = wanted.setdefault("metadata", {})
            meta["name"] = name
            meta["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                return await self.replace(wanted)
            except ConflictError as e:
                last = e
        assert last is not None
        raise ConflictError(
            f"{self._what('update', name)}: still conflicting after {attempts} attempts: {last}",
            status=last.status,
            reason=last.reason,
        ) from last

    async def add_finalizer(self, name: str, finalizer: str) -> Obj:
        """Add ``finalizer`` unless present (retried on 409)."""

        def add(obj: Obj) -> Obj | None:
            finalizers = obj["metadata"].setdefault("finalizers", [])
            if finalizer in finalizers:
                return None
            finalizers.append(finalizer)
            return obj

        return await self.update(name, add)

    async def remove_finalizer(self, name: str, finalizer: str) -> Obj | None:
        """Remove ``finalizer`` if present (retried on 409). None when the object is gone."""

        def remove(obj: Obj) -> Obj | None:
            finalizers = obj["metadata"].get("finalizers") or []
            if finalizer not in finalizers:
                return None
            obj["metadata"]["finalizers"] = [f for f in finalizers if f != finalizer]
            return obj

        try:
            return await self.update(name, remove)
        except NotFoundError:
            return None


def _selectors(label_selector: str | None, field_selector: str | None) -> list[tuple[str, str]]:
    query = []
    if label_selector:
        query.append(("labelSelector", label_selector))
    if field_selector:
        query.append(("fieldSelector", field_selector))
    return query
