"""Kubernetes side of the capture: add or reuse the tap, exec tcpdump, stream its pcap.

Talks to the cluster only through ``registry``'s adapter (``registry.objects.Kube``;
``traffic`` never imports ``kubernetes``); registry errors are translated to
``ClusterCaptureError`` here. ``PodTap`` is synchronous for its callers (the CLI
runs it before its event loop starts; the stream is read by the capture thread).
"""

from __future__ import annotations

import asyncio
from typing import Any

from registry.errors import ForbiddenError, RegistryError
from registry.objects import Kube
from registry.resources import PODS
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
            self._kube = Kube.connect(kubeconfig, context)
        except RegistryError as e:
            raise ClusterCaptureError(f"cannot load the kubeconfig: {e}") from e
        self._pods = self._kube.objects(PODS, namespace)

    async def _read_pod(self) -> dict[str, Any]:
        try:
            return await self._pods.get(self.pod)
        except RegistryError as e:
            raise ClusterCaptureError(f"cannot read pod {self.namespace}/{self.pod}: {e}") from e

    def prepare(self, wait: float = 120.0) -> str:
        """The name of a running tap container, adding one if none can be reused."""
        return asyncio.run(self._prepare(wait))

    async def _prepare(self, wait: float) -> str:
        plan = plan_tap(await self._read_pod(), self.image)
        if plan.patch is not None:
            try:
                await self._pods.patch(
                    self.pod, plan.patch, "strategic", subresource="ephemeralcontainers"
                )
            except RegistryError as e:
                hint = " (needs RBAC on pods/ephemeralcontainers)"
                raise ClusterCaptureError(
                    f"cannot add the capture container to {self.namespace}/{self.pod}: {e}"
                    + (hint if isinstance(e, ForbiddenError) else "")
                ) from e
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (state := tap_state(await self._read_pod(), plan.container)) != "running":
            if state == "terminated" or loop.time() > deadline:
                raise ClusterCaptureError(
                    f"capture container {plan.container} in {self.namespace}/{self.pod} is "
                    f"{state}, not running; check `kubectl describe pod`"
                )
            await asyncio.sleep(1.0)  # polling the pod: no watch on core pods in the adapter
        return plan.container

    def source(self, container: str, port: int) -> StreamSource:
        """A pcap stream from ``tcpdump`` exec'd in the tap, over the exec API (websocket)."""
        try:
            ws = asyncio.run(
                self._kube.exec(self.namespace, self.pod, container, tcpdump_command(port))
            )
        except RegistryError as e:
            raise ClusterCaptureError(
                f"cannot exec tcpdump in {self.namespace}/{self.pod}/{container}: {e}"
            ) from e

        def read() -> bytes | None:
            try:
                return ws.read_stdout(timeout=0.2)  # None: nothing yet; the caller checks stop
            except RegistryError as e:
                raise ClusterCaptureError(f"the tcpdump stream broke: {e}") from e

        def close() -> None:
            ws.close()
            self._kube.close()

        return StreamSource(read, close=close, interrupt=ws.close)
