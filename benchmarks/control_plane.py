"""Control-plane benchmark: SplitSession create -> Ready and delete -> cleaned, operator RSS.

One machine, the whole local control plane of ``pymirror sandbox up`` (etcd +
apiextensions-apiserver, moto, the local runtime and ``pymirror operator`` as
separate process groups; no Kafka) in a temporary state directory, stopped with
``sandbox down`` on exit (also on failure or SIGTERM). The meme-app example: its
stand-in Deployment (an idle process) and ``examples/meme-app/queue-registry.yaml``,
its two queues on moto.

20 SQS SplitSessions on ``meme-queue`` (one ``author`` filter each) are created **one
after the other**, each once the previous one is Ready; then deleted one after the
other, each once the previous one is gone. Times are taken when a watch event shows
the change (one watch per kind, opened before the run):

* create -> Ready: from just before the create call to the first event with phase
  Ready. The first session makes the QueueSplit, patches the app's env and waits for
  that rollout, then for the worker; the rollout (from the event showing the patched
  generation to the event showing it rolled out) is measured on its own and subtracted
  from the first session's figure; the other sessions join the running split.
* delete -> cleaned: from just before the delete call to the session's DELETED event;
  for the last session, also the QueueSplit's DELETED event (the split handed back:
  env restored, restore rollout waited for, worker gone).
* the operator's VmRSS (``/proc/<pid>/status``) after the run.

p50/p95 are nearest-rank. Goals (the issue): ready p95 <= 2 s, cleanup p95 <= 3 s,
RSS <= 150 MiB. The last lines are ``ratio control_plane_ready_p95_s <s>`` and
``ratio control_plane_cleanup_p95_s <s>``. ``--quick`` (the same 20 sessions) takes
well under 3 minutes.

``--scale`` measures the operator under load instead, in two parts on one sandbox:

* ``--scale-sessions`` (100) sessions on one split, **all created at once** once the
  split exists (one first session makes it; its rollout is not in the figures), then
  all deleted at once: create -> Ready and delete -> gone per session, p50/p95;
* ``--scale-splits`` (20) workloads (each its own stand-in Deployment, queue and
  registry), one session each, all created at once, then all deleted at once: create
  -> Ready (the env patch's rollout and the worker's start included: each session
  makes its split) and delete -> cleaned (its QueueSplit gone: drained, env restored,
  worker deleted), p50/p95.

For each part: the operator's peak VmRSS (sampled every 0.2 s), its CPU seconds
(``/proc/<pid>/stat`` utime + stime) per session and per reconcile (the count of
``pymirror_operator_reconcile_seconds`` on its ``/metrics``, sessions and splits), and
the QueueSplit spec writes of the creations and of the deletions (each new
``metadata.generation`` a watch event shows: a route added or removed, the fallback set,
the hand-back started; the operator folds the changes that wait meanwhile into one
write). Its last lines are ``ratio control_plane_scale_*`` figures.

To see where the operator's time goes, keep the logs (``--state-dir DIR``) and attach a
sampling profiler to the operator process while the run goes, e.g. ``py-spy record
--pid $(pgrep -f "operator --kubeconfig DIR") --format raw -o profile.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pymirror.sandbox.control import REGION, UpOptions, down, up
from pymirror.sandbox.operator import DEFAULT_NAMESPACE
from pymirror.sandbox.progress import Progress
from pymirror.sandbox.state import State
from pymirror.sandbox.workloads import STAND_IN_KINDS
from registry.env_patch import status_of
from registry.objects import Kube, Obj, Objects
from registry.resources import Resource
from registry.session_models import QueueSplit, SplitSession
from splitter.sqs.client import SqsEndpoint, connect

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
APP = "meme-app"
DEPLOYMENTS = STAND_IN_KINDS.deployment
REGISTRIES = Resource("queues.mirrord.metalbear.co", "v1alpha", "mirrordworkloadqueueregistries")
IDLE = [
    sys.executable,
    "-c",
    "import signal; signal.signal(signal.SIGTERM, lambda *a: exit(0)); signal.pause()",
]
HANG = 120.0  # bounds a hang only; every wait is on a watch event


# --- the objects ----------------------------------------------------------------------------


def app_deployment(memes: str, ads: str) -> Obj:
    env = [
        {"name": "INCOMING_MEME_QUEUE_NAME", "value": memes},
        {"name": "AD_QUEUE_NAME", "value": ads},
    ]
    container = {"name": "main", "image": "local", "command": IDLE, "env": env}
    return {
        "apiVersion": DEPLOYMENTS.api_version,
        "kind": "Deployment",
        "metadata": {"name": APP},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": APP}},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {"terminationGracePeriodSeconds": 5, "containers": [container]},
            },
        },
    }


def session_body(name: str, app: str = APP) -> Obj:
    target = {"apiVersion": DEPLOYMENTS.api_version, "kind": "Deployment", "name": app}
    return {
        "apiVersion": "pymirror.dev/v1alpha1",
        "kind": "SplitSession",
        "metadata": {"name": name},
        "spec": {
            "target": {**target, "container": "main"},
            "owner": {"username": name, "hostname": "bench", "k8sUsername": f"{name}@bench"},
            "queues": [
                {"id": "meme-queue", "kind": "SQS", "messageFilter": {"author": f"^{name}$"}}
            ],
            "leaseSeconds": 3600,  # no renewals during the run
        },
    }


# --- watching ---------------------------------------------------------------------------------


@dataclass
class Seen:
    """When (monotonic) each watched change was first seen."""

    ready: dict[str, float] = field(default_factory=dict)
    deleted: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    rollouts: list[tuple[float, float]] = field(default_factory=list)
    """(patched generation seen, rolled out seen) of the app, in order."""
    generations: dict[str, int] = field(default_factory=dict)
    """The last ``metadata.generation`` seen of each QueueSplit."""
    spec_writes: int = 0
    """New QueueSplit generations seen (a creation counts as one)."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def note(self) -> None:
        self.changed.set()

    async def until(self, check: Any) -> None:
        """Until ``check()`` holds; a hang is HANG s without any watched change (a busy
        machine is slow, not stuck)."""
        while not check():
            self.changed.clear()
            async with asyncio.timeout(HANG):
                await self.changed.wait()


