"""pymirror.operator.splits on the real test API server and moto: join, leave, hand-back.

The worker's part is played by the test: where the split worker would write
``QueueSplit.status`` (``appliedGeneration``, ``endedSessions``, ``handBack``) and delete
a session's queue or the fallback, the test does exactly that (the real worker
Deployment runs in the operator's and the worker deployments' own tests). The Deployment
controller's part is played by the test too: the stand-in Deployment kind has no
controller, so a rollout finishes when the test writes the workload's status. The worker
Deployment that ``Splits`` creates is a real object of the stand-in kind; nothing runs it.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from pymirror.operator.planning import PlannedQueue, SessionPlan, split_name
from pymirror.operator.splits import PATCHED, Joined, Splits
from pymirror.operator.worker_deployments import WORKER_LABEL, worker_name
from pymirror.settings import Settings
from registry.env_patch import ORIGINAL_ENV_ANNOTATION, restore_env
from registry.errors import NotFoundError, RolloutTimeoutError
from registry.objects import Kube, Obj
from registry.session_models import QueueSplit
from registry.workloads import WorkloadKinds, get_workload
from splitter.errors import SqsQueueMissingError
from splitter.naming import NameFormat
from splitter.sqs.client import SqsClient
from splitter.sqs.queue_names import queue_name
from splitter.sqs.queues import find_temporary_queues
from splitter.sqs.settings import SqsSettings
from splitter.sqs.tags import TAG_ORIGINAL, TAG_ROUTED
from tests.fixtures.kube import STAND_INS
from tests.integration.operator import support
from tests.integration.operator.support import InNamespaces, splits_settings
from tests.integration.sqs.support import client_for, make_queue
from tests.servers.kube import KubeApi
from tests.servers.sqs import SqsEndpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KINDS = WorkloadKinds.from_mapping(STAND_INS)
DEPLOYMENT_API = KINDS.deployment.api_version
VAR = "QUEUE"


@dataclass
class World(InNamespaces):
    kube: Kube
    sqs: SqsClient
    splits: Splits
    settings: Settings
    namespace: str
    operator_namespace: str
    original: str
    original_url: str
    env: list[dict[str, Any]]

    @property
    def name_format(self) -> NameFormat:
        return self.settings.sqs.name_format


def settings_for(endpoint: SqsEndpoint, operator_namespace: str) -> Settings:
    operator = splits_settings(operator_namespace)
    sqs = SqsSettings(endpoint_url=endpoint.url, region=endpoint.region)
    return Settings(sqs=sqs, operator=operator)


def app_body(value: str, name: str = "app", var: str = VAR) -> Obj:
    return support.app_body(
        [{"name": "BEFORE", "value": "1"}, {"name": var, "value": value}], name=name
    )


@pytest.fixture(params=["url", "name"])
async def world(
    request: pytest.FixtureRequest,
    kube_api: KubeApi,
    kube_crds: list[str],
    moto_endpoint: SqsEndpoint,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[World]:
    """A namespace with Deployment ``app`` whose env var QUEUE holds the original queue
    (its URL or its name: the fixture's parameter), and an operator namespace."""
    for var, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")):
        monkeypatch.setenv(var, value)
    settings = settings_for(moto_endpoint, f"{unique_name}-ops")
    original = f"orders-{unique_name}"
    async with Kube.from_kubeconfig(kube_api.kubeconfig) as kube, client_for(moto_endpoint) as sqs:
        url = await make_queue(sqs, original)
        value = url if request.param == "url" else original
        body = app_body(value)
        await kube.objects(KINDS.deployment, unique_name).create(body)
        env = body["spec"]["template"]["spec"]["containers"][0]["env"]
        yield World(
            kube,
            sqs,
            Splits(kube, settings),
            settings,
            unique_name,
            settings.operator.namespace,
            original,
            url,
            copy.deepcopy(env),
        )


async def plan_for(w: World, session: str, *, original: str | None = None) -> SessionPlan:
    workload = await get_workload(w.kube, KINDS, w.namespace, "Deployment", "app")
    value = original or next(e["value"] for e in w.env if e["name"] == VAR)
    queue = PlannedQueue(
        id="orders",
        kind="SQS",
        split=split_name(workload.ref, "orders"),
        original=value,
        env_var=VAR,
        container="main",
        message_filter={"author": f"^{session}$"},
        jq_filter=None,
        mode="steal",
        group_id=None,
        group_id_env_var=None,
        client_config=None,
    )
    return SessionPlan(w.namespace, session, workload, [queue], KINDS)


# --- playing the Deployment controller and the worker -----------------------------------------


async def roll_out(w: World) -> bool:
    """The Deployment controller's status write for each workload not rolled out."""
    return await support.roll_out(w.deployments)


async def acknowledge(w: World, split: str, behind: int = 0) -> None:
    """The worker uses the routes: tags their queues as routed to (as the worker does before
    routing to them), then writes ``appliedGeneration`` (``behind`` generations short)."""
    obj = await w.queue_splits.get(split)
    for route in obj["spec"].get("routes") or ():
        await w.sqs.tag_queue(route["destination"], {TAG_ROUTED: "true"})
    await w.queue_splits.patch_status(
        split, {"appliedGeneration": obj["metadata"]["generation"] - behind}
    )


async def end_session(w: World, split: str, session: str) -> None:
    """The worker ends a session: moves the leftovers, deletes its queue, reports it."""
    obj = await w.queue_splits.get(split)
    record = next(r for r in obj["status"]["temporaryResources"] if r.get("session") == session)
    await w.sqs.tag_queue(record["url"], {TAG_ROUTED: "true"})
    await w.sqs.delete_queue(record["url"])
    ended = sorted({*(obj["status"].get("endedSessions") or []), session})
    await w.queue_splits.patch_status(split, {"endedSessions": ended})


async def hand_back_done(w: World, split: str, *, delete_fallback: bool = True) -> str:
    """The worker finishes the hand-back: the fallback drained and deleted (unless the
    worker was killed before deleting it), phase Done. Returns the fallback's URL."""
    obj = await w.queue_splits.get(split)
    fallback = next(r for r in obj["status"]["temporaryResources"] if r["role"] == "fallback")
    if delete_fallback:
        await w.sqs.delete_queue(fallback["url"])
    await w.queue_splits.patch_status(split, {"handBack": {"phase": "Done", "remaining": 0}})
    return str(fallback["url"])


async def drive(w: World, plans: list[SessionPlan], sequences: list[int]) -> list[Joined]:
    """Join every plan at once until all are ready, playing the controller and the worker."""
    roll, ack = functools.partial(roll_out, w), functools.partial(acknowledge, w)
    return await support.drive(w.splits, plans, sequences, roll=roll, acknowledge=ack)


async def state(w: World, split: str) -> dict[str, Any]:
    """What a re-run must not change: the split's spec/records, the queues, the env."""
    obj = await w.queue_splits.get(split)
    app = await w.deployments.get("app")
    queues = await find_temporary_queues(w.sqs, w.original, w.name_format)
    workers = await w.workers.list(label_selector=f"{WORKER_LABEL}={split}")
    return {
        "routes": obj["spec"].get("routes"),
        "fallback": obj["spec"].get("fallback"),
        "records": obj["status"].get("temporaryResources"),
        "queues": sorted(q.name for q in queues),
        "env": app["spec"]["template"]["spec"]["containers"][0]["env"],
        "annotation": app["metadata"].get("annotations", {}).get(ORIGINAL_ENV_ANNOTATION),
        "workers": [o["metadata"]["name"] for o in workers.items],
    }


def env_value(app: Obj) -> str:
    env = app["spec"]["template"]["spec"]["containers"][0]["env"]
    return str(next(e["value"] for e in env if e["name"] == VAR))


# --- join ---------------------------------------------------------------------------------------


async def test_two_sessions_joining_at_once_share_one_fallback_patch_and_worker(
    world: World,
) -> None:
    w = world
    plans = [await plan_for(w, "alice"), await plan_for(w, "bob")]
    split = plans[0].queues[0].split
    joined = await drive(w, plans, [1, 2])

    obj = await w.queue_splits.get(split)
    records = obj["status"]["temporaryResources"]
    fallbacks = [r for r in records if r["role"] == "fallback"]
    sessions = {r["session"]: r for r in records if r["role"] == "session"}
    assert len(fallbacks) == 1
    assert fallbacks[0]["created"] is True
    assert set(sessions) == {f"{w.namespace}/alice", f"{w.namespace}/bob"}
    assert all(r["created"] for r in sessions.values())
    found = await find_temporary_queues(w.sqs, w.original, w.name_format)
    assert sorted(q.name for q in found) == sorted(r["name"] for r in records)
    assert [q.fallback for q in found].count(True) == 1
    assert obj["spec"]["fallback"] == fallbacks[0]["name"]
    assert obj["spec"]["original"] == w.env[1]["value"]
    routes = obj["spec"]["routes"]
    assert [(r["session"], r["sequence"]) for r in routes] == [
        (f"{w.namespace}/alice", 1),
        (f"{w.namespace}/bob", 2),
    ]
    assert [r["destination"] for r in routes] == [sessions[r["session"]]["url"] for r in routes]
    assert routes[0]["messageFilter"] == {"author": "^alice$"}
    # one env patch, to the fallback in the original's form, the original saved once
    app = await w.deployments.get("app")
    url_form = "://" in w.env[1]["value"]
    assert env_value(app) == (fallbacks[0]["url"] if url_form else fallbacks[0]["name"])
    saved = json.loads(app["metadata"]["annotations"][ORIGINAL_ENV_ANNOTATION])
    assert saved == {split: {"main": {VAR: {"value": w.env[1]["value"]}}}}
    # one worker Deployment, recorded
    workers = await w.workers.list(label_selector=f"{WORKER_LABEL}={split}")
    assert [o["metadata"]["name"] for o in workers.items] == [worker_name(split)]
    assert obj["status"]["workerDeployment"] == worker_name(split)
    # what the local processes get: their own queue, in the original's form
    for plan, result in zip(plans, joined, strict=True):
        record = sessions[plan.session_ref]
        assert result.temporary == record["name"]
        assert result.value == (record["url"] if url_form else record["name"])
    condition = next(c for c in obj["status"]["conditions"] if c["type"] == PATCHED)
    assert condition["status"] == "True"


async def test_ready_only_once_the_worker_applied_the_generation(world: World) -> None:
    w = world
    plan = await plan_for(w, "alice")
    queue = plan.queues[0]
    first = await w.splits.join(plan, queue, 1)
    assert not first.ready
    assert first.step == "waiting for the rollout of Deployment " + f"{w.namespace}/app"
    again = await w.splits.join(plan, queue, 1)  # no rollout yet: still waiting, no new patch
    assert again.step == first.step
    await roll_out(w)
    waiting = await w.splits.join(plan, queue, 1)
    assert not waiting.ready
    assert waiting.step == f"waiting for the worker of {queue.split}"
    await acknowledge(w, queue.split, behind=1)  # an older generation: not enough
    assert not (await w.splits.join(plan, queue, 1)).ready
    await acknowledge(w, queue.split)
    ready = await w.splits.join(plan, queue, 1)
    assert ready.ready
    assert ready.step == "ready"
    assert ready.temporary == waiting.temporary
    assert ready.value == waiting.value


async def test_a_session_planned_after_the_patch_joins_with_the_split_original(
    world: World,
) -> None:
    """The workload's env holds the fallback once patched; a later session's plan reads that,
    but the split keeps its original and the new session's queue is made from it."""
    w = world
    await drive(w, [await plan_for(w, "alice")], [1])
    patched = env_value(await w.deployments.get("app"))
    late = await plan_for(w, "bob", original=patched)
    [joined] = await drive(w, [late], [2])
    obj = await w.queue_splits.get(late.queues[0].split)
    assert obj["spec"]["original"] == w.env[1]["value"]
    route = obj["spec"]["routes"][1]
    tags = await w.sqs.tags(route["destination"])
    assert tags[TAG_ORIGINAL] == w.original
    assert joined.temporary == queue_name(route["destination"])


# --- leave and hand-back --------------------------------------------------------------------


async def test_leave_waits_for_the_worker_and_the_last_leave_hands_back(world: World) -> None:
    w = world
    plans = [await plan_for(w, "alice"), await plan_for(w, "bob")]
    split = plans[0].queues[0].split
    await drive(w, plans, [1, 2])
    alice, bob = (p.session_ref for p in plans)

    assert await w.splits.leave(split, alice) is False
    obj = await w.queue_splits.get(split)
    assert [r["session"] for r in obj["spec"]["routes"]] == [bob]
    assert obj["spec"].get("handBack") is not True
    await acknowledge(w, split)
    assert await w.splits.leave(split, alice) is False  # routed to, not ended yet
    await end_session(w, split, alice)
    assert await w.splits.leave(split, alice) is True
    obj = await w.queue_splits.get(split)
    assert alice not in [r.get("session") for r in obj["status"]["temporaryResources"]]

    assert await w.splits.leave(split, bob) is False
    obj = await w.queue_splits.get(split)
    assert obj["spec"]["handBack"] is True
    assert obj["spec"]["routes"] == []
    # a new session waits for the hand-back
    carol = await plan_for(w, "carol")
    waiting = await w.splits.join(carol, carol.queues[0], 3)
    assert not waiting.ready
    assert waiting.step == f"waiting for the hand-back of {split}"
    await w.splits.reconcile_split(split)  # not Done yet: nothing is undone
    assert (await state(w, split))["workers"] == [worker_name(split)]
    await end_session(w, split, bob)
    assert await w.splits.leave(split, bob) is True
    await hand_back_done(w, split)
    await hand_back(w, split)

    app = await w.deployments.get("app")
    assert app["spec"]["template"]["spec"]["containers"][0]["env"] == w.env
    assert ORIGINAL_ENV_ANNOTATION not in (app["metadata"].get("annotations") or {})
    assert await find_temporary_queues(w.sqs, w.original, w.name_format) == []
    assert (await w.workers.list(label_selector=f"{WORKER_LABEL}={split}")).items == []
    with pytest.raises(NotFoundError):
        await w.queue_splits.get(split)
    await w.splits.reconcile_split(split)  # gone: a no-op
    assert await w.splits.leave(split, bob) is True


async def hand_back(w: World, split: str) -> None:
    """``reconcile_split`` while playing the Deployment controller for the restore."""
    await support.hand_back(w.splits, split, lambda: roll_out(w))


async def test_a_recorded_fallback_that_pymirror_did_not_create_is_never_deleted(
    world: World,
) -> None:
    w = world
    plan = await plan_for(w, "alice")
    split = plan.queues[0].split
    await drive(w, [plan], [1])
    assert await w.splits.leave(split, plan.session_ref) is False
    await end_session(w, split, plan.session_ref)
    await hand_back_done(w, split)
    obj = await w.queue_splits.get(split)
    fallback = next(r for r in obj["status"]["temporaryResources"] if r["role"] == "fallback")
    foreign = await make_queue(w.sqs, fallback["name"])  # someone else's, no pymirror tag
    await hand_back(w, split)
    assert await w.sqs.exists(foreign)
    with pytest.raises(NotFoundError):
        await w.queue_splits.get(split)


# --- interruptions ------------------------------------------------------------------------------


async def test_every_step_run_again_converges(world: World) -> None:
    """An operator killed between two steps runs them again: each re-run leaves the same
    state, and a queue recorded but not created yet is created under the recorded name."""
    w = world
    plan = await plan_for(w, "alice")
    queue = plan.queues[0]
    split = queue.split
    # killed after recording the session's queue, before creating it
    await w.queue_splits.create(
        {
            "apiVersion": QueueSplit.RESOURCE.api_version,
            "kind": "QueueSplit",
            "metadata": {"name": split},
            "spec": {
                "kind": "SQS",
                "queueId": "orders",
                "original": w.env[1]["value"],
                "target": {
                    "apiVersion": DEPLOYMENT_API,
                    "kind": "Deployment",
                    "name": "app",
                    "namespace": w.namespace,
                    "container": "main",
                    "envVar": VAR,
                },
            },
        }
    )
    recorded = w.name_format.render(w.original, fallback=False, random_digits="0123456789")
    record = {"name": recorded, "role": "session", "session": plan.session_ref, "created": False}
    await w.queue_splits.patch_status(split, {"temporaryResources": [record]})

    first = await w.splits.join(plan, queue, 1)
    assert first.step.startswith("waiting for the rollout")
    before = await state(w, split)
    assert recorded in before["queues"]
    assert await w.splits.join(plan, queue, 1) == first
    assert await state(w, split) == before
    await roll_out(w)
    waiting = await w.splits.join(plan, queue, 1)
    assert waiting.temporary == recorded
    before = await state(w, split)
    assert await w.splits.join(plan, queue, 1) == waiting
    assert await state(w, split) == before
    await acknowledge(w, split)
    assert (await w.splits.join(plan, queue, 1)).ready

    assert await w.splits.leave(split, plan.session_ref) is False
    assert await w.splits.leave(split, plan.session_ref) is False
    await end_session(w, split, plan.session_ref)
    assert await w.splits.leave(split, plan.session_ref) is True
    assert await w.splits.leave(split, plan.session_ref) is True
    fallback = await hand_back_done(w, split, delete_fallback=False)
    assert await w.sqs.exists(fallback)
    # killed after restoring the env, before deleting anything: the re-run finishes
    await restore_env(w.kube, plan.workload.ref, owner=split, kinds=KINDS)
    await roll_out(w)
    await hand_back(w, split)
    app = await w.deployments.get("app")
    assert app["spec"]["template"]["spec"]["containers"][0]["env"] == w.env
    assert not await w.sqs.exists(fallback)  # recorded, tagged, still there: deleted
    assert await find_temporary_queues(w.sqs, w.original, w.name_format) == []
    assert (await w.workers.list(label_selector=f"{WORKER_LABEL}={split}")).items == []
    with pytest.raises(NotFoundError):
        await w.queue_splits.get(split)


async def test_a_rollout_past_the_restart_timeout_is_a_clear_error(world: World) -> None:
    w = world
    plan = await plan_for(w, "alice")
    queue = replace(plan.queues[0], restart_timeout=1e-6)
    with pytest.raises(RolloutTimeoutError, match="workloadRestartTimeout") as caught:
        await w.splits.join(plan, queue, 1)
    assert caught.value.workload == f"Deployment {w.namespace}/app"
    assert (
        caught.value.missing
        == "the Deployment controller has not observed generation 2 yet (observed: none)"
    )
    workers = await w.workers.list(label_selector=f"{WORKER_LABEL}={queue.split}")
    assert workers.items == []  # no worker for a workload that never rolled out


async def test_a_split_whose_worker_never_ran_hands_back_without_it(world: World) -> None:
    """A session that fails while the rollout is pending leaves: no worker was ever made,
    so nothing was routed; its queue goes at once and the split hands back directly."""
    w = world
    plan = await plan_for(w, "alice")
    split = plan.queues[0].split
    waiting = await w.splits.join(plan, plan.queues[0], 1)
    assert waiting.step.startswith("waiting for the rollout")
    assert await w.splits.leave(split, plan.session_ref) is True
    obj = await w.queue_splits.get(split)
    assert obj["spec"]["handBack"] is True
    assert [r["role"] for r in obj["status"]["temporaryResources"]] == ["fallback"]
    await hand_back(w, split)
    app = await w.deployments.get("app")
    assert app["spec"]["template"]["spec"]["containers"][0]["env"] == w.env
    assert await find_temporary_queues(w.sqs, w.original, w.name_format) == []
    with pytest.raises(NotFoundError):
        await w.queue_splits.get(split)


async def test_a_queue_named_in_a_json_map_is_patched_and_given_inside_the_map(
    world: World,
) -> None:
    """``namesFromJsonMap``: the env var holds a JSON object; only the queue's key changes,
    for the workload (to the fallback) and for the local process (to its own queue)."""
    w = world
    entry = w.env[1]["value"]
    names = json.dumps({"ads": "ads-queue", "orders": entry})
    await w.deployments.create(app_body(names, name="mapapp", var="QUEUES"))
    workload = await get_workload(w.kube, KINDS, w.namespace, "Deployment", "mapapp")
    queue = PlannedQueue(
        id="orders",
        kind="SQS",
        split=split_name(workload.ref, "orders"),
        original=entry,
        env_var="QUEUES",
        container="main",
        message_filter={"author": "^alice$"},
        jq_filter=None,
        mode="steal",
        group_id=None,
        group_id_env_var=None,
        client_config=None,
        json_key="orders",
    )
    plan = SessionPlan(w.namespace, "alice", workload, [queue], KINDS)
    [joined] = await drive(w, [plan], [1])
    obj = await w.queue_splits.get(queue.split)
    records = {r["role"]: r for r in obj["status"]["temporaryResources"]}
    url_form = "://" in entry

    def form(record: dict[str, Any]) -> str:
        return str(record["url"] if url_form else record["name"])

    app = await w.deployments.get("mapapp")
    patched = app["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"]
    assert json.loads(patched) == {"ads": "ads-queue", "orders": form(records["fallback"])}
    assert joined.value is not None
    assert json.loads(joined.value) == {"ads": "ads-queue", "orders": form(records["session"])}

    assert await w.splits.leave(queue.split, plan.session_ref) is False
    await acknowledge(w, queue.split)
    await end_session(w, queue.split, plan.session_ref)
    assert await w.splits.leave(queue.split, plan.session_ref) is True
    await hand_back_done(w, queue.split)
    await hand_back(w, queue.split)
    app = await w.deployments.get("mapapp")
    assert app["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] == names


async def test_a_missing_original_is_a_clear_error_and_creates_nothing(world: World) -> None:
    w = world
    plan = await plan_for(w, "alice", original=f"{w.original}-gone")
    with pytest.raises(SqsQueueMissingError, match="does not exist; check the queue name"):
        await w.splits.join(plan, plan.queues[0], 1)
    with pytest.raises(NotFoundError):
        await w.queue_splits.get(plan.queues[0].split)
    assert env_value(await w.deployments.get("app")) == w.env[1]["value"]
