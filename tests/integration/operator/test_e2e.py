"""mirrord's end-to-end bar for queue splitting, through the operator (SQS on moto).

As mirrord's ``two_users`` test: the deployed app (echo_app.py, mirrord's
``sqs-forwarder``: it reads its queues from its env and forwards every message to an
echo queue) has a standard queue given by name (``SQS_TEST_Q_NAME1``) and a FIFO queue
given by URL (``SQS_TEST_Q2_URL``), both with mixed-case names; two sessions, clients
``a`` and ``b``, split both. The messages carry mixed-case attribute names (``cliENT``,
``CLIent``) and values (``A`` matches ``^a$``: names and values match case-insensitively).
Asserted: each session's temporary queues get exactly its messages, FIFO order kept;
the fallback (read by the app) exactly the rest, in FIFO order; the exact temporary-
queue count while each session runs; the workers' counters and the operator's metrics
with exact values; after both clients stop renewing their leases (a client killed with
SIGKILL), both sessions end Expired, every temporary queue is deleted and the app's
template is exactly what it was.

Nothing waits a fixed time: the messages are read once the workers' counters (in the
QueueSplit status) say every message was routed, and "no late extra" is one more empty
long poll on a queue nothing is routed to any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pymirror.client.session import now_rfc3339
from pymirror.sandbox.workloads import STAND_IN_KINDS
from registry.env_patch import ORIGINAL_ENV_ANNOTATION
from registry.errors import ConflictError, UnavailableError
from registry.objects import Obj, Objects
from splitter.sqs.client import Message, SqsClient
from tests.integration.operator.support import (
    APP,
    DEPLOYMENTS,
    HANG,
    REGISTRIES,
    STATEFUL_SETS,
    Cluster,
    app_body,
    bounded,
    gone,
    registry_body,
    session_body,
    settled,
    sqs_in,
    wait_empty,
    watch_session,
)
from tests.integration.sqs.support import Outgoing, attribute, make_queue, receive_some
from tests.servers.process import REPO
from tests.servers.sqs import SqsEndpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ECHO_APP = Path(__file__).with_name("echo_app.py")
Q1_VAR, Q2_VAR = "SQS_TEST_Q_NAME1", "SQS_TEST_Q2_URL"
IDS = ("e2e-test-queue1", "e2e-test-queue2")
#: What mirrord's test sends: (value of the filtered attribute, body), in order.
TO_Q1 = [("a", "1"), ("b", "2"), ("c", "3"), ("C", "4"), ("B", "5"), ("A", "6")]
TO_Q2 = [("A", "10"), ("B", "20"), ("C", "30"), ("c", "40"), ("b", "50"), ("a", "60")]
#: The clients' lease: long enough for a busy machine between two renewals.
LEASE = 20


@dataclass
class World(Cluster):
    metrics: CollectorRegistry
    #: queue 1's name, queue 2's URL (what the app's env holds)
    q1: str
    q2: str
    echo1: str
    echo2: str


def e2e_registry(*, ids: tuple[str, ...] = IDS, workload_type: str = "Deployment") -> Obj:
    """mirrord's e2e registry: queue 1 in ``SQS_TEST_Q_NAME1``, queue 2 in ``SQS_TEST_Q2_URL``
    (``ids``: only those of the two)."""
    queues = {IDS[0]: sqs_in(Q1_VAR), IDS[1]: sqs_in(Q2_VAR)}
    return registry_body(
        "mirrord-e2e-test-queue-registry",
        {i: queues[i] for i in ids},
        workload_type=workload_type,
    )


def echo_app_env(moto: SqsEndpoint, pairs: dict[str, str]) -> list[dict[str, str]]:
    """The echo app's own env: what it forwards where, and how it reaches moto."""
    return [
        {"name": "ECHO_PAIRS", "value": json.dumps(pairs)},
        {"name": "PYMIRROR_SQS__ENDPOINT_URL", "value": str(moto.url)},
        {"name": "PYMIRROR_SQS__REGION", "value": moto.region},
        {"name": "PYTHONPATH", "value": str(REPO)},
    ]


#: Where each target kind is served in the test API server (the sandbox's stand-ins).
WORKLOADS = {
    "Deployment": DEPLOYMENTS,
    "StatefulSet": STATEFUL_SETS,
    "Rollout": STAND_IN_KINDS.rollout,
}
ROLLOUTS = WORKLOADS["Rollout"]


