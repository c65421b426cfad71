"""Fixtures of the sandbox tests: the local runtime on the real test API server, and helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pymirror.sandbox.pods import RestartPolicy
from pymirror.sandbox.runtime import LocalRuntime, RuntimeConfig
from pymirror.sandbox.workloads import STAND_IN_KINDS
from registry.objects import Kube, Objects
from tests.servers.kube import KubeApi

APP = Path(__file__).with_name("app.py")


async def eventually(what: str, check: Callable[[], Any], poll: float = 0.05) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, and return that.

    No deadline of its own: a condition that never comes is the test's timeout, whose
    report names ``what`` in the last log line."""
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(poll)


@dataclass
class Records:
    """What the deployed app.py processes wrote into ``directory``."""

    directory: Path

    def started(self) -> dict[int, dict[str, str]]:
        """pid -> environment, for every process that started."""
        return {int(p.stem): json.loads(p.read_text()) for p in self.directory.glob("[0-9]*.start")}

    def stopped(self) -> dict[int, list[str]]:
        """pid -> the names in the directory when it got SIGTERM."""
        return {
            int(p.stem): json.loads(p.read_text())["seen"]
            for p in self.directory.glob("[0-9]*.stop")
        }


def deployment(
    name: str, out: Path, env: dict[str, str], *, replicas: int = 1, grace: int = 10
) -> dict[str, Any]:
    """A stand-in Deployment running app.py with ``env`` (plus OUT_DIR) and a readiness probe."""
    probe = ["sh", "-c", 'test -f "$OUT_DIR/$HOSTNAME.ready"']
    container = {
        "name": "app",
        "image": "local",
        "command": [sys.executable, str(APP)],
        "env": [{"name": "OUT_DIR", "value": str(out)}]
        + [{"name": k, "value": v} for k, v in env.items()],
        "readinessProbe": {"exec": {"command": probe}, "periodSeconds": 1},
    }
    return {
        "apiVersion": STAND_IN_KINDS.resource("Deployment").api_version,
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": grace},
            },
        },
    }


@dataclass
class RuntimeUnderTest:
    runtime: LocalRuntime
    deployments: Objects
    log_dir: Path
    groups_dir: Path


@pytest.fixture
async def local_runtime(
    kube_api: KubeApi, kube_crds: list[str], unique_name: str, tmp_path: Path
) -> AsyncIterator[RuntimeUnderTest]:
    """The local runtime watching namespace ``unique_name``, run in this test's event loop."""
    config = RuntimeConfig(
        namespaces=[unique_name],
        log_dir=tmp_path / "logs",
        kinds=STAND_IN_KINDS,
        groups_dir=tmp_path / "groups",
        restart=RestartPolicy(first=0.2, ceiling=1.0),
    )
    async with Kube.from_kubeconfig(kube_api.kubeconfig) as kube:
        runtime = LocalRuntime(kube, config)
        task = asyncio.create_task(runtime.run())
        await eventually(
            "the runtime watches every kind", lambda: len(runtime.watching) == 3 or task.done()
        )
        deployments = kube.objects(STAND_IN_KINDS.resource("Deployment"), unique_name)
        try:
            yield RuntimeUnderTest(runtime, deployments, config.log_dir, tmp_path / "groups")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
