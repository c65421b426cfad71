"""The pieces of a session that need no server: owner, name, body, env, end reasons, child."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
import yaml

from pymirror.client.child import Child, exit_status_text
from pymirror.client.config import QueueRequest, TargetSpec
from pymirror.client.identity import Identity, context_of, identity, kubeconfig_files
from pymirror.client.session import _ended_reason, session_body, session_env, session_name
from pymirror.errors import ConfigError
from registry.session_models import SplitSession

pytestmark = pytest.mark.unit


def kubeconfig(path: Path, current: str | None, *contexts: tuple[str, str, str | None]) -> Path:
    doc: dict[str, object] = {
        "contexts": [
            {"name": n, "context": {"user": u, **({"namespace": ns} if ns else {})}}
            for n, u, ns in contexts
        ]
    }
    if current:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_context_in_use_names_the_k8s_user_and_namespace(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "k", "dev", ("dev", "alice@corp", "shop"), ("ops", "admin", None))
    assert context_of(str(path), None, {}) == ("alice@corp", "shop")
    assert context_of(str(path), "ops", {}) == ("admin", None)
    assert context_of(str(path), "nope", {}) == (None, None)


def test_kubeconfig_files_merge_in_order(tmp_path: Path) -> None:
    first = kubeconfig(tmp_path / "a", None, ("dev", "from-a", None))
    second = kubeconfig(tmp_path / "b", "dev", ("dev", "from-b", "ns-b"))
    env = {"KUBECONFIG": f"{first}:{second}"}
    assert kubeconfig_files(None, env) == [first, second]
    assert context_of(None, None, env) == ("from-a", None)  # the first definition wins


def test_identity_falls_back_to_the_service_account_in_a_pod(tmp_path: Path) -> None:
    env = {"KUBECONFIG": str(tmp_path / "missing"), "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    who = identity(None, None, env)
    assert who.k8s_username == "serviceaccount"
    assert who.username
    assert who.hostname
    assert identity(None, None, {"KUBECONFIG": str(tmp_path / "m")}).k8s_username == "unknown"


def test_session_name_is_a_dns_label_per_run() -> None:
    a, b = session_name("Alice.Smith@CORP"), session_name("Alice.Smith@CORP")
    assert a.startswith("exec-alice-smith-corp-")
    assert a != b
    assert session_name("___").startswith("exec-user-")
    assert len(session_name("x" * 200)) <= 63


def test_session_body_is_a_valid_split_session() -> None:
    who = Identity("alice", "laptop", "alice@corp", None)
    queues = (
        QueueRequest("q", "SQS", {"a": "^b$"}),
        QueueRequest("t", "Kafka", {}, ".x", "mirror"),
    )
    body = session_body(
        "exec-a-1", TargetSpec("Deployment", "app", "main"), "apps/v1", queues, who, 12
    )
    parsed = SplitSession.model_validate(body)
    assert parsed.spec.owner.k8s_username == "alice@corp"
    assert parsed.spec.target.container == "main"
    assert parsed.spec.lease_seconds == 12
    assert [q.mode for q in parsed.spec.queues] == ["steal", "mirror"]
    assert parsed.spec.queues[1].jq_filter == ".x"
    assert parsed.spec.renew_time is not None


STATUS = {
    "phase": "Ready",
    "queues": [
        {"id": "q", "original": "orders", "envVar": "QUEUE_NAME", "value": "tmp-orders"},
        {"id": "t", "original": "views", "envVar": "TOPIC", "value": "tmp-views"},
        {"id": "u", "original": "x"},
    ],
}


def test_session_env_sets_each_queue_var() -> None:
    env = session_env(STATUS, {"QUEUE_NAME": "orders", "PATH": "/bin"})
    assert env == {"QUEUE_NAME": "tmp-orders", "TOPIC": "tmp-views", "PATH": "/bin"}


def test_a_local_override_of_a_split_var_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"feature.env.override sets TOPIC.*remove the override"):
        session_env(STATUS, {}, frozenset({"TOPIC"}))


def test_end_reasons() -> None:
    assert _ended_reason({"metadata": {}, "status": {"phase": "Ready"}}) is None
    ending = {
        "metadata": {"annotations": {"pymirror.dev/killed": "bob"}},
        "status": {"phase": "Ending", "endReason": "Killed", "message": "ending"},
    }
    assert _ended_reason(ending) == "phase Ending; endReason Killed; killed by bob; ending"
    deleting = {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {}}
    assert _ended_reason(deleting) == "being deleted"


async def test_child_exit_codes_pass_through() -> None:
    child = await Child.start([sys.executable, "-c", "raise SystemExit(7)"], {})
    assert await child.wait() == 7
    child = await Child.start([sys.executable, "-c", "import os; os.kill(os.getpid(), 15)"], {})
    code = await child.wait()
    assert code == 128 + signal.SIGTERM
    assert exit_status_text(code) == "killed by SIGTERM"
    assert exit_status_text(3) == "exit code 3"


async def started_ignoring(tmp_path: Path, signum: signal.Signals) -> Child:
    """A child that ignores ``signum``, returned once the handler is installed (it writes a
    FIFO only then)."""
    fifo = tmp_path / "ready"
    os.mkfifo(fifo)
    code = (
        f"import signal, time; signal.signal({int(signum)}, signal.SIG_IGN); "
        f"open({str(fifo)!r}, 'w').write('ready'); time.sleep(60)"
    )
    child = await Child.start([sys.executable, "-c", code], {})
    assert await asyncio.to_thread(fifo.read_text) == "ready"
    return child


async def test_child_stop_kills_after_the_grace_when_sigterm_is_ignored(tmp_path: Path) -> None:
    child = await started_ignoring(tmp_path, signal.SIGTERM)
    assert await child.stop(0.2) == 128 + signal.SIGKILL


async def test_a_second_interrupt_kills(tmp_path: Path) -> None:
    child = await started_ignoring(tmp_path, signal.SIGINT)
    child.shares_terminal = False
    child.on_signal(signal.SIGINT)  # forwarded, and ignored by the child
    assert child.process.returncode is None
    child.on_signal(signal.SIGINT)
    assert await child.wait() == 128 + signal.SIGKILL


async def test_a_missing_command_is_a_usage_error() -> None:
    from pymirror.errors import UsageError

    with pytest.raises(UsageError, match="cannot run 'no-such-command-xyz'"):
        await Child.start(["no-such-command-xyz"], {})


def test_a_killed_session_still_ready_says_who_and_not_its_stale_message() -> None:
    killed = {
        "metadata": {
            "annotations": {"pymirror.dev/killed": "carol/c@box"},
            "deletionTimestamp": "2026-01-01T00:00:00Z",
        },
        "status": {"phase": "Ready", "message": "ready: 1 queue(s) split"},
    }
    assert _ended_reason(killed) == "being deleted; killed by carol/c@box"
    killed["status"] = {
        "phase": "Ending",
        "endReason": "Killed",
        "message": "killed by carol/c@box",
    }
    assert _ended_reason(killed) == "phase Ending; endReason Killed; killed by carol/c@box"
