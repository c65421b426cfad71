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
import sys

import pytest

from tests.integration.exec.conftest import StartDev
from tests.integration.exec.support import cli_env, next_json
from tests.integration.exec.test_exec import CHILD
from tests.integration.operator.support import HANG, MEME_VAR, wait_empty
from tests.integration.operator.test_operator import Operated
from tests.integration.sqs.support import Outgoing, attribute, mid_of, receive_some, send

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


async def test_exec_gets_ready_from_the_operator_and_receives_its_messages(
    operated: Operated, start_dev: StartDev
) -> None:
    process = await start_dev("me", [sys.executable, "-c", CHILD], env=cli_env())
    assert process.stdin is not None
    temporary = (await next_json(process, "exec ended"))[MEME_VAR]
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