def echo_app_body(
    c: Cluster,
    queues: dict[str, str],
    echoes: dict[str, str],
    *,
    kind: str = "Deployment",
    name: str = APP,
) -> Obj:
    """The echo app (a ``kind``) with each env var of ``queues`` holding its queue, each
    forwarded to the queue ``echoes`` gives it."""
    env = [{"name": var, "value": queue} for var, queue in queues.items()]
    command = [sys.executable, str(ECHO_APP)]
    body = app_body(
        [*env, *echo_app_env(c.moto, echoes)], name=name, kind=kind, image="local", command=command
    )
    body["apiVersion"] = WORKLOADS[kind].api_version
    return body


async def echo_app(
    c: Cluster, queues: dict[str, str], echoes: dict[str, str], *, kind: str = "Deployment"
) -> Obj:
    """The echo app created as a ``kind``; the object as created."""
    body = echo_app_body(c, queues, echoes, kind=kind)
    return await c.kube.objects(WORKLOADS[kind], c.namespace).create(body)


@pytest.fixture
async def world(cluster: Cluster, unique_name: str) -> AsyncIterator[World]:
    sqs, token = cluster.sqs, unique_name[-8:]
    q1 = await make_queue(sqs, f"E2ETest-{token}-One", MessageRetentionPeriod="3600")
    q2 = await make_queue(sqs, f"E2ETest-{token}-Two.fifo", MessageRetentionPeriod="3600")
    echo1 = await make_queue(sqs, f"EchoE2ETest-{token}-One")
    echo2 = await make_queue(sqs, f"EchoE2ETest-{token}-Two.fifo")
    queues = {Q1_VAR: q1.rpartition("/")[2], Q2_VAR: q2}
    await echo_app(cluster, queues, {Q1_VAR: echo1, Q2_VAR: echo2})
    await cluster.kube.objects(REGISTRIES, cluster.namespace).create(e2e_registry())
    metrics = CollectorRegistry()
    async with cluster.operating(registry=metrics):
        yield cluster.extended(
            World, metrics=metrics, q1=queues[Q1_VAR], q2=q2, echo1=echo1, echo2=echo2
        )


def client_session(client: str) -> Obj:
    """Client ``client``'s session: both queues, ``client`` must be ``^<client>$``."""
    body = session_body(
        f"client-{client}", IDS[0], lease=LEASE, message_filter={"client": f"^{client}$"}
    )
    body["spec"]["queues"].append({**body["spec"]["queues"][0], "id": IDS[1]})
    return body


@contextlib.asynccontextmanager
async def renewing(sessions: Objects, name: str) -> AsyncIterator[None]:
    """The client's lease renewal (every second) for as long as the block runs; leaving
    the block is the client killed: nothing renews any more, nothing is deleted."""

    async def renew() -> None:
        while True:
            with contextlib.suppress(UnavailableError, ConflictError):  # retried next round
                await sessions.merge_patch(name, {"spec": {"renewTime": now_rfc3339()}})
            await asyncio.sleep(1.0)

    task = asyncio.create_task(renew())
    try:
        yield
    finally:
        if task.done():  # the renewal died: say why (the session expired early)
            task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def temporary_queue_count(w: World) -> int:
    """mirrord's ``count_temp_queues``: queues named ``mirrord-...`` after an original."""
    originals = (w.q1, w.q2.rpartition("/")[2])
    urls = await w.sqs.list_queues("mirrord-")
    return sum(1 for u in urls if any(u.endswith(o) for o in originals))


def temporary_of(session: Obj, queue_id: str) -> str:
    (queue,) = [q for q in session["status"]["queues"] if q["id"] == queue_id]
    return str(queue["temporary"])


async def split_counters(w: World, check: Callable[[dict[str, Any]], bool]) -> list[Obj]:
    """Both QueueSplits' counters once ``check`` holds for each (watched)."""
    listed = await w.splits.list()
    current = {o["metadata"]["name"]: o for o in listed.items}

    def done() -> bool:
        return len(current) == 2 and all(
            check((o.get("status") or {}).get("counters") or {}) for o in current.values()
        )

    if done():
        return list(current.values())
    try:
        async with asyncio.timeout(HANG):
            async with w.splits.watch(resource_version=listed.resource_version) as events:
                async for event in events:
                    if event.type != "DELETED":
                        current[event.name] = event.object
                    if done():
                        return list(current.values())
    except TimeoutError:
        pass
    counters = {n: (o.get("status") or {}).get("counters") for n, o in current.items()}
    raise AssertionError(f"the QueueSplits' counters stayed {counters}")


async def read_exactly(sqs: SqsClient, url: str, count: int) -> list[str]:
    """The bodies of the first ``count`` messages of ``url`` in the order received,
    then one more long poll that must find nothing (no late extra)."""
    got: list[Message] = []
    async with asyncio.timeout(HANG):
        while len(got) < count:
            got += await receive_some(sqs, url)
    extra = await receive_some(sqs, url, wait=2)
    assert extra == [], f"{url}: late extras {[m['Body'] for m in extra]}"
    return [m["Body"] for m in got]


