"""The local runtime (stand-in for the kubelet and the Deployment controller) on the real
test API server: stand-in Deployments run as local processes, roll, restart, report, stop.

The deployed program is app.py: it records its environment when it starts and, on
SIGTERM, which processes had started by then; assertions are on those records and
on the Deployment's status as the API server stores it, never on elapsed time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pymirror.sandbox.groups import GroupId
from pymirror.sandbox.workloads import STAND_IN_KINDS
from registry.env_patch import status_of
from tests.fixtures.kube import STAND_INS
from tests.integration.sandbox.conftest import Records, RuntimeUnderTest, deployment, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def alive(pid: int) -> bool:
    group = GroupId.of(pid)
    return group is not None and group.alive()


async def settled(rt: RuntimeUnderTest, name: str, replicas: int = 1) -> dict[str, Any]:
    """The Deployment once its status reports the current generation fully rolled out."""

    async def check() -> dict[str, Any] | None:
        obj = await rt.deployments.get(name)
        status = obj.get("status") or {}
        done = (
            status.get("observedGeneration") == obj["metadata"]["generation"]
            and all(
                status.get(k) == replicas
                for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
            )
            and not status.get("terminatingReplicas")
        )
        return obj if done else None

    result: dict[str, Any] = await eventually(f"{name} settled", check)
    return result


def test_the_sandbox_stand_in_groups_are_the_test_servers_stand_ins() -> None:
    for kind in ("Deployment", "StatefulSet", "Rollout"):
        resource = STAND_IN_KINDS.resource(kind)  # type: ignore[arg-type]
        assert (resource.group, resource.version, resource.plural) == STAND_INS[kind]


async def test_a_deployment_runs_as_a_local_process_with_its_env(
    local_runtime: RuntimeUnderTest, tmp_path: Path
) -> None:
    """1. create a Deployment with two replicas and env GREETING=hello;
    2. both replicas' processes start with that env and the pod's name as HOSTNAME;
    3. the status says 2 ready, updated and available replicas of generation 1;
    4. each process logs into the runtime's log directory."""
    out = tmp_path / "out"
    out.mkdir()
    rt = local_runtime
    await rt.deployments.create(deployment("web", out, {"GREETING": "hello"}, replicas=2))

    obj = await settled(rt, "web", replicas=2)
    started = Records(out).started()
    assert len(started) == 2
    assert {env["GREETING"] for env in started.values()} == {"hello"}
    hostnames = sorted(env["HOSTNAME"] for env in started.values())
    assert [h.rsplit("-", 1)[1] for h in hostnames] == ["0", "1"]
    assert all(alive(pid) for pid in started)
    assert obj["status"]["observedGeneration"] == 1
    logs = sorted(p.name for p in rt.log_dir.iterdir())
    assert logs == [f"{rt.deployments.namespace}.{h}.app.log" for h in hostnames]
    assert "started pid" in (rt.log_dir / logs[0]).read_text()


async def test_an_env_change_rolls_the_process_new_one_first(
    local_runtime: RuntimeUnderTest, tmp_path: Path
) -> None:
    """1. a Deployment runs one process with COLOR=blue;
    2. its env is changed to COLOR=green (generation 2);
    3. a new process starts with COLOR=green; the old one gets SIGTERM and exits;
    4. the old process's stop record lists the new process's start record: the new one
       ran before the old one was asked to stop;
    5. the status reports generation 2 with one ready, updated replica."""
    out = tmp_path / "out"
    out.mkdir()
    rt = local_runtime
    await rt.deployments.create(deployment("roll", out, {"COLOR": "blue"}))
    await settled(rt, "roll")
    [(old_pid, old_env)] = Records(out).started().items()
    assert old_env["COLOR"] == "blue"

    changed = await rt.deployments.json_patch(
        "roll",
        [
            {
                "op": "replace",
                "path": "/spec/template/spec/containers/0/env/1/value",
                "value": "green",
            }
        ],
    )
    assert changed["metadata"]["generation"] == 2
    obj = await settled(rt, "roll")
    assert obj["status"]["observedGeneration"] == 2

    stopped = await eventually("the old process stopped", lambda: Records(out).stopped())
    started = Records(out).started()
    [new_pid] = [pid for pid in started if pid != old_pid]
    assert started[new_pid]["COLOR"] == "green"
    assert list(stopped) == [old_pid]
    assert f"{new_pid}.start" in stopped[old_pid]
    await eventually("the old process is gone", lambda: not alive(old_pid))
    assert alive(new_pid)


