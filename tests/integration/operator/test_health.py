"""The operator's ``/healthz`` and ``/readyz``, served by a real ``pymirror operator``
process against the real test API server.

The process reaches the API server through a TCP proxy the test can stall (hold every
byte both ways, connections stay open): stalled from the start, the watches cannot
deliver their first list (``/readyz`` 503, ``/healthz`` 200: the loop lives); resumed,
the operator becomes ready; stalled again, its readiness passes stop reaching the API
server and ``/readyz`` turns 503 once the last pass is older than ``stale_after``
(three passes: 3 s with ``RESYNC_SECONDS=1``); resumed, ready again. Every wait ends
on the endpoint's answer; ``HANG`` only bounds a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.fixtures.kube import STAND_INS
from tests.servers.kube import KubeApi
from tests.servers.process import REPO, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

#: Bounds a hang only.
HANG = 60.0
Answer = tuple[int, dict[str, Any]]


@dataclass
class StallProxy:
    """A loopback TCP proxy to ``upstream`` that holds every byte while stalled."""

    upstream_host: str
    upstream_port: int
    port: int = 0
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    _open: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stall(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connected.set()
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        pipes = {
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        }
        self._tasks |= pipes
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                await self._open.wait()
                writer.write(data)
                await writer.drain()


@contextlib.asynccontextmanager
async def proxy_to(kube_api: KubeApi) -> AsyncIterator[StallProxy]:
    url = urlsplit(kube_api.url)
    assert url.hostname is not None
    assert url.port is not None
    proxy = StallProxy(url.hostname, url.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def kubeconfig_via(kube_api: KubeApi, proxy: StallProxy, path: Path) -> Path:
    """The test API server's kubeconfig with the server's address replaced by the proxy's."""
    config = yaml.safe_load(kube_api.kubeconfig.read_text())
    for cluster in config["clusters"]:
        server = urlsplit(cluster["cluster"]["server"])
        cluster["cluster"]["server"] = f"{server.scheme}://{server.hostname}:{proxy.port}"
    path.write_text(yaml.safe_dump(config))
    return path


def get(port: int, path: str) -> Answer:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@dataclass
class Operator:
    process: asyncio.subprocess.Process
    port: int
    log: Path

    def logged(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    async def get(self, path: str) -> Answer:
        return await asyncio.to_thread(get, self.port, path)

    async def until(self, path: str, wanted: Callable[[Answer], bool]) -> Answer:
        """``path``'s answer once ``wanted`` says so (asked every 0.2 s; the process must
        live meanwhile)."""
        last: Answer | None = None
        async with asyncio.timeout(HANG):
            while True:
                assert self.process.returncode is None, f"operator exited:\n{self.logged()}"
                with contextlib.suppress(OSError):  # not listening yet
                    last = await self.get(path)
                    if wanted(last):
                        return last
                await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def operator_process(
    kubeconfig: Path, namespace: str, operator_namespace: str, tmp_path: Path
) -> AsyncIterator[Operator]:
    kinds = {kind: f"{g}/{v}" for kind, (g, v, _) in STAND_INS.items()}
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYMIRROR_LOG__FORMAT": "json",
        "PYMIRROR_OPERATOR__NAMESPACE": operator_namespace,
        "PYMIRROR_OPERATOR__RESYNC_SECONDS": "1",
        "PYMIRROR_OPERATOR__GC_QUEUES": "false",
        "PYMIRROR_OPERATOR__WORKLOAD_KINDS": json.dumps(
            {k: kinds[k] for k in ("Deployment", "StatefulSet")}
        ),
        "PYMIRROR_OPERATOR__CONFIG_KINDS": json.dumps(
            {k: kinds[k] for k in ("ConfigMap", "Secret")}
        ),
    }
    port = free_port()
    log = tmp_path / "operator.log"
    command = [sys.executable, "-m", "pymirror", "operator", "--kubeconfig", str(kubeconfig)]
    command += ["--namespace", namespace, "--metrics-port", str(port)]
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO
        )
    try:
        yield Operator(process, port, log)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_readyz_follows_the_api_server_and_healthz_the_event_loop(
    kube_api: KubeApi, kube_crds: list[str], unique_name: str, tmp_path: Path
) -> None:
    async with proxy_to(kube_api) as proxy:
        kubeconfig = kubeconfig_via(kube_api, proxy, tmp_path / "kubeconfig")
        async with operator_process(kubeconfig, unique_name, f"{unique_name}-ops", tmp_path) as op:
            # Stalled from the start: the watches cannot list.
            status, body = await op.until("/healthz", lambda a: a[0] == 200)
            assert body["status"] in ("ok", "starting")
            async with asyncio.timeout(HANG):
                await proxy.connected.wait()  # the operator is trying to reach the server
            status, body = await op.get("/readyz")
            assert status == 503, body
            assert body["status"] == "not ready"
            assert body["watches_listed"] is False
            assert "the watches have not delivered their first list yet" in body["reasons"]
            status, body = await op.until("/healthz", lambda a: "heartbeat_age_seconds" in a[1])
            assert status == 200, body
            assert body["status"] == "ok", body  # the loop lives meanwhile
            assert body["heartbeat_age_seconds"] <= body["stall_after_seconds"]

            # Resumed: listed, and a pass reached the API server.
            proxy.resume()
            status, body = await op.until("/readyz", lambda a: a[0] == 200)
            assert body["status"] == "ok", body
            assert body["watches_listed"] is True
            assert body["stale_after_seconds"] == 3.0
            assert 0 <= body["last_pass_age_seconds"] <= body["stale_after_seconds"]
            assert "reasons" not in body

            # Stalled again: the passes stop reaching it; unready once the last is stale.
            proxy.stall()
            status, body = await op.until("/readyz", lambda a: a[0] == 503)
            assert body["watches_listed"] is True
            assert body["last_pass_age_seconds"] > body["stale_after_seconds"], body
            assert any(r.startswith("the last pass reached") for r in body["reasons"]), body
            status, body = await op.get("/healthz")
            assert status == 200, body
            assert body["status"] == "ok", body

            # Resumed: ready again.
            proxy.resume()
            status, body = await op.until("/readyz", lambda a: a[0] == 200)
            assert body["last_pass_age_seconds"] <= body["stale_after_seconds"], body

            # /metrics is still served on the same port.
            text = await asyncio.to_thread(
                lambda: (
                    urllib.request.urlopen(f"http://127.0.0.1:{op.port}/metrics", timeout=5)
                    .read()
                    .decode()
                )
            )
            assert "pymirror_operator_reconcile_seconds" in text

            op.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(HANG):
                assert await op.process.wait() == 0, op.logged()
