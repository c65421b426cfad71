"""``pymirror status`` and ``pymirror session kill|kill-all`` against the real operator.

The operator world of tests/integration/operator/test_operator.py (its ``operated``
fixture: the controller in this test's loop, the sandbox's local runtime running the meme
app's stand-in Deployment and the split worker as local processes, moto). Two developers,
alice and bob (``LOGNAME``), each run ``pymirror exec`` (a process) on the meme queue with
their own filter; the local command is ``CHILD`` of test_exec.py (prints its environment,
exits 0 on SIGTERM saying so).

1. Both sessions Ready and the worker Deployment ready; one message for alice and one for
   nobody are sent, counted by the worker (watched in the QueueSplit's status) and read
   from alice's temporary queue and the fallback.
2. ``pymirror status -o json`` (and ``-o yaml``, the same document): every field of both
   sessions and of the split, against what the operator and the worker wrote.
3. ``pymirror status`` (not a terminal: plain columns): the rows and their cells.
4. carol runs ``pymirror session kill --id <alice's session>``: alice's command gets
   SIGTERM, alice's exec exits 1 saying ``killed by carol/...``; bob's goes on.
5. ``pymirror session kill-all``: bob's exec exits 1 the same way; no session and no split
   is left, and ``status`` says so.

Every wait is on a watched change or on the processes' output; ``HANG`` bounds a hang.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from pymirror.client.identity import context_of
from registry.objects import Obj, Objects
from tests.integration.exec.conftest import StartDev
from tests.integration.exec.support import cli_env, next_json, pymirror_cli
from tests.integration.exec.test_exec import CHILD
from tests.integration.operator.support import DEPLOYMENTS, HANG, MEME_VAR, wait_empty
from tests.integration.operator.test_operator import Operated
from tests.integration.sqs.support import Outgoing, attribute, mid_of, receive_some, send
from tests.servers.kube import KubeApi

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


class Dev:
    """One developer's running ``pymirror exec``."""

    def __init__(self, user: str, process: asyncio.subprocess.Process) -> None:
        self.user = user
        self.process = process

    async def child_env(self) -> dict[str, str]:
        env: dict[str, str] = await next_json(self.process, f"{self.user}'s command never started")
        return env

    async def finish(self) -> tuple[int, str, str]:
        async with asyncio.timeout(HANG):
            out, err = await self.process.communicate()
        assert self.process.returncode is not None
        return self.process.returncode, out.decode(), err.decode()


@pytest.fixture
def developers(start_dev: StartDev) -> Callable[[str], Any]:
    async def start(user: str) -> Dev:
        process = await start_dev(user, [sys.executable, "-c", CHILD], flags=["--grace", "20"])
        return Dev(user, process)

    return start


async def pymirror(world: Operated, kube_api: KubeApi, user: str, *args: str) -> str:
    """Run ``pymirror ARGS --kubeconfig ...`` as ``user``; its stdout (exit 0 asserted)."""
    code, out, err = await pymirror_cli(
        *args,
        "--kubeconfig",
        str(kube_api.kubeconfig),
        env=cli_env(world.operator_namespace, user),
    )
    assert code == 0, err
    return out


async def watch_until(objects: Objects, name: str, check: Callable[[Obj], bool]) -> Obj:
    """The first version of ``name`` (current, then watched) that passes ``check``."""
    async with asyncio.timeout(HANG), objects.watch() as events:
        async for event in events:
            if event.name == name and event.type != "DELETED" and check(event.object):
                return event.object
    raise AssertionError("the watch ended")  # pragma: no cover


def counted(status: dict[str, Any], alice: str) -> bool:
    counters = status.get("counters") or {}
    forwarded = counters.get("forwarded") or {}
    return counters.get("read") == 2 and counters.get("fallback") == 1 and forwarded.get(alice) == 1


def without_ages(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: without_ages(v) for k, v in doc.items() if k != "ageSeconds"}
    if isinstance(doc, list):
        return [without_ages(v) for v in doc]
    return doc


