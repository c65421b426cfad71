"""The Kubernetes adapter: the only module of the project that imports ``kubernetes``.

``KubeTransport`` is the synchronous seam: configuration (kubeconfig file and
context, or in-cluster service account), one JSON request, one streamed
response (for watches), and the pod exec websocket. Every vendor exception is
translated here into the ``registry.errors`` tree (``translate``); callers
never see ``kubernetes``, ``urllib3`` or ``websocket`` types. The async API on
top (``registry.objects.Kube``) runs these calls in a bounded thread pool.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client import exceptions as vendor
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import stream as exec_stream

from registry.api_status import error_from_status
from registry.errors import (
    BadRequestError,
    KubeApiError,
    KubeConfigError,
    RegistryError,
    UnavailableError,
)

Query = Sequence[tuple[str, str]]

#: Seconds to connect, and to wait for a response (a watch waits longer: see ``stream``).
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0


def translate(e: BaseException, what: str) -> RegistryError:
    """The registry error for a vendor exception raised while doing ``what``."""
    if isinstance(e, RegistryError):
        return e
    if isinstance(e, ConfigException):
        return KubeConfigError(f"{what}: {e}")
    if isinstance(e, vendor.ApiException):
        if not e.status:  # no response: TLS failure, or a request the client could not build
            reason = str(e.reason or "")
            if "SSLError" in reason:
                return UnavailableError(f"{what}: cannot reach the API server: {reason}")
            return BadRequestError(f"{what}: {reason}")
        return error_from_status(int(e.status), e.body, what=what, http_reason=str(e.reason or ""))
    if isinstance(
        e,
        vendor.ApiTypeError | vendor.ApiValueError | vendor.ApiAttributeError | vendor.ApiKeyError,
    ):
        return BadRequestError(f"{what}: the request could not be built: {e}")
    if isinstance(e, vendor.OpenApiException):
        return KubeApiError(f"{what}: {e}")
    if isinstance(e, urllib3.exceptions.HTTPError | OSError | TimeoutError):
        return UnavailableError(f"{what}: cannot reach the API server: {e}")
    if type(e).__module__.startswith("websocket"):  # the exec stream's transport
        return UnavailableError(f"{what}: the exec stream failed: {e}")
    return KubeApiError(f"{what}: {type(e).__name__}: {e}")


class LineStream:
    """The lines of one streamed response (a watch); ``shutdown`` from any thread ends it."""

    def __init__(self, response: Any, what: str) -> None:
        self._response = response  # urllib3.HTTPResponse, not preloaded
        self._what = what

    def __iter__(self) -> Iterator[bytes]:
        pending = b""
        try:
            for chunk in self._response.stream(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield line
        except Exception as e:
            raise translate(e, self._what) from e
        finally:
            self._response.release_conn()
        if pending.strip():
            yield pending

    def shutdown(self) -> None:
        """Interrupt a read blocked in another thread (the iterator then raises)."""
        try:
            self._response.shutdown()
        except Exception:  # already closed
            self._response.close()


class ExecStream:
    """A command exec'd in a container: its stdout as bytes. Blocking: use it from a thread."""

    def __init__(self, ws: Any, what: str) -> None:
        self._ws = ws
        self._what = what

    def read_stdout(self, timeout: float) -> bytes | None:
        """Stdout bytes, ``None`` if none came within ``timeout`` s, ``b""`` at the end."""
        try:
            if not self._ws.is_open():
                return b""  # the command exited, or the stream was closed
            self._ws.update(timeout=timeout)
            if self._ws.peek_stdout():
                data: bytes = self._ws.read_stdout()
                return data
        except Exception as e:
            raise translate(e, self._what) from e
        return None

    def close(self) -> None:
        self._ws.close()