async def metric(w: World, name: str, labels: dict[str, str], value: float) -> None:
    """Until the operator's metric ``name{labels}`` is ``value`` (the phase gauge is
    refreshed every lease check, about once a second)."""
    async with asyncio.timeout(HANG):
        while w.metrics.get_sample_value(name, labels) != value:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def test_two_clients_split_a_standard_and_a_fifo_queue_like_mirrords_e2e(
    world: World,
) -> None:
    w = world
    before = await w.deployments.get(APP)
    assert await temporary_queue_count(w) == 0
    q2_url = w.q2
    q1_url = await w.sqs.queue_url(w.q1)

    await w.sessions.create(client_session("a"))
    async with renewing(w.sessions, "client-a"):
        a = await settled(w.sessions, "client-a")
        assert a["status"]["phase"] == "Ready", a["status"]
        # per original: the fallback and a's queue
        assert await temporary_queue_count(w) == 4
        await w.sessions.create(client_session("b"))
        async with renewing(w.sessions, "client-b"):
            b = await settled(w.sessions, "client-b")
            assert b["status"]["phase"] == "Ready", b["status"]
            # mirrord's count: one fallback for the app and one queue per client, per original
            assert await temporary_queue_count(w) == 6
            assert len((await w.splits.list()).items) == 2
            assert len((await w.workers.list()).items) == 2

            await w.sqs.send_batch(
                q1_url,
                [
                    Outgoing(body, {"cliENT": attribute(value)}, body=body).entry(str(i))
                    for i, (value, body) in enumerate(TO_Q1)
                ],
            )
            for value, body in TO_Q2:  # one at a time: the FIFO order is the send order
                message = Outgoing(body, {"CLIent": attribute(value)}, body=body, group="e2e-tests")
                await w.sqs.send_batch(q2_url, [message.entry("0")])

            # every message routed, as the workers report it
            refs = {f"{w.namespace}/client-a", f"{w.namespace}/client-b"}
            splits = await split_counters(
                w,
                lambda c: (
                    c.get("read") == 6
                    and c.get("fallback") == 2
                    and set(c.get("forwarded") or {}) == refs
                    and sum((c.get("forwarded") or {}).values()) == 4
                ),
            )
            for split in splits:
                counters = split["status"]["counters"]
                assert counters["read"] == 6
                # mirrord's unmatched count: with steal sessions, what went to the fallback
                assert counters["fallback"] == 2
                assert counters["unmatched"] == 2
                assert counters["failed"] == 0
                assert counters["forwarded"] == dict.fromkeys(sorted(refs), 2)

            a_q1 = await w.sqs.queue_url(temporary_of(a, IDS[0]))
            a_q2 = await w.sqs.queue_url(temporary_of(a, IDS[1]))
            b_q1 = await w.sqs.queue_url(temporary_of(b, IDS[0]))
            b_q2 = await w.sqs.queue_url(temporary_of(b, IDS[1]))
            assert sorted(await read_exactly(w.sqs, a_q1, 2)) == ["1", "6"]
            assert await read_exactly(w.sqs, a_q2, 2) == ["10", "60"]
            assert sorted(await read_exactly(w.sqs, b_q1, 2)) == ["2", "5"]
            assert await read_exactly(w.sqs, b_q2, 2) == ["20", "50"]
            # the app read the fallbacks and echoed what matched no client
            assert sorted(await read_exactly(w.sqs, w.echo1, 2)) == ["3", "4"]
            assert await read_exactly(w.sqs, w.echo2, 2) == ["30", "40"]

            await metric(w, "pymirror_operator_sessions", {"phase": "Ready"}, 2.0)
            for reason in ("Invalid", "ProvisioningFailed"):
                failures = "pymirror_operator_provisioning_failures_total"
                assert w.metrics.get_sample_value(failures, {"reason": reason}) == 0.0
            assert await temporary_queue_count(w) == 6
        # client b killed: only its lease lapses
        seen: list[dict[str, Any]] = []
        assert await watch_session(w.sessions, "client-b", gone, seen) is None
        assert any(s.get("endReason") == "Expired" for s in seen), seen
        assert await temporary_queue_count(w) == 4
    # client a killed too: the last session ends, the app is handed back
    seen.clear()
    assert await watch_session(w.sessions, "client-a", gone, seen) is None
    assert any(s.get("endReason") == "Expired" for s in seen), seen
    await bounded(wait_empty(w.splits))
    await bounded(wait_empty(w.workers))
    assert await temporary_queue_count(w) == 0
    app = await w.deployments.get(APP)
    assert app["spec"]["template"] == before["spec"]["template"]
    assert ORIGINAL_ENV_ANNOTATION not in (app["metadata"].get("annotations") or {})
    await metric(w, "pymirror_operator_sessions", {"phase": "Ready"}, 0.0)


