"""Fixtures of the registry tests: an async ``Kube`` on the real test API server, a TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.models import API_VERSION
from registry.objects import Kube
from registry.resources import Resource
from tests.fixtures.kube import STAND_INS
from tests.servers.kube import KubeApi

DEPLOYMENTS = Resource(*STAND_INS["Deployment"])


@pytest.fixture
async def kube(kube_api: KubeApi, kube_crds: list[str]) -> AsyncIterator[Kube]:
    """The adapter under test, built from the test server's kubeconfig file."""
    async with Kube.from_kubeconfig(kube_api.kubeconfig) as client:
        yield client


def registry_body(name: str, env_var: str = "QUEUE_NAME", **meta: Any) -> dict[str, Any]:
    """A valid MirrordWorkloadQueueRegistry."""
    return {
        "apiVersion": API_VERSION,
        "kind": "MirrordWorkloadQueueRegistry",
        "metadata": {"name": name, **meta},
        "spec": {
            "queues": {"q": {"queueType": "SQS", "nameSource": {"envVar": env_var}}},
            "consumer": {"name": "app", "workloadType": "Deployment"},
        },
    }


def deployment_body(name: str) -> dict[str, Any]:
    """A stand-in apps/v1 Deployment with env A, QUEUE, B in container main."""
    group, version, _ = STAND_INS["Deployment"]
    env = [{"name": "A", "value": "1"}, {"name": "QUEUE", "value": "orig"}]
    return {
        "apiVersion": f"{group}/{version}",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "app:1", "env": env}]},
            },
        },
    }


class CuttableProxy:
    """A loopback TCP forwarder to the API server whose connections the test can cut.

    ``cut`` aborts every forwarded connection and stops listening (clients get
    "connection refused", as while a server restarts); ``resume`` listens again on
    the same port. TLS passes through untouched.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()  # no new connections
        for w in list(self._writers):
            w.transport.abort()  # and the open ones reset
        self._writers.clear()
        await self._server.wait_closed()

    async def resume(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()

    def kubeconfig(self, original: Path, into: Path) -> Path:
        """A copy of ``original`` whose cluster server is this proxy."""
        doc = yaml.safe_load(original.read_text())
        for cluster in doc["clusters"]:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        into.write_text(yaml.safe_dump(doc))
        return into


@pytest.fixture
async def proxy(kube_api: KubeApi) -> AsyncIterator[CuttableProxy]:
    host, _, port = kube_api.url.removeprefix("https://").rpartition(":")
    forwarder = CuttableProxy((host, int(port)))
    await forwarder.start()
    try:
        yield forwarder
    finally:
        await forwarder.close()