async def test_status_shows_both_sessions_and_the_split_then_kill_and_kill_all_end_them(
    operated: Operated,
    developers: Callable[[str], Any],
    kube_api: KubeApi,
) -> None:
    ns, ops = operated.namespace, operated.operator_namespace
    alice, bob = await developers("alice"), await developers("bob")
    alice_env, bob_env = await alice.child_env(), await bob.child_env()
    sessions = {o["spec"]["owner"]["username"]: o for o in (await operated.sessions.list()).items}
    assert set(sessions) == {"alice", "bob"}
    a_obj, b_obj = sessions["alice"], sessions["bob"]
    a_name, b_name = a_obj["metadata"]["name"], b_obj["metadata"]["name"]
    a_ref, b_ref = f"{ns}/{a_name}", f"{ns}/{b_name}"
    k8s_user = context_of(str(kube_api.kubeconfig), None, {})[0]
    host = socket.gethostname()

    # 1. the worker runs and has counted one message for alice and one for nobody
    (split,) = (await operated.splits.list()).items
    split_name = split["metadata"]["name"]
    worker_name = split["status"]["workerDeployment"]
    workers = operated.kube.objects(DEPLOYMENTS, ops)
    await watch_until(workers, worker_name, lambda d: d.get("status", {}).get("readyReplicas") == 1)
    original = await operated.sqs.queue_url(operated.memes)
    await send(operated.sqs, original, [Outgoing("for-alice", {"author": attribute("alice")})])
    await send(operated.sqs, original, [Outgoing("for-nobody", {"author": attribute("zed")})])
    split = await watch_until(operated.splits, split_name, lambda s: counted(s["status"], a_ref))
    # consumed where they went (as alice's consumer and the workload would), so that no
    # leftover holds up the hand-back at the end (the fallback is drained first)
    got: dict[str, list[str]] = {}
    for label, queue in (("alice", alice_env[MEME_VAR]), ("fallback", split["spec"]["fallback"])):
        url = await operated.sqs.queue_url(queue)
        async with asyncio.timeout(HANG):
            while not got.get(label):  # each receive long-polls up to 1 s
                got[label] = [mid_of(m) for m in await receive_some(operated.sqs, url)]
    assert got == {"alice": ["for-alice"], "fallback": ["for-nobody"]}

    # 2. JSON and YAML: every field
    doc = json.loads(await pymirror(operated, kube_api, "carol", "status", "-n", ns, "-o", "json"))
    assert doc["apiVersion"] == "pymirror.dev/v1alpha1"
    assert doc["kind"] == "Status"
    assert doc["scope"] == {"namespace": ns, "allNamespaces": False, "operatorNamespace": ops}
    by_sequence = sorted((a_obj, b_obj), key=lambda o: int(o["status"]["sequence"]))
    assert [s["name"] for s in doc["sessions"]] == [o["metadata"]["name"] for o in by_sequence]
    records = {s["owner"]["username"]: s for s in doc["sessions"]}
    for user, env in (("alice", alice_env), ("bob", bob_env)):
        record = records[user]
        obj = await operated.sessions.get(record["name"])
        meta, spec, status = obj["metadata"], obj["spec"], obj["status"]
        (state,) = status["queues"]
        assert record == {
            "name": meta["name"],
            "namespace": ns,
            "uid": meta["uid"],
            "target": {
                "apiVersion": DEPLOYMENTS.api_version,
                "kind": "Deployment",
                "name": "meme-app",
                "container": "main",
            },
            "targetPath": "deployment/meme-app/container/main",
            "owner": {"username": user, "hostname": host, "k8sUsername": k8s_user},
            "user": f"{user}/{k8s_user}@{host}",
            "phase": "Ready",
            "sequence": status["sequence"],
            "endReason": None,
            "message": status.get("message"),
            "killedBy": None,
            "deleting": False,
            "created": meta["creationTimestamp"],
            "ageSeconds": record["ageSeconds"],
            "leaseSeconds": 30,
            "renewTime": record["renewTime"],
            "queues": [
                {
                    "id": "meme-queue",
                    "kind": "SQS",
                    "mode": "steal",
                    "messageFilter": {"author": f"^{user}$"},
                    "jqFilter": None,
                    "original": operated.memes,
                    "temporary": env[MEME_VAR],
                    "envVar": MEME_VAR,
                    "split": split_name,
                }
            ],
        }
        assert state["temporary"] == env[MEME_VAR]
        assert 0 <= record["ageSeconds"] < HANG * 2
        assert record["renewTime"] >= spec["renewTime"][:19] > ""  # renewed (or not) since

    (record,) = doc["splits"]
    split = await operated.splits.get(split_name)
    routes = {r["session"]: r for r in split["spec"]["routes"]}
    counters = split["status"]["counters"]
    assert record == {
        "name": split_name,
        "namespace": ops,
        "kind": "SQS",
        "queueId": "meme-queue",
        "original": operated.memes,
        "target": {
            "apiVersion": DEPLOYMENTS.api_version,
            "kind": "Deployment",
            "name": "meme-app",
            "container": "main",
            "namespace": ns,
            "envVar": MEME_VAR,
        },
        "targetPath": "deployment/meme-app/container/main",
        "fallback": split["spec"]["fallback"],
        "handBack": False,
        "handBackPhase": None,
        "handBackRemaining": None,
        "activeSessions": split["status"].get("activeSessions"),
        "sessions": [
            {
                "session": ref,
                "sequence": routes[ref]["sequence"],
                "destination": routes[ref]["destination"],
                "messageFilter": {"author": f"^{user}$"},
                "jqFilter": None,
                "mode": "steal",
                "forwarded": counters["forwarded"].get(ref),
            }
            for ref, user in sorted(
                ((a_ref, "alice"), (b_ref, "bob")), key=lambda p: int(routes[p[0]]["sequence"])
            )
        ],
        "worker": {"name": worker_name, "replicas": 1, "readyReplicas": 1, "error": None},
        "counters": {
            "read": 2,
            "unmatched": counters.get("unmatched"),
            "fallback": 1,
            "failed": counters.get("failed"),
            "lag": counters.get("lag"),
            "forwarded": counters["forwarded"],
        },
        "temporaryResources": [
            {k: t.get(k) for k in ("name", "role", "session", "created")}
            for t in split["status"]["temporaryResources"]
        ],
        "created": split["metadata"]["creationTimestamp"],
        "ageSeconds": record["ageSeconds"],
    }
    assert {r["session"]: r["forwarded"] for r in record["sessions"]}[a_ref] == 1
    assert record["fallback"]
    assert record["fallback"] != operated.memes
    roles = sorted((t["role"], t["session"]) for t in record["temporaryResources"])
    assert roles == [("fallback", None), ("session", a_ref), ("session", b_ref)]
    assert {t["name"] for t in record["temporaryResources"]} >= {
        alice_env[MEME_VAR],
        bob_env[MEME_VAR],
    }

    as_yaml = yaml.safe_load(
        await pymirror(operated, kube_api, "carol", "status", "-n", ns, "-o", "yaml")
    )
    for key in ("apiVersion", "kind", "scope"):
        assert as_yaml[key] == doc[key]
    assert [without_ages(s)["queues"] for s in as_yaml["sessions"]] == [
        without_ages(s)["queues"] for s in doc["sessions"]
    ]
    assert as_yaml["splits"][0]["worker"] == record["worker"]
    assert set(as_yaml["splits"][0]) == set(record)

    # 3. the plain table
    table = await pymirror(operated, kube_api, "carol", "status", "-n", ns)
    lines = table.splitlines()
    assert lines[0] == "Sessions:"
    assert lines[1].split() == [
        "SESSION", "NAMESPACE", "TARGET", "USER", "PHASE", "SEQ", "AGE", "QUEUES", "MESSAGE"
    ]  # fmt: skip
    for name, user, env in ((a_name, "alice", alice_env), (b_name, "bob", bob_env)):
        (row,) = [line for line in lines if line.startswith(name)]
        cells = row.split("   ")
        cells = [c.strip() for c in cells if c.strip()]
        assert cells[:5] == [
            name,
            ns,
            "deployment/meme-app/container/main",
            f"{user}/{k8s_user}@{host}",
            "Ready",
        ]
        assert f"meme-queue (SQS): {operated.memes} -> {env[MEME_VAR]}  [author=^{user}$]" in row
    assert "Splits:" in lines
    (split_row,) = [line for line in lines if line.startswith(f"{ops}/{split_name}")]
    assert f"{ns}/deployment/meme-app/container/main" in split_row
    assert f"meme-queue (SQS): {operated.memes}" in split_row
    assert f"{worker_name} 1/1 ready" in split_row
    assert "read 2 fallback 1" in split_row
    assert f"{a_ref}: 1" in table

    # 4. carol kills alice's session: alice's command stops, bob's goes on
    carol = f"carol/{k8s_user}@{host}"
    said = await pymirror(operated, kube_api, "carol", "session", "kill", "--id", a_name, "-n", ns)
    assert said.startswith(f"session {a_ref} killed by {carol}")
    code, out, err = await alice.finish()
    assert code == 1, err
    assert out == "signal SIGTERM\n"  # the command got SIGTERM (and exited 0)
    assert f"SessionEndedError: session {a_ref} ended:" in err
    assert f"killed by {carol}" in err
    assert "the command was stopped (exit code 0)" in err
    assert bob.process.returncode is None
    left = json.loads(await pymirror(operated, kube_api, "carol", "status", "-n", ns, "-o", "json"))
    assert [s["name"] for s in left["sessions"]] == [b_name]  # exec waited until it was gone
    assert left["sessions"][0]["phase"] == "Ready"

    # 5. kill-all ends bob's too; nothing is left
    said = await pymirror(operated, kube_api, "carol", "session", "kill-all", "-n", ns)
    assert said == f"session {b_ref} killed by {carol}\n"
    code, out, err = await bob.finish()
    assert code == 1, err
    assert out == "signal SIGTERM\n"
    assert f"killed by {carol}" in err
    async with asyncio.timeout(HANG):
        await wait_empty(operated.sessions)
        await wait_empty(operated.splits)
    empty = await pymirror(operated, kube_api, "carol", "status", "-n", ns)
    assert empty == (
        f"Sessions: No split sessions in namespace {ns}.\n\n"
        f"Splits: No queue splits in operator namespace {ops} for targets in {ns}.\n"
    )
    nothing = await pymirror(operated, kube_api, "carol", "session", "kill-all", "-n", ns)
    assert nothing == f"no sessions in namespace {ns}: nothing to kill\n"
