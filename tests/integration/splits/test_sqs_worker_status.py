"""An SQS split worker following its QueueSplit reports its progress in the status.

Real servers: the test API server and moto/LocalStack. The worker runs as the operator
runs it (``--split``): in this loop through :func:`pymirror.worker.sqs_process.serve`
(short report interval), or as a ``pymirror worker sqs`` child process where a restart
or the exit status matters. Every wait is on the status the worker writes (watched) or
on measured progress; ``HANG`` only bounds a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from pymirror.worker.sqs_process import SqsProcess, serve
from registry.objects import Kube, Objects
from registry.session_models import QueueSplit
from splitter.sqs.client import SqsClient
from tests.integration.sqs.support import (
    FALLBACK,
    Outgoing,
    attribute,
    client_for,
    drain,
    empty,
    gone,
    make_queue,
    mid_of,
    process_env,
    send,
    temporary,
    wait_for,
    worker_settings,
)
from tests.servers.kube import KubeApi
from tests.servers.process import REPO
from tests.servers.sqs import SqsEndpoint as ServerEndpoint

pytestmark = pytest.mark.integration

HANG = 90.0
NAME = "orders"
ALICE, BOB = "dev/alice", "dev/bob"


@pytest.fixture
async def kube(kube_api: KubeApi, kube_crds: list[str]) -> AsyncIterator[Kube]:
    async with Kube.from_kubeconfig(kube_api.kubeconfig) as client:
        yield client


@pytest.fixture
def splits(kube: Kube, unique_name: str) -> Objects:
    return kube.objects(QueueSplit.RESOURCE, unique_name)


@pytest.fixture
async def sqs(sqs_endpoint: ServerEndpoint) -> AsyncIterator[SqsClient]:
    async with client_for(sqs_endpoint) as client:
        yield client


def route(session: str, sequence: int, destination: str) -> dict[str, Any]:
    user = session.rpartition("/")[2]
    return {
        "session": session,
        "sequence": sequence,
        "destination": destination,
        "messageFilter": {"user": f"^{user}$"},
    }


def split_body(original: str, fallback: str, *routes: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "pymirror.dev/v1alpha1",
        "kind": "QueueSplit",
        "metadata": {"name": NAME},
        "spec": {
            "kind": "SQS",
            "original": original,
            "fallback": fallback,
            "target": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "shop",
                "namespace": "shop",
            },
            "routes": list(routes),
        },
    }


def messages(user: str, count: int) -> list[Outgoing]:
    return [Outgoing(f"{user}{n:03d}", {"user": attribute(user)}) for n in range(count)]


def status_of(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("status") or {}


async def wait_status(
    splits: Objects, what: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The first status (current, then watched) for which ``check`` holds."""
    obj = await splits.get(NAME)
    if check(status_of(obj)):
        return status_of(obj)
    version = obj["metadata"]["resourceVersion"]
    try:
        async with (
            asyncio.timeout(HANG),
            splits.watch(resource_version=version, field_selector=f"metadata.name={NAME}") as w,
        ):
            async for event in w:
                if check(status_of(event.object)):
                    return status_of(event.object)
    except TimeoutError:
        raise AssertionError(
            f"the status never showed {what}: {status_of(await splits.get(NAME))}"
        ) from None
    raise AssertionError(f"the watch ended before the status showed {what}")


