"""``pymirror exec`` on the real test API server, with the test playing the operator.

Each test runs the real CLI (``python -m pymirror exec``) as a process, in a namespace of
its own, against the test API server. No operator runs: the test watches the
SplitSession pymirror creates and writes what the operator would (finalizer, status
phase, ``status.queues``), then checks what pymirror does: the command's environment, the
lease renewals, the deletion at exit (waiting for the finalizer), exit code passthrough,
a Failed session's message, a session that ends underneath the command, signals.

The local command is ``CHILD``: it prints its environment as one JSON line on stdout
(which is pymirror's: the test reads it), then exits with the code it reads from stdin;
on SIGTERM it prints ``signal SIGTERM`` and exits 0. Every wait is on a watched change
or on the processes' output; ``HANG`` only bounds a hang.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from registry.objects import Kube, Obj, Objects
from registry.session_models import SplitSession
from registry.watching import WatchEvent
from tests.servers.kube import KubeApi
from tests.servers.process import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HANG = 60.0
FINALIZER = "pymirror.dev/session"
CHILD = """
import json, os, signal, sys
def on_term(signum, frame):
    print("signal", signal.Signals(signum).name, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print(json.dumps(dict(os.environ)), flush=True)
sys.exit(int(sys.stdin.readline()))
"""
CONFIG = {
    "target": "deployment/meme-app/container/main",
    "agent": {"ttl": 30},
    "feature": {
        "network": {"incoming": "steal"},
        "split_queues": {
            "meme-queue": {"queue_type": "SQS", "message_filter": {"author": "^me$"}},
            "views": {"queue_type": "Kafka", "jq_filter": ".total > 1", "queue_mode": "mirror"},
        },
    },
}
READY_QUEUES = [
    {
        "id": "meme-queue",
        "original": "memes",
        "kind": "SQS",
        "envVar": "MEME_QUEUE",
        "value": "mirrord-tmp-1-memes",
    },
    {
        "id": "views",
        "original": "views",
        "kind": "Kafka",
        "envVar": "VIEWS_TOPIC",
        "value": "mirrord-tmp-1-views",
    },
]


@pytest.fixture
async def kube(kube_api: KubeApi, kube_crds: list[str]) -> AsyncIterator[Kube]:
    async with Kube.from_kubeconfig(kube_api.kubeconfig) as client:
        yield client


@pytest.fixture
def sessions(kube: Kube, unique_name: str) -> Objects:
    return kube.objects(SplitSession.RESOURCE, unique_name)


@dataclass
class Exec:
    """A running ``pymirror exec``."""

    process: asyncio.subprocess.Process

    async def child_env(self) -> dict[str, str]:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        assert line, f"the command never started: {await self.stderr()}"
        env: dict[str, str] = json.loads(line)
        return env

    async def release(self, code: int) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{code}\n".encode())
        await self.process.stdin.drain()

    async def finish(self) -> tuple[int, str, str]:
        """(exit code, the rest of stdout, stderr)."""
        out, err = await self.process.communicate()
        assert self.process.returncode is not None
        return self.process.returncode, out.decode(), err.decode()

    async def stderr(self) -> str:
        return (await self.finish())[2]


@pytest.fixture
async def start(
    kube_api: KubeApi, unique_name: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    started: list[asyncio.subprocess.Process] = []

    async def run(*flags: str, config: Any = CONFIG) -> Exec:
        path = tmp_path / "mirrord.json"
        path.write_text(json.dumps(config))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pymirror",
            "exec",
            "-f",
            str(path),
            "--kubeconfig",
            str(kube_api.kubeconfig),
            "--namespace",
            unique_name,
            *flags,
            "--",
            sys.executable,
            "-c",
            CHILD,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=REPO,
            env={**os.environ, "SESSION_MARKER": unique_name},
        )
        started.append(process)
        return Exec(process)

    yield run
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def until(objects: Objects, check: Callable[[WatchEvent], bool]) -> WatchEvent:
    """The first event (current objects first, as ADDED) that passes ``check``."""
    async with asyncio.timeout(HANG), objects.watch() as events:
        async for event in events:
            if check(event):
                return event
    raise AssertionError("the watch ended")  # pragma: no cover


def phase_is(phase: str) -> Callable[[WatchEvent], bool]:
    return lambda e: e.type != "DELETED" and (e.object.get("status") or {}).get("phase") == phase


async def created(objects: Objects) -> Obj:
    return (await until(objects, lambda e: e.type == "ADDED")).object


async def make_ready(objects: Objects, name: str, *, finalizer: bool = False) -> None:
    """The operator's part: (finalizer,) Pending with a message, then Ready with queues."""
    if finalizer:
        await objects.add_finalizer(name, FINALIZER)
    await objects.patch_status(name, {"phase": "Pending", "message": "creating queue memes-tmp"})
    await objects.patch_status(name, {"phase": "Ready", "sequence": 1, "queues": READY_QUEUES})


async def gone(objects: Objects, name: str) -> None:
    listed = await objects.list()
    assert name not in [o["metadata"]["name"] for o in listed.items]


async def test_the_command_runs_with_the_split_env_renews_and_its_exit_code_passes_through(
    start: Callable[..., Any], sessions: Objects, kube_api: KubeApi
) -> None:
    run = await start("--lease-seconds", "6")
    obj = await created(sessions)
    name = obj["metadata"]["name"]
    spec = obj["spec"]
    assert spec["target"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "meme-app",
        "container": "main",
    }
    assert spec["queues"] == [
        {"id": "meme-queue", "kind": "SQS", "messageFilter": {"author": "^me$"}, "mode": "steal"},
        {
            "id": "views",
            "kind": "Kafka",
            "messageFilter": {},
            "jqFilter": ".total > 1",
            "mode": "mirror",
        },
    ]
    assert spec["leaseSeconds"] == 6
    assert spec["owner"]["k8sUsername"] != "unknown"  # the test kubeconfig's user
    await make_ready(sessions, name, finalizer=True)

    env = await run.child_env()
    assert env["MEME_QUEUE"] == "mirrord-tmp-1-memes"
    assert env["VIEWS_TOPIC"] == "mirrord-tmp-1-views"
    assert env["SESSION_MARKER"] == sessions.namespace  # the rest of the environment is kept

    first = spec["renewTime"]
    renewed = await until(
        sessions, lambda e: e.type == "MODIFIED" and e.object["spec"]["renewTime"] != first
    )
    assert renewed.object["spec"]["renewTime"] > first

    await run.release(3)
    deleting = await until(sessions, lambda e: bool(e.object["metadata"].get("deletionTimestamp")))
    assert run.process.returncode is None  # waits for the operator to let the session go
    await sessions.remove_finalizer(deleting.name, FINALIZER)
    code, _, err = await run.finish()
    assert code == 3, err
    await gone(sessions, name)
    assert "pymirror: pending: creating queue memes-tmp" in err
    assert err.count("ignoring mirrord settings pymirror does not use: agent, feature.network") == 1


async def test_a_failed_session_prints_the_operators_message_and_is_deleted(
    start: Callable[..., Any], sessions: Objects
) -> None:
    run = await start()
    name = (await created(sessions))["metadata"]["name"]
    message = "spec.queues[0].id: no queue 'meme-queue' in registry meme-app; use one of orders"
    await sessions.patch_status(
        name, {"phase": "Failed", "endReason": "Failed", "message": message}
    )
    code, out, err = await run.finish()
    assert code == 1
    assert f"SessionFailedError: session {sessions.namespace}/{name} failed: {message}" in err
    assert out == ""  # the command never ran
    await gone(sessions, name)


@pytest.mark.parametrize("how", ["killed", "expired"])
async def test_a_session_ended_underneath_stops_the_command(
    start: Callable[..., Any], sessions: Objects, how: str
) -> None:
    run = await start("--grace", "20")
    name = (await created(sessions))["metadata"]["name"]
    await make_ready(sessions, name)
    await run.child_env()
    if how == "killed":
        await sessions.merge_patch(
            name, {"metadata": {"annotations": {"pymirror.dev/killed": "bob@ops"}}}
        )
        await sessions.delete(name)
        expected = "was deleted"
    else:
        await sessions.patch_status(
            name, {"phase": "Ending", "endReason": "Expired", "message": "no renewal for 30 s"}
        )
        expected = "phase Ending; endReason Expired; no renewal for 30 s"
    code, out, err = await run.finish()
    assert code == 1
    assert out == "signal SIGTERM\n"  # the command got SIGTERM and exited
    assert "SessionEndedError:" in err
    assert expected in err
    assert "the command was stopped (exit code 0)" in err
    await gone(sessions, name)


async def test_sigterm_reaches_the_command_and_the_session_is_deleted(
    start: Callable[..., Any], sessions: Objects
) -> None:
    run = await start()
    name = (await created(sessions))["metadata"]["name"]
    await make_ready(sessions, name)
    await run.child_env()
    run.process.send_signal(signal.SIGTERM)
    code, out, err = await run.finish()
    assert out == "signal SIGTERM\n"
    assert code == 0, err
    await gone(sessions, name)


async def test_an_interrupt_while_pending_deletes_the_session(
    start: Callable[..., Any], sessions: Objects
) -> None:
    run = await start()
    name = (await created(sessions))["metadata"]["name"]
    await sessions.patch_status(name, {"phase": "Pending", "message": "waiting for the rollout"})
    await until(sessions, phase_is("Pending"))
    assert run.process.stderr is not None
    async with asyncio.timeout(HANG):  # pymirror shows the message: it is in its wait
        while b"waiting for the rollout" not in await run.process.stderr.readline():
            pass
    run.process.send_signal(signal.SIGINT)
    code, out, err = await run.finish()
    assert code == 130, err
    assert out == ""
    await gone(sessions, name)


async def test_a_session_never_ready_times_out_and_is_deleted(
    start: Callable[..., Any], sessions: Objects
) -> None:
    run = await start("--ready-timeout", "1")
    code, _out, err = await run.finish()
    assert code == 1
    assert "ReadyTimeoutError:" in err
    assert "was not Ready within 1 s" in err
    assert "is the operator running and watching this namespace?" in err
    assert (await sessions.list()).items == []


async def test_a_bad_config_exits_2_and_creates_nothing(
    start: Callable[..., Any], sessions: Objects
) -> None:
    bad = {
        "target": "deployment/a",
        "feature": {
            "split_queues": {"q": {"queue_type": "SQS", "message_filter": {"author": "^(me"}}}
        },
    }
    code, _out, err = await (await start(config=bad)).finish()
    assert code == 2
    assert "feature.split_queues.q.message_filter.author: '^(me' is not a valid regex" in err
    assert (await sessions.list()).items == []