async def watch_sessions(objects: Objects, seen: Seen) -> None:
    async with objects.watch() as w:
        async for event in w:
            now = time.monotonic()
            status = event.object.get("status") or {}
            if event.type == "DELETED":
                seen.deleted.setdefault(event.name, now)
            elif status.get("phase") == "Ready":
                seen.ready.setdefault(event.name, now)
            elif status.get("phase") == "Failed":
                seen.failed[event.name] = str(status.get("message"))
            seen.note()


async def watch_splits(objects: Objects, seen: Seen) -> None:
    async with objects.watch() as w:
        async for event in w:
            if event.type == "DELETED":
                seen.deleted.setdefault(f"split/{event.name}", time.monotonic())
                seen.generations.pop(event.name, None)
                seen.note()
                continue
            generation = int(event.object["metadata"].get("generation") or 0)
            if seen.generations.get(event.name) != generation:
                seen.generations[event.name] = generation
                seen.spec_writes += 1


async def watch_app(objects: Objects, seen: Seen) -> None:
    """Record each rollout of the app: a new generation seen, then that generation done."""
    generation: int | None = None
    started: float | None = None
    async with objects.watch(field_selector=f"metadata.name={APP}") as w:
        async for event in w:
            now = time.monotonic()
            current = int(event.object["metadata"].get("generation") or 0)
            if generation is None:
                generation = current
            elif current > generation:
                generation, started = current, now
            if started is not None and status_of("Deployment", event.object).done:
                seen.rollouts.append((started, now))
                started = None
            seen.note()


