"""``kill -9`` of a running ``pymirror exec``: the lease lapses and the operator cleans up.

The operator world of tests/integration/operator/test_operator.py (its ``operated``
fixture: the controller in this test's loop, the sandbox's local runtime running the meme
app's stand-in Deployment and the split worker as local processes, moto). ``pymirror
exec --lease-seconds 6`` runs as a process; its command prints its pid and environment.
Once the session is Ready (the command has its temporary queue, the app reads the
fallback), exec gets SIGKILL: it can neither renew nor delete its session. The operator
ends the session ``Expired`` once the lease lapses, deletes it, deletes the temporary
queue, and (it was the last session) restores the app's env. Every wait is on a watched
change; ``HANG`` only bounds a hang. The time from the kill to the session's deletion is
printed (it is about lease + one resync, 6 + 5 s, never asserted: it depends on the
machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import Any

import pytest

from registry.objects import Obj
from tests.integration.exec.conftest import StartDev
from tests.integration.exec.support import cli_env, next_json
from tests.integration.exec.test_status_kill import watch_until
from tests.integration.operator.support import (
    APP,
    HANG,
    MEME_VAR,
    gone,
    wait_empty,
    watch_session,
)
from tests.integration.operator.test_operator import Operated, queue_exists

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LEASE = 6  # the shortest lease exec accepts
# prints its pid and environment, lets go of exec's pipes (so that, exec killed, nothing
# holds them: the test sees exec's end), then waits for a signal
CHILD = """
import json, os, signal
print(json.dumps({"pid": os.getpid(), "env": dict(os.environ)}), flush=True)
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
signal.pause()
"""


async def test_kill_9_of_exec_lets_the_lease_lapse_and_the_operator_ends_and_cleans_up(
    operated: Operated, start_dev: StartDev
) -> None:
    process = await start_dev(
        "me",
        [sys.executable, "-c", CHILD],
        flags=["--lease-seconds", str(LEASE)],
        env=cli_env(operated.operator_namespace, "kim"),
    )
    child_pid: int | None = None
    try:
        started: dict[str, Any] = await next_json(process, "exec ended")
        child_pid = int(started["pid"])
        temporary = started["env"][MEME_VAR]
        assert temporary != operated.memes

        (session,) = (await operated.sessions.list()).items
        name = session["metadata"]["name"]
        assert session["spec"]["leaseSeconds"] == LEASE
        assert session["status"]["phase"] == "Ready"
        assert session["status"]["queues"][0]["temporary"] == temporary
        assert await queue_exists(operated.sqs, temporary)
        app = await operated.deployments.get(APP)
        assert operated.app_env(app)[MEME_VAR] != operated.memes  # the app reads the fallback

        killed_at = time.monotonic()
        process.send_signal(signal.SIGKILL)
        async with asyncio.timeout(HANG):
            assert await process.wait() == -signal.SIGKILL
        os.kill(child_pid, 0)  # the command outlived exec (an orphan now): nobody stopped it

        seen: list[dict[str, Any]] = []
        assert await watch_session(operated.sessions, name, gone, seen) is None
        took = time.monotonic() - killed_at
        expired = [s for s in seen if s.get("endReason") == "Expired"]
        assert expired, seen  # ended because the lease lapsed, not deleted by anyone
        assert expired[0].get("phase") == "Ending"
        ended = {c["type"]: c for c in expired[0].get("conditions") or []}["Ended"]
        assert (ended["status"], ended["reason"]) == ("True", "Expired")
        assert took >= LEASE * 2 / 3  # not before the lease lapsed (renewed at most lease/3 ago)
        print(f"kill -9 -> session deleted in {took:.1f} s (lease {LEASE} s)")

        assert not await queue_exists(operated.sqs, temporary)  # the temporary queue is gone
        async with asyncio.timeout(HANG):
            await wait_empty(operated.splits)  # the last session: the split was handed back

        def restored(obj: Obj) -> bool:
            return operated.app_env(obj).get(MEME_VAR) == operated.memes

        app = await watch_until(operated.deployments, APP, restored)
        assert operated.app_env(app)[MEME_VAR] == operated.memes  # the env is restored
    finally:
        if child_pid is not None:  # exec died with SIGKILL: its command is an orphan
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid, signal.SIGKILL)
