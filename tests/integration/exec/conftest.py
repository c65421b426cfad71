"""Fixtures of the exec tests that run against the real operator.

The operator world (``operated``, tests/integration/operator/test_operator.py) is built
from the operator tests' shared fixtures (tests/integration/operator/conftest.py); they
are brought into this directory's scope here. test_exec.py's own ``kube`` (the same
client) takes precedence in that module. ``start_dev`` starts a developer's
``pymirror exec`` in that world (helpers: support.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest

from tests.integration.exec.support import cli_env, reap, split_config, start_exec
from tests.integration.operator.conftest import (  # noqa: F401 (fixtures)
    aws_credentials,
    cluster,
    kube,
    local_runtime,
    namespaces,
    sqs,
)
from tests.integration.operator.test_operator import (  # noqa: F401 (a fixture)
    Operated,
    operated,
)
from tests.servers.kube import KubeApi


class StartDev(Protocol):
    async def __call__(
        self,
        user: str,
        command: Sequence[str],
        *,
        flags: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> asyncio.subprocess.Process: ...


@pytest.fixture
async def start_dev(
    operated: Operated,  # noqa: F811 (the imported fixture)
    kube_api: KubeApi,
    tmp_path: Path,
) -> AsyncIterator[StartDev]:
    """Starts ``pymirror exec ... -- command`` in the operator world's namespace for
    ``user``: its config (``<user>.yaml``) splits the meme queue for ``author=user``, its
    environment is :func:`cli_env` as ``user`` unless ``env`` is given. Whatever still
    runs at the end is killed."""
    started: list[asyncio.subprocess.Process] = []

    async def start(
        user: str,
        command: Sequence[str],
        *,
        flags: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> asyncio.subprocess.Process:
        config = split_config(tmp_path / f"{user}.yaml", user)
        env = cli_env(operated.operator_namespace, user) if env is None else env
        process = await start_exec(
            kube_api, operated.namespace, config, command, env=env, flags=flags
        )
        started.append(process)
        return process

    yield start
    for process in started:
        await reap(process)