@dataclass
class Target:
    """A target workload of one shape: its kind, and the object holding its pod template
    (the one patched: itself, or the Deployment a Rollout's ``workloadRef`` names)."""

    kind: str
    template_owner: Objects
    template_owner_name: str


async def echo_target(
    c: Cluster, shape: str, queues: dict[str, str], echoes: dict[str, str]
) -> tuple[Target, Obj]:
    """The echo app as ``shape``; the target and its template owner as created."""
    if shape != "Rollout with workloadRef":
        created = await echo_app(c, queues, echoes, kind=shape)
        return Target(shape, c.kube.objects(WORKLOADS[shape], c.namespace), APP), created
    owner = f"{APP}-template"
    deployments = c.kube.objects(DEPLOYMENTS, c.namespace)
    template = echo_app_body(c, queues, echoes, name=owner)
    template["spec"]["replicas"] = 0  # the Rollout runs the pods, as with Argo Rollouts
    created = await deployments.create(template)
    rollout = {
        "apiVersion": ROLLOUTS.api_version,
        "kind": "Rollout",
        "metadata": {"name": APP},
        "spec": {
            "replicas": 1,
            "selector": template["spec"]["selector"],
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner},
        },
    }
    await c.kube.objects(ROLLOUTS, c.namespace).create(rollout)
    return Target("Rollout", deployments, owner), created


@pytest.mark.parametrize("shape", ["StatefulSet", "Rollout", "Rollout with workloadRef"])
async def test_each_target_shape_is_patched_read_from_the_fallback_and_restored_exactly(
    cluster: Cluster, unique_name: str, shape: str
) -> None:
    """A StatefulSet, a Rollout with its own template and a Rollout whose ``workloadRef``
    names a Deployment, as the target: the template owner's env is patched to the
    fallback (nothing else changed), the session is Ready once it rolled out, its process
    (the echo app, run by the local runtime as the Rollout's pod) reads the fallback, and
    the end restores the template exactly."""
    c, sqs, sessions = cluster, cluster.sqs, cluster.sessions
    token = unique_name[-8:]
    original = await make_queue(sqs, f"E2ETest-{token}-Set")
    echo = await make_queue(sqs, f"EchoE2ETest-{token}-Set")
    target, before = await echo_target(c, shape, {Q1_VAR: original}, {Q1_VAR: echo})
    registry = e2e_registry(ids=IDS[:1], workload_type=target.kind)
    await c.kube.objects(REGISTRIES, c.namespace).create(registry)
    async with c.operating():
        body = session_body(
            "alice", IDS[0], workload_kind=target.kind, message_filter={"client": "^a$"}
        )
        body["spec"]["target"]["apiVersion"] = WORKLOADS[target.kind].api_version
        await sessions.create(body)
        obj = await settled(sessions, "alice")
        assert obj["status"]["phase"] == "Ready", obj["status"]
        (queue,) = obj["status"]["queues"]
        patched = await target.template_owner.get(target.template_owner_name)
        [fallback] = [
            e["value"]
            for e in patched["spec"]["template"]["spec"]["containers"][0]["env"]
            if e["name"] == Q1_VAR
        ]
        assert fallback != original  # the fallback's URL, as the original was given
        assert fallback.startswith(original.rpartition("/")[0] + "/mirrord-tmp-")
        expected = copy.deepcopy(before["spec"]["template"])
        expected["spec"]["containers"][0]["env"][0]["value"] = fallback
        assert patched["spec"]["template"] == expected  # only that env var changed
        assert ORIGINAL_ENV_ANNOTATION in patched["metadata"]["annotations"]

        messages = [
            Outgoing(body, {"Client": attribute(value)}, body=body).entry(body)
            for value, body in (("a", "1"), ("z", "2"))
        ]
        await sqs.send_batch(original, messages)
        assert await read_exactly(sqs, await sqs.queue_url(queue["temporary"]), 1) == ["1"]
        assert await read_exactly(sqs, echo, 1) == ["2"]  # the target's pod read the fallback

        await sessions.delete("alice")
        assert await watch_session(sessions, "alice", gone) is None
        await bounded(wait_empty(c.splits))
    after = await target.template_owner.get(target.template_owner_name)
    assert after["spec"]["template"] == before["spec"]["template"]
    assert ORIGINAL_ENV_ANNOTATION not in (after["metadata"].get("annotations") or {})
    urls = await sqs.list_queues("mirrord-")
    assert [u for u in urls if u.endswith(original.rpartition("/")[2])] == []
