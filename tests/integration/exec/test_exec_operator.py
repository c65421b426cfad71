"""``pymirror exec`` against the real operator: a message for me reaches my temporary queue.

The operator world of tests/integration/operator/test_operator.py (its ``operated``
fixture: the controller in this test's loop, the sandbox's local runtime running the
meme app's stand-in Deployment and the split worker as local processes, moto) with
``pymirror exec`` run as a process in its namespace. The local command prints its
environment; the test sends a message for ``author=me`` to the original queue and reads
it from the queue the command was given; the command then exits 4, and ``exec`` ends
the session (the operator hands the queue back) and exits 4.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from tests.integration.exec.test_exec import CHILD
from tests.integration.operator.support import DEPLOYMENTS, HANG, MEME_VAR, wait_empty
from tests.integration.operator.test_operator import (  # the operator world
    Operated,
    operated,  # noqa: F401 (a fixture)
)
from tests.integration.sqs.support import Outgoing, attribute, mid_of, receive_some, send
from tests.servers.kube import KubeApi
from tests.servers.process import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


async def test_exec_gets_ready_from_the_operator_and_receives_its_messages(
    operated: Operated,  # noqa: F811 (the imported fixture)
    kube_api: KubeApi,
    tmp_path: Path,
) -> None:
    config = tmp_path / "mirrord.yaml"
    config.write_text(
        "target: deployment/meme-app/container/main\n"
        "feature:\n  split_queues:\n"
        "    meme-queue: {queue_type: SQS, message_filter: {author: '^me$'}}\n"
    )
    kinds = {"Deployment": DEPLOYMENTS.api_version, "StatefulSet": DEPLOYMENTS.api_version}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pymirror",
        "exec",
        "-f",
        str(config),
        "--kubeconfig",
        str(kube_api.kubeconfig),
        "--namespace",
        operated.namespace,
        "--",
        sys.executable,
        "-c",
        CHILD,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYMIRROR_OPERATOR__WORKLOAD_KINDS": json.dumps(kinds)},
    )
    try:
        assert process.stdout is not None
        assert process.stdin is not None
        async with asyncio.timeout(HANG):
            line = await process.stdout.readline()
        assert line, (await process.communicate())[1].decode()
        temporary = json.loads(line)[MEME_VAR]
        assert temporary != operated.memes  # the command got the session's queue

        sqs = operated.sqs
        original = await sqs.queue_url(operated.memes)
        mine = Outgoing("for-me", {"author": attribute("me")})
        await send(sqs, original, [mine])
        url = await sqs.queue_url(temporary)
        got: list[str] = []
        async with asyncio.timeout(HANG):
            while not got:  # each receive long-polls up to 1 s
                got = [mid_of(m) for m in await receive_some(sqs, url)]
        assert got == ["for-me"]

        process.stdin.write(b"4\n")
        await process.stdin.drain()
        async with asyncio.timeout(HANG):
            _, err = await process.communicate()
        assert process.returncode == 4, err.decode()
        assert b"pymirror: pending:" in err  # the operator's progress was shown
        assert (await operated.sessions.list()).items == []  # exec waited until it was gone
        async with asyncio.timeout(HANG):
            await wait_empty(operated.splits)  # the queue was handed back
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