@contextlib.asynccontextmanager
async def watching(kube: Kube, seen: Seen) -> AsyncIterator[None]:
    tasks = [
        asyncio.create_task(watch_sessions(kube.objects(SplitSession.RESOURCE, NAMESPACE), seen)),
        asyncio.create_task(
            watch_splits(kube.objects(QueueSplit.RESOURCE, DEFAULT_NAMESPACE), seen)
        ),
        asyncio.create_task(watch_app(kube.objects(DEPLOYMENTS, NAMESPACE), seen)),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Result:
    ready: list[float]  # create -> Ready, s, in creation order (the first: rollout subtracted)
    first_total: float
    first_rollout: float
    cleanup: list[float]  # delete -> cleaned, s, in deletion order
    restore_rollout: float
    rss_mib: float
    sessions: int


async def app_rolled_out(kube: Kube) -> None:
    objects = kube.objects(DEPLOYMENTS, NAMESPACE)
    async with asyncio.timeout(HANG), objects.watch(field_selector=f"metadata.name={APP}") as w:
        async for event in w:
            if status_of("Deployment", event.object).done:
                return


async def create_all(kube: Kube, seen: Seen, names: list[str]) -> tuple[list[float], int]:
    sessions = kube.objects(SplitSession.RESOURCE, NAMESPACE)
    created: list[float] = []
    for name in names:
        created.append(time.monotonic())
        await sessions.create(session_body(name))
        await seen.until(lambda n=name: n in seen.ready or n in seen.failed)
        if name in seen.failed:
            raise SystemExit(f"session {name} failed: {seen.failed[name]}")
    return [seen.ready[n] - t for n, t in zip(names, created, strict=True)], len(seen.rollouts)


async def delete_all(kube: Kube, seen: Seen, names: list[str], split: str) -> list[float]:
    sessions = kube.objects(SplitSession.RESOURCE, NAMESPACE)
    times: list[float] = []
    for i, name in enumerate(names):
        keys = [name, f"split/{split}"] if i == len(names) - 1 else [name]
        start = time.monotonic()
        await sessions.delete(name)
        await seen.until(lambda k=keys: all(key in seen.deleted for key in k))
        times.append(max(seen.deleted[key] for key in keys) - start)
    return times


def vm_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:")
    return kib / 1024


async def run(state: State, count: int) -> Result:
    operator = state.component("operator")
    if operator is None:
        raise SystemExit("the sandbox has no operator component; see its logs/")
    moto = state.env["AWS_ENDPOINT_URL"]
    endpoint = SqsEndpoint(moto, REGION, "test", "test")
    names = [f"dev{i:02d}" for i in range(count)]
    async with Kube.from_kubeconfig(state.env["KUBECONFIG"]) as kube, connect(endpoint) as sqs:
        memes = await sqs.create_queue("memes", {}, {})
        ads = await sqs.create_queue("ads", {}, {})
        app = app_deployment(memes.rpartition("/")[2], ads.rpartition("/")[2])
        await kube.objects(DEPLOYMENTS, NAMESPACE).create(app)
        registry = yaml.safe_load((REPO / "examples/meme-app/queue-registry.yaml").read_text())
        await kube.objects(REGISTRIES, NAMESPACE).create(registry)
        await app_rolled_out(kube)
        seen = Seen()
        async with watching(kube, seen):
            ready, rollouts = await create_all(kube, seen, names)
            if rollouts != 1:
                raise SystemExit(
                    f"expected one rollout of the app by the first session: {rollouts}"
                )
            first_rollout = seen.rollouts[0][1] - seen.rollouts[0][0]
            first_total = ready[0]
            ready[0] -= first_rollout
            split = (await kube.objects(QueueSplit.RESOURCE, DEFAULT_NAMESPACE).list()).items
            if len(split) != 1:
                raise SystemExit(f"expected one QueueSplit, found {len(split)}")
            cleanup = await delete_all(kube, seen, names, split[0]["metadata"]["name"])
            # the env is restored and rolled out before the QueueSplit goes; its events may trail
            await seen.until(lambda: len(seen.rollouts) >= 2)
            restore = seen.rollouts[1][1] - seen.rollouts[1][0]
        rss = vm_rss_mib(operator.pid)
    return Result(ready, first_total, first_rollout, cleanup, restore, rss, count)


# --- scale --------------------------------------------------------------------------------


@dataclass
class Sampler:
    """The operator's peak VmRSS, CPU seconds and reconciles while it runs."""

    pid: int
    metrics_url: str
    peak_mib: float = 0.0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    async def reconciles(self) -> int:
        """Reconciles the operator finished (sessions and splits), from its /metrics."""

        def read() -> str:
            with urllib.request.urlopen(self.metrics_url, timeout=HANG) as response:
                return str(response.read().decode())

        text = await asyncio.to_thread(read)
        counts = [
            float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line.startswith("pymirror_operator_reconcile_seconds_count")
        ]
        return int(sum(counts))

    async def run(self) -> None:
        while True:
            self.peak_mib = max(self.peak_mib, vm_rss_mib(self.pid))
            await asyncio.sleep(0.2)


@dataclass
class ScalePart:
    label: str
    ready: list[float]
    cleanup: list[float]
    peak_mib: float
    cpu_per_session: float
    cpu_per_reconcile: float
    reconciles: int
    create_writes: int
    delete_writes: int


async def at_once(
    kube: Kube, seen: Seen, names: list[str], apps: list[str], sampler: Sampler, label: str
) -> ScalePart:
    """Create the sessions ``names`` (on ``apps``) at once, wait for all Ready, delete
    them at once, wait until they (and, for one app each, their splits) are gone."""
    sessions = kube.objects(SplitSession.RESOURCE, NAMESPACE)
    cpu = sampler.cpu_seconds()
    reconciles = await sampler.reconciles()
    writes = seen.spec_writes
    sampler.peak_mib = 0.0
    created: dict[str, float] = {}

    async def create(name: str, app: str) -> None:
        created[name] = time.monotonic()
        await sessions.create(session_body(name, app))

    await asyncio.gather(*(create(n, a) for n, a in zip(names, apps, strict=True)))
    await seen.until(lambda: all(n in seen.ready or n in seen.failed for n in names))
    failed = [f"{n}: {seen.failed[n]}" for n in names if n in seen.failed]
    if failed:
        raise SystemExit(f"{len(failed)} sessions failed, e.g. {failed[0]}")
    ready = [seen.ready[n] - created[n] for n in names]
    create_writes, writes = seen.spec_writes - writes, seen.spec_writes
    splits: dict[str, str] = {}  # with one app per session: its split goes with it
    if len(set(apps)) > 1:
        for name in names:
            splits[name] = split_of(await sessions.get(name))
    deleted: dict[str, float] = {}

    async def delete(name: str) -> None:
        deleted[name] = time.monotonic()
        await sessions.delete(name)

    await asyncio.gather(*(delete(n) for n in names))
    keys = {n: [n, f"split/{splits[n]}"] if n in splits else [n] for n in names}
    await seen.until(lambda: all(k in seen.deleted for ks in keys.values() for k in ks))
    cleanup = [max(seen.deleted[k] for k in keys[n]) - deleted[n] for n in names]
    delete_writes = seen.spec_writes - writes
    used = sampler.cpu_seconds() - cpu
    reconciled = await sampler.reconciles() - reconciles
    return ScalePart(
        label,
        ready,
        cleanup,
        sampler.peak_mib,
        used / len(names),
        used / max(reconciled, 1),
        reconciled,
        create_writes,
        delete_writes,
    )


def split_of(session: Obj) -> str:
    (queue,) = session["status"]["queues"]
    return str(queue["split"])


async def scale(state: State, sessions: int, splits: int) -> list[ScalePart]:
    operator = state.component("operator")
    if operator is None:
        raise SystemExit("the sandbox has no operator component; see its logs/")
    endpoint = SqsEndpoint(state.env["AWS_ENDPOINT_URL"], REGION, "test", "test")
    if operator.url is None:
        raise SystemExit("the sandbox's operator serves no /metrics; see its logs/")
    sampler = Sampler(operator.pid, operator.url)
    apps = [f"app-{i:02d}" for i in range(splits)]
    async with Kube.from_kubeconfig(state.env["KUBECONFIG"]) as kube, connect(endpoint) as sqs:
        registry = yaml.safe_load((REPO / "examples/meme-app/queue-registry.yaml").read_text())
        deployments = kube.objects(DEPLOYMENTS, NAMESPACE)
        for app in [APP, *apps]:
            memes = await sqs.create_queue(f"memes-{app}", {}, {})
            ads = await sqs.create_queue(f"ads-{app}", {}, {})
            body = app_deployment(memes.rpartition("/")[2], ads.rpartition("/")[2])
            body["metadata"]["name"] = app
            body["spec"]["selector"]["matchLabels"]["app"] = app
            body["spec"]["template"]["metadata"]["labels"]["app"] = app
            await deployments.create(body)
            own = {**registry, "metadata": {"name": f"{app}-q-registry"}}
            own["spec"] = {**registry["spec"], "consumer": {**registry["spec"]["consumer"]}}
            own["spec"]["consumer"]["name"] = app
            await kube.objects(REGISTRIES, NAMESPACE).create(own)
        await app_rolled_out(kube)
        seen = Seen()
        sampling = asyncio.create_task(sampler.run())
        try:
            async with watching(kube, seen):
                # the split exists (its rollout done) before the 100 sessions come
                first = kube.objects(SplitSession.RESOURCE, NAMESPACE)
                await first.create(session_body("anchor"))
                await seen.until(lambda: "anchor" in seen.ready or "anchor" in seen.failed)
                if "anchor" in seen.failed:
                    raise SystemExit(f"session anchor failed: {seen.failed['anchor']}")
                names = [f"dev{i:03d}" for i in range(sessions)]
                one = await at_once(
                    kube, seen, names, [APP] * sessions, sampler, f"{sessions} on one split"
                )
                await first.delete("anchor")
                await seen.until(lambda: "anchor" in seen.deleted)
                names = [f"own{i:02d}" for i in range(splits)]
                many = await at_once(kube, seen, names, apps, sampler, f"{splits} splits")
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
    return [one, many]


def report_scale(parts: list[ScalePart], took: float) -> None:
    print(f"{'part / measure':<44} {'p50 s':>7} {'p95 s':>7} {'max s':>7}")
    for part in parts:
        for label, values in (("create -> Ready", part.ready), ("delete -> cleaned", part.cleanup)):
            name = f"{part.label}: {label}"
            print(
                f"{name:<44} {pct(values, 0.5):>7.3f} {pct(values, 0.95):>7.3f} {max(values):>7.3f}"
            )
        print(
            f"{part.label}: operator peak VmRSS {part.peak_mib:.1f} MiB (goal <= 150), "
            f"CPU {part.cpu_per_session * 1000:.1f} ms per session, "
            f"{part.cpu_per_reconcile * 1000:.1f} ms per reconcile ({part.reconciles} reconciles)"
        )
        print(
            f"{part.label}: QueueSplit spec writes {part.create_writes} for the creations, "
            f"{part.delete_writes} for the deletions"
        )
    print(f"measured in {took:.0f} s (sandbox up and down included)")
    for part, key in zip(parts, ("one_split", "splits"), strict=True):
        print(f"ratio control_plane_scale_{key}_ready_p95_s {pct(part.ready, 0.95):.3f}")
        print(f"ratio control_plane_scale_{key}_cleanup_p95_s {pct(part.cleanup, 0.95):.3f}")
        print(f"ratio control_plane_scale_{key}_rss_mib {part.peak_mib:.1f}")
        print(f"ratio control_plane_scale_{key}_delete_writes {part.delete_writes}")


# --- report -----------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def report(r: Result, took: float) -> None:
    print(
        f"{r.sessions} SQS SplitSessions on meme-app/meme-queue, created one after the other "
        "(each once the previous is Ready), deleted one after the other"
    )
    print(f"{'measure':<44} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'mean s':>7}")
    rows = [
        ("create -> Ready (first: rollout subtracted)", r.ready),
        ("create -> Ready, joining sessions 2..N", r.ready[1:]),
        ("delete -> cleaned (last: QueueSplit gone)", r.cleanup),
        ("delete -> gone, sessions 1..N-1", r.cleanup[:-1]),
    ]
    for label, values in rows:
        print(
            f"{label:<44} {pct(values, 0.5):>7.3f} {pct(values, 0.95):>7.3f} "
            f"{max(values):>7.3f} {statistics.mean(values):>7.3f}"
        )
    print(
        f"first session: create -> Ready {r.first_total:.3f} s, of which the app's rollout "
        f"{r.first_rollout:.3f} s"
    )
    print(
        f"last session: delete -> split handed back {r.cleanup[-1]:.3f} s "
        f"(of which the restore rollout {r.restore_rollout:.3f} s)"
    )
    print(f"operator VmRSS after the run: {r.rss_mib:.1f} MiB (goal <= 150)")
    print("goals: ready p95 <= 2 s, cleanup p95 <= 3 s")
    print(f"measured in {took:.0f} s (sandbox up and down included)")
    print(f"ratio control_plane_operator_rss_mib {r.rss_mib:.1f}")
    print(f"ratio control_plane_ready_p95_s {pct(r.ready, 0.95):.3f}")
    print(f"ratio control_plane_cleanup_p95_s {pct(r.cleanup, 0.95):.3f}")


@contextlib.contextmanager
def sandbox(state_dir: Path) -> Iterator[State]:
    """``sandbox up`` (no Kafka) in ``state_dir``; ``sandbox down`` on exit."""
    progress = Progress(sys.stderr)
    options = UpOptions(state_dir=state_dir, namespaces=(NAMESPACE,), kafka=False)
    try:
        state, _ = up(options, progress)
        yield state
    finally:
        down(state_dir, progress)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the same run (under 3 minutes)")
    parser.add_argument("--sessions", type=int, default=20, help="how many sessions (20)")
    parser.add_argument(
        "--scale", action="store_true", help="the scale run instead (see the docstring)"
    )
    parser.add_argument(
        "--scale-sessions", type=int, default=100, help="--scale: sessions on one split (100)"
    )
    parser.add_argument("--scale-splits", type=int, default=20, help="--scale: splits (20)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="the sandbox's state directory, its logs/ kept after the run (default: a "
        "temporary directory, removed)",
    )
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the sandbox is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="pymirror-bench-") as tmp,
        sandbox(args.state_dir or Path(tmp) / "sandbox") as state,
    ):
        if args.scale:
            parts = asyncio.run(scale(state, args.scale_sessions, args.scale_splits))
        else:
            result = asyncio.run(run(state, args.sessions))
    if args.scale:
        report_scale(parts, time.monotonic() - began)
    else:
        report(result, time.monotonic() - began)


if __name__ == "__main__":
    main()
