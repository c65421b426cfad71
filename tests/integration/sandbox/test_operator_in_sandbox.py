"""The sandbox's operator end to end, as a user drives it: ``pymirror sandbox up``, the
meme-app example objects applied with the kubeconfig ``sandbox env`` names, a SplitSession
made Ready by the sandbox's operator process with a real worker Deployment run by the
sandbox's local runtime, messages split by the worker, the session deleted, the split
handed back, the workload's env restored exactly, ``sandbox down`` leaving no process.

Every wait is on a watched object, a long-poll receive or a process's state; the test's
timeout only bounds a hang.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from pymirror.sandbox.groups import GroupId
from registry.env_patch import ORIGINAL_ENV_ANNOTATION
from registry.errors import NotFoundError
from registry.objects import Kube, Obj, Objects
from registry.resources import Resource
from registry.session_models import QueueSplit, SplitSession
from tests.integration.sandbox.conftest import eventually
from tests.integration.sandbox.test_sandbox import (
    assert_nothing_left,
    parse_env,
    pymirror,
    recorded,
)
from tests.servers.process import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DEMO, OPERATOR_NS = "demo", "pymirror-system"
APP = "meme-app"
MEME_VAR, AD_VAR = "INCOMING_MEME_QUEUE_NAME", "AD_QUEUE_NAME"
DEPLOYMENTS = Resource("apps.pymirror.test", "v1", "deployments")
REGISTRIES = Resource("queues.mirrord.metalbear.co", "v1alpha", "mirrordworkloadqueueregistries")
IDLE = [
    sys.executable,
    "-c",
    "import signal; signal.signal(signal.SIGTERM, lambda *a: exit(0)); signal.pause()",
]


def meme_app(memes: str, ads: str) -> Obj:
    """The meme app the example registry describes, as a stand-in Deployment."""
    env = [{"name": MEME_VAR, "value": memes}, {"name": AD_VAR, "value": ads}]
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


def example_session() -> Obj:
    """examples/pymirror/split-session.yaml for the sandbox: the stand-in Deployment kind, its
    SQS queue only (Kafka sessions are not joined yet), and no stale renewTime."""
    obj: Obj = yaml.safe_load((REPO / "examples/pymirror/split-session.yaml").read_text())
    obj["spec"]["target"]["apiVersion"] = DEPLOYMENTS.api_version
    obj["spec"]["queues"] = [q for q in obj["spec"]["queues"] if q["kind"] == "SQS"]
    obj["spec"].pop("renewTime", None)
    return obj


async def watch_until(
    objects: Objects, name: str, check: Callable[[Obj | None], bool]
) -> Obj | None:
    """The first state of ``name`` (current, then watched; None = gone) for which ``check``
    holds."""
    try:
        obj: Obj | None = await objects.get(name)
    except NotFoundError:
        obj = None
    if check(obj):
        return obj
    version = obj["metadata"]["resourceVersion"] if obj is not None else None
    async with objects.watch(resource_version=version, field_selector=f"metadata.name={name}") as w:
        async for event in w:
            current = None if event.type == "DELETED" else event.object
            if check(current):
                return current
    raise AssertionError(f"the watch of {name} ended")


def phase_is(*phases: str) -> Callable[[Obj | None], bool]:
    return lambda obj: obj is not None and (obj.get("status") or {}).get("phase") in phases


def pod_groups(state_dir: Path) -> dict[str, GroupId]:
    """What the local runtime runs now: ``namespace/pod/container`` -> process group."""
    groups = {}
    for record in (state_dir / "groups").glob("*.json"):
        data = json.loads(record.read_text())
        groups[data["what"]] = GroupId(int(record.stem), int(data["started"]))
    return groups


def receive(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message of a long poll (deleted after reading)."""
    answer = sqs.receive_message(
        QueueUrl=url, WaitTimeSeconds=5, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )
    messages: list[dict[str, Any]] = answer.get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return messages


async def first_message(sqs: Any, url: str) -> dict[str, Any]:
    while not (messages := await asyncio.to_thread(receive, sqs, url)):
        pass
    assert len(messages) == 1, messages
    return messages[0]


def send(sqs: Any, url: str, body: str, author: str) -> None:
    attributes = {
        "author": {"DataType": "String", "StringValue": author},
        "level": {"DataType": "String", "StringValue": "beginner"},
    }
    sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """The sandbox's state directory; the sandbox is brought down even when the test fails."""
    state_dir = tmp_path / "sandbox"
    yield state_dir
    if (state_dir / "state.json").exists():
        pymirror("sandbox", "down", "--state-dir", str(state_dir), check=False)


