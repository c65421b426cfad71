"""A pod run as local processes: the local runtime's stand-in for the kubelet.

:class:`LocalPod` runs each container of a pod template as one local process
(its ``command`` + ``args``, the template's ``value`` env entries over the
runtime's own environment, ``workingDir``) in a process group of its own,
with stdout and stderr appended to ``<log dir>/<namespace>.<pod>.<container>.log``.
What the kubelet does that is modelled here:

* restart policy Always: a container whose process exits is started again
  after a backoff (``splitter.backoff.Backoff``, doubling, reset once a process
  has run for ``reset_after`` seconds); the rest of its process group is
  killed when the leader exits, as when a container ends;
* readiness: an exec ``readinessProbe`` is run locally every ``periodSeconds``;
  without one a container is ready as soon as its process runs; the pod is
  ready when every container is;
* stop: SIGTERM to every container's process group, up to the pod's
  ``terminationGracePeriodSeconds``, then SIGKILL.

No images, no isolation, no volumes, no networking: the processes run as the
runtime's user on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from pymirror.sandbox.groups import GroupId, GroupRecords
from pymirror.sandbox.workloads import ContainerSpec, Desired
from splitter.backoff import Backoff

log = structlog.get_logger("pymirror.sandbox.pods")


@dataclass(frozen=True)
class RestartPolicy:
    """Delays between restarts of a crashed container (the kubelet: 10 s doubling to 5 min)."""

    first: float = 0.5
    ceiling: float = 30.0
    reset_after: float = 10.0
    """A process that ran this long resets the backoff (the kubelet waits 10 min)."""


@dataclass
class ContainerState:
    spec: ContainerSpec
    process: asyncio.subprocess.Process | None = None
    group: GroupId | None = None
    ready: bool = False
    restarts: int = 0
    last_exit: int | None = None


@dataclass(eq=False)
class LocalPod:
    """One pod of a workload as local processes (see the module docstring)."""

    name: str
    desired: Desired
    log_dir: Path
    base_env: Mapping[str, str]
    on_change: Callable[[], None]
    records: GroupRecords | None = None
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    containers: list[ContainerState] = field(default_factory=list)
    stopping: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def template_hash(self) -> str:
        return self.desired.template_hash

    @property
    def ready(self) -> bool:
        return not self.stopping and bool(self.containers) and all(c.ready for c in self.containers)

    @property
    def pids(self) -> list[int]:
        return [c.process.pid for c in self.containers if c.process is not None]

    def log_path(self, container: str) -> Path:
        return self.log_dir / f"{self.desired.namespace}.{self.name}.{container}.log"

    def start(self) -> None:
        """Start every container's supervisor (returns at once)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for note in self.desired.unsupported:
            log.warning("unsupported", pod=self.name, namespace=self.desired.namespace, what=note)
        for spec in self.desired.containers:
            state = ContainerState(spec)
            self.containers.append(state)
            if not spec.argv:
                self._note(spec.name, "not started: the container has no command")
                continue
            task = asyncio.create_task(self._supervise(state), name=f"pod-{self.name}-{spec.name}")
            self._tasks.append(task)

    async def stop(self) -> None:
        """SIGTERM every container, SIGKILL what is left after the grace period; wait for all.

        Each container's supervisor does the stopping, so a process being started right now
        is stopped too."""
        self.stopping = True
        self._stop.set()
        self.on_change()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.on_change()

    # --- one container ---------------------------------------------------------------

    def _note(self, container: str, line: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with self.log_path(container).open("a") as f:
            f.write(f"--- pymirror local runtime {stamp}: {line}\n")

    def _env(self, spec: ContainerSpec) -> dict[str, str]:
        env = dict(self.base_env)
        env["HOSTNAME"] = self.name
        env.update(spec.env)
        return env

    async def _spawn(self, state: ContainerState) -> asyncio.subprocess.Process | None:
        spec = state.spec
        path = self.log_path(spec.name)
        with path.open("ab") as out:
            try:
                process = await asyncio.create_subprocess_exec(
                    *spec.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    env=self._env(spec),
                    cwd=spec.working_dir,
                    start_new_session=True,
                )
            except OSError as e:
                self._note(spec.name, f"cannot start {spec.argv[0]}: {e}")
                log.warning(
                    "container start failed", pod=self.name, container=spec.name, error=str(e)
                )
                return None
        state.group = GroupId.of(process.pid) or GroupId(process.pid, -1)
        if self.records is not None:
            self.records.add(state.group, f"{self.desired.namespace}/{self.name}/{spec.name}")
        self._note(spec.name, f"started pid {process.pid}: {' '.join(spec.argv)}")
        log.info("container started", pod=self.name, container=spec.name, pid=process.pid)
        return process

    async def _supervise(self, state: ContainerState) -> None:
        """Run the container until the pod stops: start, wait, restart after a backoff."""
        backoff = Backoff(first=self.restart.first, ceiling=self.restart.ceiling)
        while not self.stopping:
            started = time.monotonic()
            process = await self._spawn(state)
            if process is not None:
                state.process = process
                probe = asyncio.create_task(self._probe(state, process))
                exited = asyncio.create_task(process.wait())
                stop = asyncio.create_task(self._stop.wait())
                self.on_change()
                await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
                probe.cancel()
                await asyncio.gather(probe, return_exceptions=True)
                state.ready = False
                if not exited.done():  # the pod is stopping
                    await self._terminate(state)
                    await exited
                    return
                stop.cancel()
                state.last_exit = exited.result()
                self._kill_rest(state)
                if time.monotonic() - started >= self.restart.reset_after:
                    backoff.reset()
            if self.stopping:
                return
            delay = backoff.next_delay()
            state.restarts += 1
            self._note(state.spec.name, f"exited ({state.last_exit}); restart in {delay:g} s")
            log.info(
                "container exited",
                pod=self.name,
                container=state.spec.name,
                code=state.last_exit,
                restart_in=delay,
            )
            self.on_change()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    def _kill_rest(self, state: ContainerState) -> None:
        """The leader exited: end the rest of its group, as the container's end would."""
        if state.group is not None:
            state.group.signal(signal.SIGKILL)
            if self.records is not None:
                self.records.remove(state.group)

    async def _probe(self, state: ContainerState, process: asyncio.subprocess.Process) -> None:
        spec = state.spec
        if spec.readiness_exec is None:
            state.ready = True
            self.on_change()
            return
        await asyncio.sleep(spec.readiness_initial_delay)
        while process.returncode is None:
            ok = await self._probe_once(spec)
            if ok != state.ready:
                state.ready = ok
                self.on_change()
            await asyncio.sleep(max(spec.readiness_period, 0.1))

    async def _probe_once(self, spec: ContainerSpec) -> bool:
        assert spec.readiness_exec is not None
        try:
            probe = await asyncio.create_subprocess_exec(
                *spec.readiness_exec,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env=self._env(spec),
                cwd=spec.working_dir,
                start_new_session=True,
            )
        except OSError:
            return False
        try:
            return await probe.wait() == 0
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(probe.pid, signal.SIGKILL)
            await asyncio.shield(probe.wait())
            raise

    async def _terminate(self, state: ContainerState) -> None:
        process, group = state.process, state.group
        if process is None or group is None:
            return
        if process.returncode is None:
            group.signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.desired.grace_seconds)
            except TimeoutError:
                self._note(state.spec.name, "grace period over: SIGKILL")
                group.signal(signal.SIGKILL)
                await process.wait()
        group.signal(signal.SIGKILL)  # whatever the leader left in its group
        if self.records is not None:
            self.records.remove(group)
        self._note(state.spec.name, f"stopped pid {process.pid} ({process.returncode})")
        log.info("container stopped", pod=self.name, container=state.spec.name, pid=process.pid)
