"""Kubernetes adapter of the capture: add or reuse the tap, exec tcpdump, stream its pcap.

The only module of ``traffic`` that imports ``kubernetes``; its errors are
translated to ``ClusterCaptureError`` here.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from traffic.capturing import StreamSource
from traffic.errors import ClusterCaptureError
from traffic.taps import DEFAULT_IMAGE, plan_tap, tap_state, tcpdump_command


class PodTap:
    """A pod's capture container, reached with a kubeconfig (or in-cluster config)."""

    def __init__(
        self,
        namespace: str,
        pod: str,
        *,
        image: str = DEFAULT_IMAGE,
        kubeconfig: str | None = None,
        context: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.pod = pod
        self.image = image
        try:
            api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context
            )
        except Exception as e:  # kubeconfig problems surface as many exception types
            raise ClusterCaptureError(f"cannot load the kubeconfig: {e}") from e
        self._api = client.CoreV1Api(api_client)

    def _read_pod(self) -> dict[str, Any]:
        try:
            pod = self._api.read_namespaced_pod(self.pod, self.namespace)
        except ApiException as e:
            raise ClusterCaptureError(
                f"cannot read pod {self.namespace}/{self.pod}: {e.status} {e.reason}"
            ) from e
        result: dict[str, Any] = self._api.api_client.sanitize_for_serialization(pod)
        return result

    def prepare(self, wait: float = 120.0) -> str:
        """The name of a running tap container, adding one if none can be reused."""
        plan = plan_tap(self._read_pod(), self.image)
        if plan.patch is not None:
            try:
                self._api.patch_namespaced_pod_ephemeralcontainers(
                    self.pod, self.namespace, plan.patch
                )
            except ApiException as e:
                raise ClusterCaptureError(
                    f"cannot add the capture container to {self.namespace}/{self.pod}: "
                    f"{e.status} {e.reason} (needs RBAC on pods/ephemeralcontainers)"
                ) from e
        deadline = time.monotonic() + wait
        while (state := tap_state(self._read_pod(), plan.container)) != "running":
            if state == "terminated" or time.monotonic() > deadline:
                raise ClusterCaptureError(
                    f"capture container {plan.container} in {self.namespace}/{self.pod} is "
                    f"{state}, not running; check `kubectl describe pod`"
                )
            time.sleep(1.0)
        return plan.container

    def source(self, container: str, port: int) -> StreamSource:
        """A pcap stream from ``tcpdump`` exec'd in the tap, over the exec API (websocket)."""
        try:
            ws = stream(
                self._api.connect_get_namespaced_pod_exec,
                self.pod,
                self.namespace,
                container=container,
                command=tcpdump_command(port),
                stderr=False,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
                binary=True,
            )
        except ApiException as e:
            raise ClusterCaptureError(
                f"cannot exec tcpdump in {self.namespace}/{self.pod}/{container}: {e.reason}"
            ) from e

        def read() -> bytes | None:
            if not ws.is_open():
                return b""  # tcpdump exited, or the stream was closed: the end
            ws.update(timeout=0.2)
            if ws.peek_stdout():
                data: bytes = ws.read_stdout()
                return data
            return None  # nothing yet; the caller checks its stop flag

        return StreamSource(read, close=ws.close, interrupt=ws.close)