def ended(*refs: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: set(refs) <= set(status.get("endedSessions") or [])


@contextlib.asynccontextmanager
async def serving(
    sqs_endpoint: ServerEndpoint,
    kube_api: KubeApi,
    namespace: str,
    original: str,
    fallback: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[asyncio.Task[dict[str, object]]]:
    """``serve`` of a worker following ``namespace/orders`` in this loop; stopped by
    SIGTERM (its own handler) on exit if still running."""
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(key, value)
    process = SqsProcess(
        queue=original,
        fallback_queue=fallback,
        split=f"{namespace}/{NAME}",
        kubeconfig=str(kube_api.kubeconfig),
        report_interval=0.2,
    )
    # One long poll at a time: moto's ReceiveMessage is not locked, so two concurrent polls
    # of one queue can both take the same visible message (seen in CI: read 35 of 25). The
    # exact counters below are about the status report, not about receive concurrency.
    settings = worker_settings(
        endpoint_url=sqs_endpoint.url, region=sqs_endpoint.region, receivers=1
    )
    task = asyncio.create_task(serve(process, settings))
    try:
        yield task
    finally:
        if not task.done():
            signal.raise_signal(signal.SIGTERM)  # run_worker's handler: a graceful stop
        async with asyncio.timeout(HANG):
            await task


async def test_a_removed_route_ends_its_session_and_the_ref_is_reported_with_the_counters(
    sqs: SqsClient,
    splits: Objects,
    unique_name: str,
    sqs_endpoint: ServerEndpoint,
    kube_api: KubeApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1. alice and bob each have a route; 12 of alice's, 5 of bob's and 8 of nobody's
       messages are sent: the counters in the status say so (read, per session, fallback);
    2. alice's route is removed: her 12 leftovers (nobody read her queue) are routed to
       the fallback, her queue is deleted, and only then does ``dev/alice`` appear in
       ``endedSessions``; ``activeSessions`` is 1."""
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, ALICE)
    bob_q = await temporary(sqs, original, BOB)
    alice, bob = route(ALICE, 1, alice_q), route(BOB, 2, bob_q)
    await splits.create(split_body(original, fallback, alice, bob))
    sent = {
        "alice": messages("alice", 12),
        "bob": messages("bob", 5),
        "carol": messages("carol", 8),
    }
    async with serving(sqs_endpoint, kube_api, unique_name, original, fallback, monkeypatch):
        await wait_status(splits, "the routes applied", lambda s: s.get("activeSessions") == 2)
        for batch in sent.values():
            await send(sqs, original, batch)
        counters = {
            "read": 25,
            "unmatched": 8,
            "fallback": 8,
            "failed": 0,
            "forwarded": {ALICE: 12, BOB: 5},
        }
        status = await wait_status(
            splits, f"counters {counters}", lambda s: s.get("counters") == counters
        )
        assert ALICE not in (status.get("endedSessions") or [])
        await splits.merge_patch(NAME, {"spec": {"routes": [bob]}})
        status = await wait_status(splits, "alice's end", ended(ALICE))
        assert await gone(sqs, alice_q), "reported ended while her queue still exists"
        assert status["activeSessions"] == 1
        assert BOB not in status["endedSessions"]
        got = await drain(sqs, {FALLBACK: fallback, "bob": bob_q}, expect=25)
        final = await wait_status(
            splits, "the leftovers counted", lambda s: s["counters"]["fallback"] == 20
        )
        assert final["counters"]["forwarded"] == {ALICE: 12, BOB: 5}
    copies = Counter(mid_of(m) for m in got[FALLBACK])
    assert copies == Counter({m.mid: 1 for m in sent["alice"] + sent["carol"]})
    assert sorted(mid_of(m) for m in got["bob"]) == [m.mid for m in sent["bob"]]


# --- the process form: restarts and the exit -------------------------------------------


def worker_process(
    server: ServerEndpoint,
    kube_api: KubeApi,
    namespace: str,
    original: str,
    fallback: str,
    log: Path,
    *extra: str,
) -> subprocess.Popen[bytes]:
    """``pymirror worker sqs --split`` as a child process, output appended to ``log``."""
    command = [
        sys.executable,
        "-m",
        "pymirror",
        "worker",
        "sqs",
        "--queue",
        original,
        "--fallback-queue",
        fallback,
        "--split",
        f"{namespace}/{NAME}",
        "--kubeconfig",
        str(kube_api.kubeconfig),
        "--endpoint-url",
        server.url,
        "--region",
        server.region,
        "--wait-seconds",
        "1",
        *extra,
    ]
    env = process_env(server, PYMIRROR_SQS__DRAIN_POLL="0.2", PYMIRROR_SQS__SHUTDOWN_GRACE="5")
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)


@pytest.fixture
def children() -> Any:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait(30)


def tail(log: Path) -> str:
    """The end of a worker's output, for a failure message."""
    return tail(log)


async def exited(child: subprocess.Popen[bytes]) -> int:
    """The exit status of ``child`` once it exits by itself."""
    return await asyncio.to_thread(child.wait, HANG)


async def test_an_end_interrupted_by_a_crash_is_reported_by_the_next_worker(
    sqs: SqsClient,
    splits: Objects,
    unique_name: str,
    sqs_endpoint: ServerEndpoint,
    kube_api: KubeApi,
    tmp_path: Path,
    children: list[subprocess.Popen[bytes]],
) -> None:
    """1. alice's consumer holds 5 of her 15 messages (900 s visibility) when her route is
       removed: the worker routes the 10 visible ones again and waits for the held ones;
    2. the worker is killed (SIGKILL) in that wait: ``dev/alice`` is not reported;
    3. a new worker starts (alice is in no route), finds her queue by its tags and
       resumes the end; her consumer gives the 5 back: they are routed, her queue is
       deleted, and the new worker reports ``dev/alice`` in ``endedSessions``."""
    log = tmp_path / "worker.log"
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, ALICE)
    bob_q = await temporary(sqs, original, BOB)
    bob = route(BOB, 2, bob_q)
    await splits.create(split_body(original, fallback, route(ALICE, 1, alice_q), bob))
    spawn = (sqs_endpoint, kube_api, unique_name, original, fallback, log)
    children.append(first := worker_process(*spawn))
    await wait_status(splits, "the routes applied", lambda s: s.get("activeSessions") == 2)
    sent = messages("alice", 15)
    await send(sqs, original, sent)
    # Forwarded and deleted from the original: a partly-full delete batch may wait up to
    # ``delete_linger``, and a kill before it goes would deliver those messages again.
    await wait_for("the original to empty", lambda: empty(sqs, original), within=HANG)
    held: list[Any] = []
    async with asyncio.timeout(HANG):
        while len(held) < 5:
            held += await sqs.receive(
                alice_q, max_messages=5 - len(held), wait_seconds=1, visibility_timeout=900
            )
    await splits.merge_patch(NAME, {"spec": {"routes": [bob]}})

    async def in_the_wait() -> bool:  # the 10 visible ones moved; 5 in flight remain
        return await sqs.counts(alice_q) == (0, 5, 0) and sum(await sqs.counts(fallback)) >= 10

    await wait_for("the end to wait for the held messages", in_the_wait, within=HANG)
    first.kill()
    assert await exited(first) == -signal.SIGKILL
    assert ALICE not in (status_of(await splits.get(NAME)).get("endedSessions") or [])
    assert not await gone(sqs, alice_q)
    children.append(second := worker_process(*spawn))
    await wait_status(splits, "the restarted worker", lambda s: s.get("activeSessions") == 1)
    handles = [(str(i), m["ReceiptHandle"]) for i, m in enumerate(held)]
    assert not (await sqs.change_visibility_batch(alice_q, handles, 0)).failed
    await wait_status(splits, "alice's resumed end", ended(ALICE))
    assert await gone(sqs, alice_q)
    got = await drain(sqs, {FALLBACK: fallback}, expect=15)
    assert Counter(mid_of(m) for m in got[FALLBACK]) == Counter({m.mid: 1 for m in sent})
    second.send_signal(signal.SIGTERM)
    assert await exited(second) == 0, tail(log)


async def test_hand_back_reports_its_phases_in_order_then_done_and_the_worker_exits_0(
    sqs: SqsClient,
    splits: Objects,
    unique_name: str,
    sqs_endpoint: ServerEndpoint,
    kube_api: KubeApi,
    tmp_path: Path,
    children: list[subprocess.Popen[bytes]],
) -> None:
    """1. alice's session runs; 6 messages wait in the fallback, nobody reads it;
    2. the operator's hand-back: alice's route goes and ``spec.handBack`` is set;
    3. the status shows ``Draining`` (remaining 6, the drain timeout runs), then
       ``Returning``, then ``Done`` (remaining 0), in that order; alice's end is reported;
    4. the fallback is deleted, its 6 are back in the original, and the process exits 0."""
    log = tmp_path / "worker.log"
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    alice_q = await temporary(sqs, original, ALICE)
    await splits.create(split_body(original, fallback, route(ALICE, 1, alice_q)))
    waiting = messages("carol", 6)
    await send(sqs, fallback, waiting)
    child = worker_process(
        sqs_endpoint, kube_api, unique_name, original, fallback, log, "--drain-timeout", "2"
    )
    children.append(child)
    await wait_status(splits, "the route applied", lambda s: s.get("activeSessions") == 1)
    phases: list[tuple[Any, Any]] = []
    obj = await splits.get(NAME)
    version = obj["metadata"]["resourceVersion"]
    await splits.merge_patch(NAME, {"spec": {"routes": [], "handBack": True}})
    async with (
        asyncio.timeout(HANG),
        splits.watch(resource_version=version, field_selector=f"metadata.name={NAME}") as w,
    ):
        async for event in w:
            hand_back = status_of(event.object).get("handBack") or {}
            phase = (hand_back.get("phase"), hand_back.get("remaining"))
            if phase[0] is not None and (not phases or phases[-1][0] != phase[0]):
                phases.append(phase)
            if phase[0] == "Done":
                break
    assert [p for p, _ in phases] == ["Draining", "Returning", "Done"], phases
    assert phases[0][1] == 6
    assert phases[-1][1] == 0
    assert await exited(child) == 0, tail(log)
    status = status_of(await splits.get(NAME))
    assert status["handBack"]["phase"] == "Done"
    assert ALICE in status["endedSessions"]
    assert status["activeSessions"] == 0
    assert await gone(sqs, fallback)
    got = await drain(sqs, {"original": original}, expect=6)
    assert sorted(mid_of(m) for m in got["original"]) == [m.mid for m in waiting]


async def test_a_restart_after_the_hand_back_finished_reports_done_and_exits_0(
    sqs: SqsClient,
    splits: Objects,
    unique_name: str,
    sqs_endpoint: ServerEndpoint,
    kube_api: KubeApi,
    tmp_path: Path,
) -> None:
    """``spec.handBack`` with the fallback already deleted (the worker was restarted
    after its hand-back): the worker splits nothing, reports Done and exits 0."""
    log = tmp_path / "worker.log"
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    body = split_body(original, fallback)
    body["spec"]["handBack"] = True
    await splits.create(body)
    await sqs.delete_queue(fallback)
    await send(sqs, original, messages("alice", 1))
    child = worker_process(sqs_endpoint, kube_api, unique_name, original, fallback, log)
    assert await exited(child) == 0, tail(log)
    status = status_of(await splits.get(NAME))
    assert status["handBack"] == {"phase": "Done", "remaining": 0}
    assert await sqs.counts(original) == (1, 0, 0)  # nothing was received


async def test_a_worker_started_on_a_hand_back_resumes_it_and_exits_0(
    sqs: SqsClient,
    splits: Objects,
    unique_name: str,
    sqs_endpoint: ServerEndpoint,
    kube_api: KubeApi,
    tmp_path: Path,
) -> None:
    """A worker stopped mid-hand-back is restarted: ``spec.handBack`` is set, no routes,
    the fallback still holds 3 messages. The new worker hands back at once (drain
    timeout 0): the 3 go back to the original, the fallback is deleted, ``Done``, exit 0."""
    log = tmp_path / "worker.log"
    original = await make_queue(sqs, unique_name)
    fallback = await temporary(sqs, original)
    body = split_body(original, fallback)
    body["spec"]["handBack"] = True
    await splits.create(body)
    waiting = messages("carol", 3)
    await send(sqs, fallback, waiting)
    child = worker_process(
        sqs_endpoint, kube_api, unique_name, original, fallback, log, "--drain-timeout", "0"
    )
    assert await exited(child) == 0, tail(log)
    status = status_of(await splits.get(NAME))
    assert status["handBack"] == {"phase": "Done", "remaining": 0}
    assert await gone(sqs, fallback)
    got = await drain(sqs, {"original": original}, expect=3)
    assert sorted(mid_of(m) for m in got["original"]) == [m.mid for m in waiting]