async def test_a_session_is_split_by_the_sandboxs_operator_and_handed_back(
    state_dir: Path,
) -> None:
    """1. `up --namespace demo` starts the operator too: `status` shows it alive and healthy
       with its log, `env` names its namespace;
    2. the meme app (the example registry's consumer) and examples/meme-app/queue-registry.yaml
       are applied, the example SplitSession (its SQS queue) is created: it becomes Ready, a
       worker Deployment in the operator's namespace runs as a local process, the app reads
       the fallback queue (its original env kept in the annotation);
    3. the worker splits: alice's message reaches her temporary queue, bob's the fallback;
    4. deleting the session ends it: the session and its QueueSplit go, the worker process
       stops, the temporary queue is deleted, the app's pod template is the original again;
    5. `down` leaves no process (the app's and the worker's included), no port, only logs/."""
    up = pymirror("sandbox", "up", "--no-kafka", "--namespace", DEMO, "--state-dir", str(state_dir))
    assert "starting the operator" in up.stderr
    state = recorded(state_dir)
    status = json.loads(
        pymirror("sandbox", "status", "--state-dir", str(state_dir), "--json").stdout
    )
    rows = {row["name"]: row for row in status["components"]}
    assert list(rows) == ["etcd", "apiserver", "moto", "runtime", "operator"]
    operator = rows["operator"]
    assert (operator["alive"], operator["healthy"], operator["probe"]) == (
        True,
        True,
        "GET /metrics",
    )
    assert operator["log"] == str(state_dir / "logs" / "operator.log")
    env = parse_env(pymirror("sandbox", "env", "--state-dir", str(state_dir)).stdout)
    assert env["PYMIRROR_OPERATOR__NAMESPACE"] == OPERATOR_NS
    # pymirror exec/status find the sandbox's stand-in workload kinds through it
    kinds = json.loads(env["PYMIRROR_OPERATOR__WORKLOAD_KINDS"])
    assert kinds["Deployment"] == "apps.pymirror.test/v1"

    sqs = boto3.client(
        "sqs",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    memes_url = sqs.create_queue(QueueName="memes")["QueueUrl"]
    sqs.create_queue(QueueName="ads")
    pids: list[int] = []
    async with Kube.from_kubeconfig(env["KUBECONFIG"]) as kube:
        deployments = kube.objects(DEPLOYMENTS, DEMO)
        created = await deployments.create(meme_app("memes", "ads"))
        original_template = copy.deepcopy(created["spec"]["template"])
        registry = yaml.safe_load((REPO / "examples/meme-app/queue-registry.yaml").read_text())
        await kube.objects(REGISTRIES, DEMO).create(registry)
        sessions = kube.objects(SplitSession.RESOURCE, DEMO)
        session = example_session()
        name = session["metadata"]["name"]
        await sessions.create(session)

        ready = await watch_until(sessions, name, phase_is("Ready", "Failed"))
        assert ready is not None
        assert ready["status"]["phase"] == "Ready", ready["status"]
        (queue,) = ready["status"]["queues"]
        assert (queue["original"], queue["envVar"]) == ("memes", MEME_VAR)
        temporary_url = sqs.get_queue_url(QueueName=queue["temporary"])["QueueUrl"]
        split = queue["split"]
        workers = kube.objects(DEPLOYMENTS, OPERATOR_NS)
        [worker] = (await workers.list()).items
        worker_prefix = f"{OPERATOR_NS}/{worker['metadata']['name']}-"
        running = await eventually(
            "the worker runs as a local process",
            lambda: [g for w, g in pod_groups(state_dir).items() if w.startswith(worker_prefix)],
        )
        app = await deployments.get(APP)
        app_env = {
            e["name"]: e["value"] for e in app["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        fallback = app_env[MEME_VAR]
        assert fallback not in ("memes", queue["temporary"])
        assert ORIGINAL_ENV_ANNOTATION in app["metadata"]["annotations"]
        pids += [g.pid for g in pod_groups(state_dir).values()]

        send(sqs, memes_url, "for alice", "alice")
        send(sqs, memes_url, "for bob", "bob")
        assert (await first_message(sqs, temporary_url))["Body"] == "for alice"
        fallback_url = sqs.get_queue_url(QueueName=fallback)["QueueUrl"]
        assert (await first_message(sqs, fallback_url))["Body"] == "for bob"

        await sessions.delete(name)
        assert await watch_until(sessions, name, lambda obj: obj is None) is None
        splits = kube.objects(QueueSplit.RESOURCE, OPERATOR_NS)
        assert await watch_until(splits, split, lambda obj: obj is None) is None
        restored = await watch_until(
            deployments,
            APP,
            lambda obj: obj is not None and obj["spec"]["template"] == original_template,
        )
        assert restored is not None
        assert ORIGINAL_ENV_ANNOTATION not in (restored["metadata"].get("annotations") or {})
        await eventually(
            "the worker process ended", lambda: not any(g.group_alive() for g in running)
        )
        assert (await workers.list()).items == []
        queues = sqs.list_queues().get("QueueUrls", [])
        assert temporary_url not in queues
        assert memes_url in queues

    down = pymirror("sandbox", "down", "--state-dir", str(state_dir))
    assert "stopping operator" in down.stderr
    assert "killed a container process" not in down.stderr
    assert_nothing_left(state_dir, state, pids)
