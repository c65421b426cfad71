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
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from registry.objects import Obj
from tests.integration.exec.test_status_kill import watch_until
from tests.integration.operator.support import (
    APP,
    DEPLOYMENTS,
    HANG,
    MEME_VAR,
    gone,
    wait_empty,
    watch_session,
)
from tests.integration.operator.test_operator import (  # the operator world
    Operated,
    operated,  # noqa: F401 (a fixture)
    queue_exists,
)
from tests.servers.kube import KubeApi
from tests.servers.process import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LEASE = 6  # the shortest lease exec accepts
KINDS = {"Deployment": DEPLOYMENTS.api_version, "StatefulSet": DEPLOYMENTS.api_version}
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
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "pymirror", "exec", "-f", str(config)),
        *("--kubeconfig", str(kube_api.kubeconfig), "--namespace", operated.namespace),
        *("--lease-seconds", str(LEASE), "--", sys.executable, "-c", CHILD),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env={
            **os.environ,
            "LOGNAME": "kim",
            "PYMIRROR_OPERATOR__WORKLOAD_KINDS": json.dumps(KINDS),
            "PYMIRROR_OPERATOR__NAMESPACE": operated.operator_namespace,
        },
    )
    child_pid: int | None = None
    try:
        assert process.stdout is not None
        async with asyncio.timeout(HANG):
            line = await process.stdout.readline()
        assert line, (await process.communicate())[1].decode()
        started: dict[str, Any] = json.loads(line)
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
        if process.returncode is None:
            process.kill()
            await process.wait()
        if child_pid is not None:  # exec died with SIGKILL: its command is an orphan
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid, signal.SIGKILL)