async def test_an_old_pod_in_its_grace_period_is_reported_terminating_and_not_rolled_out(
    local_runtime: RuntimeUnderTest, tmp_path: Path
) -> None:
    """1. a Deployment whose process, once asked to stop, exits only when released;
    2. its env changes: the new process starts and is ready, the old one got SIGTERM;
    3. while the old one is held, the status says 1 terminating replica and the rollout
       is not done (the old process still runs with the old env);
    4. released, it exits: 0 terminating, and the rollout is done."""
    out = tmp_path / "out"
    out.mkdir()
    rt = local_runtime
    await rt.deployments.create(deployment("held", out, {"HOLD_STOP": "1", "COLOR": "blue"}))
    await settled(rt, "held")
    [old_pid] = Records(out).started()
    patch = [
        {"op": "replace", "path": "/spec/template/spec/containers/0/env/2/value", "value": "x"}
    ]
    await rt.deployments.json_patch("held", patch)

    async def terminating() -> dict[str, Any] | None:
        obj = await rt.deployments.get("held")
        status = obj.get("status") or {}
        held = status.get("terminatingReplicas") == 1 and status.get("readyReplicas") == 1
        return obj if held and status.get("observedGeneration") == 2 else None

    obj = await eventually("the old pod reported terminating", terminating)
    assert list(Records(out).stopped()) == [old_pid]
    assert alive(old_pid)
    waiting = status_of("Deployment", obj)
    assert not waiting.done
    assert waiting.message == "1 replicas still terminating"

    (out / "release").touch()
    obj = await settled(rt, "held")
    assert obj["status"]["terminatingReplicas"] == 0
    assert status_of("Deployment", obj).done
    assert not alive(old_pid)


async def test_a_crashed_process_is_restarted(
    local_runtime: RuntimeUnderTest, tmp_path: Path
) -> None:
    """1. a Deployment whose first process exits with status 3 right after starting;
    2. the runtime starts the container again (after a backoff) and the second process runs;
    3. the pod's log says the first one exited; the status ends with one ready replica."""
    out = tmp_path / "out"
    out.mkdir()
    rt = local_runtime
    await rt.deployments.create(deployment("crash", out, {"CRASH_ONCE": "1"}))
    await settled(rt, "crash")
    crashed = int((out / "crashed").read_text())
    started = Records(out).started()
    assert crashed in started
    assert len(started) == 2
    [restarted] = [pid for pid in started if pid != crashed]
    assert alive(restarted)
    assert not alive(crashed)
    [log] = list(rt.log_dir.iterdir())
    assert "exited (3); restart in" in log.read_text()


async def test_deleting_the_deployment_stops_its_processes(
    local_runtime: RuntimeUnderTest, tmp_path: Path
) -> None:
    """1. a Deployment with two replicas runs two processes;
    2. the Deployment is deleted;
    3. both processes get SIGTERM (each writes its stop record) and are gone;
    4. no process group of theirs is still recorded."""
    out = tmp_path / "out"
    out.mkdir()
    rt = local_runtime
    await rt.deployments.create(deployment("gone", out, {}, replicas=2))
    await settled(rt, "gone", replicas=2)
    pids = set(Records(out).started())
    assert len(pids) == 2

    await rt.deployments.delete("gone")
    await eventually("both processes stopped", lambda: set(Records(out).stopped()) == pids)
    await eventually("both processes are gone", lambda: not any(alive(p) for p in pids))
    await eventually("no group is recorded", lambda: not list(rt.groups_dir.glob("*.json")))
    assert not rt.runtime.controllers


async def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(
    local_runtime: RuntimeUnderTest, tmp_path: Path
) -> None:
    """1. a Deployment whose process ignores SIGTERM, grace period 1 s;
    2. the Deployment is deleted;
    3. its process group (the shell and its sleep) is killed with SIGKILL and the log says
       the grace period ended."""
    rt = local_runtime
    body = deployment("stubborn", tmp_path, {})
    body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["command"] = [
        "sh",
        "-c",
        "trap '' TERM; touch \"$OUT_DIR/$HOSTNAME.ready\"; while :; do sleep 0.2; done",
    ]
    await rt.deployments.create(body)
    await settled(rt, "stubborn")
    [pod] = rt.runtime.controllers[("Deployment", rt.deployments.namespace, "stubborn")].pods
    [pid] = pod.pids
    group = GroupId.of(pid)
    assert group is not None

    await rt.deployments.delete("stubborn")
    await eventually("the process and its sleep are gone", lambda: not group.group_alive())
    [log] = list(rt.log_dir.iterdir())
    assert "grace period over: SIGKILL" in log.read_text()
