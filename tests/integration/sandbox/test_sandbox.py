"""``pymirror sandbox up|status|env|down`` as a user runs them: real processes, real servers.

Each test brings a sandbox up in its own state directory (its own ports and
processes), uses what ``env`` exports with the real clients (kubernetes, boto3,
aiokafka), and brings it down, then checks nothing is left: every recorded pid
gone, every port free, the state directory holding only the logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from pymirror.sandbox import assets
from pymirror.sandbox.groups import GroupId
from pymirror.sandbox.probes import port_open
from tests.integration.sandbox.conftest import eventually
from tests.servers.process import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def pymirror(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pymirror", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=280,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"pymirror {' '.join(args)} failed:\n{result.stderr}")
    return result


def parse_env(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        words = shlex.split(line)
        assert words[0] == "export"
        name, _, value = words[1].partition("=")
        env[name] = value
    return env


def alive(pid: int, started: int) -> bool:
    return GroupId(pid, started).group_alive()


def recorded(state_dir: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((state_dir / "state.json").read_text())
    return state


def deployment(name: str, out: Path) -> dict[str, Any]:
    command = ["sh", "-c", f'env > "{out}.tmp" && mv "{out}.tmp" "{out}" && exec sleep 100000']
    return {
        "apiVersion": "apps.pymirror.test/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "main", "command": command, "env": [{"name": "X", "value": "1"}]}
                    ]
                },
            },
        },
    }


def deploy(kubeconfig: str, name: str, out: Path) -> None:
    api = k8s_config.new_client_from_config(config_file=kubeconfig)
    try:
        k8s.CustomObjectsApi(api).create_namespaced_custom_object(
            "apps.pymirror.test", "v1", "default", "deployments", deployment(name, out)
        )
    finally:
        api.close()


def assert_nothing_left(state_dir: Path, state: dict[str, Any], extra_pids: list[int]) -> None:
    for component in state["components"]:
        assert not alive(component["pid"], component["started"]), component["name"]
        if component["port"]:
            assert not port_open(component["port"]), component["name"]
    for pid in extra_pids:
        assert not Path(f"/proc/{pid}").exists() or GroupId.of(pid) is None
    assert sorted(p.name for p in state_dir.iterdir()) == ["logs"]


async def test_up_status_env_and_down_leave_nothing_behind(tmp_path: Path) -> None:
    """1. `up` starts every component and says where its state is; a second `up` says it is
       already up and starts nothing new;
    2. `status` lists etcd, apiserver, moto, kafka, the runtime and the operator, each
       healthy with a pid;
    3. `env` exports KUBECONFIG, AWS_* and KAFKA_BOOTSTRAP_SERVERS: the kubernetes client
       lists the stand-in Deployments CRD, boto3 creates a queue on moto, aiokafka creates
       a topic on the broker;
    4. a stand-in Deployment created with that kubeconfig runs as a local process, which
       sees the sandbox's endpoints in its environment;
    5. `down` stops it all: every pid gone, every port free, only logs/ left; `status`
       then says the sandbox is not up."""
    state_dir = tmp_path / "sandbox"
    first = pymirror("sandbox", "up", "--state-dir", str(state_dir))
    assert "starting the local runtime" in first.stderr
    assert f"sandbox up: {state_dir}" in first.stdout
    state = recorded(state_dir)
    second = pymirror("sandbox", "up", "--state-dir", str(state_dir))
    assert "already up" in second.stdout
    assert recorded(state_dir)["components"] == state["components"]

    status = json.loads(
        pymirror("sandbox", "status", "--state-dir", str(state_dir), "--json").stdout
    )
    rows = {row["name"]: row for row in status["components"]}
    assert list(rows) == ["etcd", "apiserver", "moto", "kafka", "runtime", "operator"]
    assert all(row["healthy"] for row in rows.values()), rows
    assert all(row["pid"] > 0 for row in rows.values())
    table = pymirror("sandbox", "status", "--state-dir", str(state_dir)).stdout
    assert table.count("healthy") == 6

    env = parse_env(pymirror("sandbox", "env", "--state-dir", str(state_dir)).stdout)
    assert env["AWS_ENDPOINT_URL"] == rows["moto"]["url"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{rows['kafka']['port']}"
    kubeconfig = yaml.safe_load(await asyncio.to_thread(Path(env["KUBECONFIG"]).read_text))
    assert kubeconfig["clusters"][0]["cluster"]["server"] == rows["apiserver"]["url"]

    api = k8s_config.new_client_from_config(config_file=env["KUBECONFIG"])
    try:
        crds = k8s.ApiextensionsV1Api(api).list_custom_resource_definition().items
    finally:
        api.close()
    assert "deployments.apps.pymirror.test" in {c.metadata.name for c in crds}

    sqs = boto3.client(
        "sqs",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    queue = f"q-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    assert url.endswith(queue)
    assert sqs.list_queues()["QueueUrls"] == [url]

    admin = AIOKafkaAdminClient(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"])
    await admin.start()
    try:
        await admin.create_topics([NewTopic("sandbox-topic", 1, 1)])
        assert "sandbox-topic" in await admin.list_topics()
    finally:
        await admin.close()

    out = tmp_path / "pod-env"
    deploy(env["KUBECONFIG"], "app", out)
    await eventually("the deployed process wrote its env", out.exists)
    pod_env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert pod_env["X"] == "1"
    assert pod_env["AWS_ENDPOINT_URL"] == env["AWS_ENDPOINT_URL"]
    [record] = list((state_dir / "groups").glob("*.json"))
    pod_pid = int(record.stem)

    down = pymirror("sandbox", "down", "--state-dir", str(state_dir))
    assert "stopping runtime" in down.stderr
    assert "killed a container process" not in down.stderr  # the runtime stopped its pod
    assert_nothing_left(state_dir, state, [pod_pid])
    after = pymirror("sandbox", "status", "--state-dir", str(state_dir), check=False)
    assert after.returncode == 1
    assert "not up" in after.stdout
    assert "not up" in pymirror("sandbox", "down", "--state-dir", str(state_dir)).stdout


async def test_down_reaps_the_processes_of_a_killed_runtime(tmp_path: Path) -> None:
    """1. `up --no-kafka`, and a stand-in Deployment running one local process;
    2. the runtime and the operator are killed with SIGKILL (the runtime cannot stop its pod);
    3. `status` reports both as not running and exits 1;
    4. `down` kills the container process the runtime left, from the runtime's records,
       and leaves nothing behind."""
    state_dir = tmp_path / "sandbox"
    pymirror("sandbox", "up", "--no-kafka", "--state-dir", str(state_dir))
    state = recorded(state_dir)
    names = [c["name"] for c in state["components"]]
    assert names == ["etcd", "apiserver", "moto", "runtime", "operator"]
    out = tmp_path / "pod-env"
    deploy(str(state_dir / "kubeconfig"), "orphan", out)
    await eventually("the deployed process runs", out.exists)
    [record] = list((state_dir / "groups").glob("*.json"))
    pod = GroupId(int(record.stem), json.loads(record.read_text())["started"])
    assert pod.alive()

    for name in ("runtime", "operator"):
        killed = next(c for c in state["components"] if c["name"] == name)
        os.kill(killed["pid"], signal.SIGKILL)
        group = GroupId(killed["pid"], killed["started"])
        await eventually(f"the {name} is gone", lambda g=group: not g.group_alive())
    status = pymirror("sandbox", "status", "--state-dir", str(state_dir), check=False)
    assert status.returncode == 1
    rows = {row.split()[0]: row for row in status.stdout.splitlines()[1:]}
    assert "UNHEALTHY not running" in rows["runtime"]
    assert "UNHEALTHY not running" in rows["operator"]
    assert pod.alive()  # its own process group: the runtime's death did not take it along

    down = pymirror("sandbox", "down", "--state-dir", str(state_dir))
    assert "killed a container process the runtime left: default/orphan" in down.stderr
    assert not pod.group_alive()
    assert_nothing_left(state_dir, state, [pod.pid])


def test_the_packaged_stand_in_kinds_are_the_test_suites() -> None:
    packaged = {p.name: p.read_text() for p in assets.STAND_INS.glob("*.yaml")}
    tests = {p.name: p.read_text() for p in (REPO / "tests" / "kube").glob("*.yaml")}
    assert packaged == tests
    assert {p.name for p in assets.crd_files()} >= set(tests)
