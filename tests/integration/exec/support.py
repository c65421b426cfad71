"""Helpers of the exec tests that run ``pymirror`` as a process against the operator.

:func:`split_config` writes a developer's mirrord config (one queue, one filter);
:func:`start_exec` starts ``pymirror exec`` with it and a local command, its pipes
open; :func:`cli_env` is the environment a developer's CLI runs with (the stand-in kinds,
the operator's namespace); :func:`pymirror_cli` runs one ``pymirror`` command to its end;
:func:`next_json` reads what its command prints; :func:`reap` kills what a test started and
left running. conftest.py's ``start_dev`` fixture puts these together for the operator
world.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.integration.operator.support import DEPLOYMENTS, HANG
from tests.servers.kube import KubeApi
from tests.servers.process import REPO

#: The operator's workload kinds for the CLI: the API server's stand-in kinds.
KINDS = {"Deployment": DEPLOYMENTS.api_version, "StatefulSet": DEPLOYMENTS.api_version}


def split_config(
    path: Path,
    user: str,
    *,
    target: str = "meme-app",
    queue: str = "meme-queue",
    queue_type: str = "SQS",
    key: str = "author",
) -> Path:
    """A mirrord config at ``path``: split ``queue`` of Deployment ``target``'s container
    ``main``, the messages whose ``key`` is ``user`` exactly."""
    path.write_text(
        f"target: deployment/{target}/container/main\n"
        "feature:\n  split_queues:\n"
        f"    {queue}: {{queue_type: {queue_type}, message_filter: {{{key}: '^{user}$'}}}}\n"
    )
    return path


def cli_env(
    operator_namespace: str | None = None, user: str | None = None, **extra: str
) -> dict[str, str]:
    """This process's environment with the stand-in kinds, and if given the operator's
    namespace, the developer's ``LOGNAME`` and ``extra``."""
    env = {**os.environ, "PYMIRROR_OPERATOR__WORKLOAD_KINDS": json.dumps(KINDS), **extra}
    if user is not None:
        env["LOGNAME"] = user
    if operator_namespace is not None:
        env["PYMIRROR_OPERATOR__NAMESPACE"] = operator_namespace
    return env


async def start_exec(
    kube_api: KubeApi,
    namespace: str,
    config: Path,
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    flags: Sequence[str] = (),
) -> asyncio.subprocess.Process:
    """``pymirror exec -f config ... [flags] -- command`` in ``namespace``, its stdin,
    stdout and stderr pipes."""
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "pymirror", "exec", "-f", str(config)),
        *("--kubeconfig", str(kube_api.kubeconfig), "--namespace", namespace),
        *flags,
        "--",
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env=dict(env),
    )


async def pymirror_cli(
    *args: str, env: Mapping[str, str] | None = None, hang: float = HANG
) -> tuple[int, str, str]:
    """``pymirror ARGS`` run to its end (``hang`` bounds a hang): (exit code, stdout,
    stderr)."""
    pipe = asyncio.subprocess.PIPE
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "pymirror", *args),
        stdout=pipe,
        stderr=pipe,
        cwd=REPO,
        env=None if env is None else dict(env),
    )
    async with asyncio.timeout(hang):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def next_json(process: asyncio.subprocess.Process, ended: str) -> Any:
    """The next line ``process`` prints, as JSON (bounded by HANG); if it ended instead,
    the test fails with ``ended`` and its stderr."""
    assert process.stdout is not None
    async with asyncio.timeout(HANG):
        line = await process.stdout.readline()
    if not line:
        _, err = await process.communicate()
        raise AssertionError(f"{ended}: {err.decode()}")
    return json.loads(line)


async def reap(process: asyncio.subprocess.Process) -> None:
    """Kill ``process`` if it still runs, and wait for it (a test's cleanup)."""
    if process.returncode is None:
        process.kill()
        await process.wait()