class KubeTransport:
    """One cluster's configured API client: JSON requests, streamed responses, exec."""

    def __init__(self, api_client: Any, *, description: str) -> None:
        self._client = api_client
        self.description = description
        """Where the configuration came from (for messages)."""

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | os.PathLike[str] | None = None,
        context: str | None = None,
        *,
        pool: int = 8,
    ) -> KubeTransport:
        """From a kubeconfig file (default: ``$KUBECONFIG`` or ``~/.kube/config``)."""
        where = f"kubeconfig {path or '(default)'}" + (f" context {context}" if context else "")
        cfg = client.Configuration()
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(path) if path is not None else None,
                context=context,
                client_configuration=cfg,
                persist_config=False,
            )
        except Exception as e:  # a bad file surfaces as many exception types
            raise KubeConfigError(f"cannot load {where}: {e}") from e
        return cls._with(cfg, pool, where)

    @classmethod
    def in_cluster(cls, *, pool: int = 8) -> KubeTransport:
        """From the pod's service account (token and CA mounted by Kubernetes)."""
        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except Exception as e:
            raise KubeConfigError(f"cannot load the in-cluster configuration: {e}") from e
        return cls._with(cfg, pool, "in-cluster service account")

    @classmethod
    def _with(cls, cfg: Any, pool: int, where: str) -> KubeTransport:
        cfg.connection_pool_maxsize = max(pool, 1) + 4  # + watches and exec handshakes
        return cls(client.ApiClient(cfg), description=where)

    def close(self) -> None:
        self._client.close()

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        query: Query,
        body: Any,
        content_type: str | None,
        timeout: tuple[float, float],
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        method, url, headers, body, post = self._client.param_serialize(
            method=method,
            resource_path=path,
            path_params=dict(params),
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        return self._client.call_api(method, url, headers, body, post, _request_timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        query: Query = (),
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        """One request; the decoded JSON response, or a registry error."""
        try:
            response = self._send(
                method,
                path,
                params or {},
                query,
                body,
                content_type,
                (CONNECT_TIMEOUT, READ_TIMEOUT),
            )
            data = response.read()
        except Exception as e:
            raise translate(e, what) from e
        if not 200 <= response.status < 300:
            raise error_from_status(
                response.status, data, what=what, http_reason=str(response.reason or "")
            )
        try:
            return json.loads(data) if data else None
        except ValueError as e:
            raise KubeApiError(f"{what}: the response is not JSON: {data[:200]!r}") from e

    def stream(
        self,
        path: str,
        *,
        what: str,
        params: Mapping[str, str],
        query: Query,
        read_timeout: float,
    ) -> LineStream:
        """A streamed GET (``watch=1``): its lines as they come, or a registry error."""
        try:
            response = self._send(
                "GET", path, params, query, None, None, (CONNECT_TIMEOUT, read_timeout)
            )
        except Exception as e:
            raise translate(e, what) from e
        if not 200 <= response.status < 300:
            try:
                data = response.read()
            except Exception as e:
                raise translate(e, what) from e
            raise error_from_status(
                response.status, data, what=what, http_reason=str(response.reason or "")
            )
        return LineStream(response.response, what)

    def exec(self, namespace: str, pod: str, container: str, command: Sequence[str]) -> ExecStream:
        """Exec ``command`` in ``container`` (stdout only, no tty) over the exec websocket."""
        what = f"exec in pod {namespace}/{pod} container {container}"
        # kubernetes.stream swaps the client's call_api for the websocket during the
        # handshake: a client of its own keeps concurrent requests off that swap.
        exec_client: Any = client.ApiClient(self._client.configuration)
        core = client.CoreV1Api(exec_client)
        connect: Callable[..., Any] = core.connect_get_namespaced_pod_exec
        try:
            ws = exec_stream(
                connect,
                pod,
                namespace,
                container=container,
                command=list(command),
                stderr=False,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
                binary=True,
            )
        except Exception as e:
            raise translate(e, what) from e
        finally:
            exec_client.close()  # the websocket is its own connection
        return ExecStream(ws, what)
