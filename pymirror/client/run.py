"""``pymirror exec`` end to end: session up, COMMAND under it, session down.

``run_exec(kube, plan, command, progress)``:

1. creates the SplitSession (``plan.body``) in ``plan.namespace``;
2. waits, bounded by ``plan.ready_timeout``, for Ready, showing the operator's
   ``status.message`` through ``progress``; SIGINT/SIGTERM meanwhile abandon the wait
   (exit 128 + the signal: 130 for SIGINT);
3. runs COMMAND with each ``status.queues[].envVar`` set to its ``value``, renewing the
   lease every ``leaseSeconds/3`` and forwarding SIGINT/SIGTERM (``client.child``);
4. if the session ends underneath (deleted, Ending, Failed, renewal finds no object),
   stops COMMAND (SIGTERM, SIGKILL after ``plan.grace``) and raises
   ``SessionEndedError`` saying why;
5. in every case deletes the session and waits (bounded by ``plan.end_timeout``) until
   it is gone; returns COMMAND's exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pymirror.client.child import Child, exit_status_text
from pymirror.client.session import ExecSession, SessionEndedError, session_env
from registry.objects import Kube
from registry.session_models import SplitSession


class Progress(Protocol):
    def pending(self, message: str) -> None: ...

    def done(self) -> None: ...

    def say(self, message: str) -> None: ...


@dataclass(frozen=True)
class ExecPlan:
    namespace: str
    body: Mapping[str, Any]
    lease_seconds: int
    ready_timeout: float = 120.0
    end_timeout: float = 60.0
    grace: float = 10.0
    env_overrides: frozenset[str] = frozenset()
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


@contextlib.contextmanager
def _cancel_on_signals() -> Iterator[list[int]]:
    """SIGINT/SIGTERM cancel the current task; the list holds the signals received."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    received: list[int] = []

    def cancel(signum: int) -> None:
        received.append(signum)
        if task is not None:
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, cancel, signum)
    try:
        yield received
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def run_exec(kube: Kube, plan: ExecPlan, command: Sequence[str], progress: Progress) -> int:
    """Run ``command`` inside a new session (see the module docstring); its exit code."""
    session = ExecSession(kube.objects(SplitSession.RESOURCE, plan.namespace), plan.name)
    await session.create(plan.body)
    progress.say(f"pymirror: session {session.ref} created; waiting for the operator")
    try:
        with _cancel_on_signals() as received:
            try:
                status = await session.wait_ready(plan.ready_timeout, progress.pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not received or task is None:
                    raise
                task.uncancel()  # the cancellation was ours: the end below must still run
                progress.done()
                progress.say("pymirror: interrupted before the session was Ready")
                return 128 + received[0]
            finally:
                progress.done()
        env = session_env(status, plan.base_env, plan.env_overrides)
        progress.say(f"pymirror: session {session.ref} is Ready; running {command[0]}")
        return await _supervise(session, plan, command, env)
    finally:
        await _end(session, plan, progress)


async def _end(session: ExecSession, plan: ExecPlan, progress: Progress) -> None:
    progress.say(f"pymirror: ending session {session.ref}; waiting for the operator")
    gone = await asyncio.shield(session.end(plan.end_timeout))
    if gone:
        progress.say(f"pymirror: session {session.ref} ended")
    else:
        progress.say(
            f"pymirror: warning: session {session.ref} was deleted but is still there after "
            f"{plan.end_timeout:g} s (the operator is still ending it; it goes when the "
            "operator finishes, or when its lease lapses)"
        )


async def _supervise(
    session: ExecSession,
    plan: ExecPlan,
    command: Sequence[str],
    env: Mapping[str, str],
) -> int:
    child = await Child.start(command, env)
    code: int | None = None
    try:
        with child.forward_signals():
            reason = await _first_end(child, session, plan.lease_seconds)
    finally:
        if child.process.returncode is None:
            code = await child.stop(plan.grace)
    if isinstance(reason, int):
        return reason
    code = await child.wait() if code is None else code
    raise SessionEndedError(
        f"{reason}; the command was stopped ({exit_status_text(code)}). "
        "Start pymirror exec again for a new session"
    )


async def _first_end(child: Child, session: ExecSession, lease_seconds: int) -> int | str:
    """COMMAND's exit code, or why the session ended first."""
    command = asyncio.create_task(child.wait())
    others: set[asyncio.Task[str]] = {
        asyncio.create_task(session.watch_end()),
        asyncio.create_task(session.renew_forever(lease_seconds)),
    }
    try:
        done, _ = await asyncio.wait({command, *others}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (command, *others):
            task.cancel()
    if command in done:
        return command.result()
    return next(t for t in others if t in done).result()
