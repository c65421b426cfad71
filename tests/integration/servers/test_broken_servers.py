"""Smoke: a server that dies mid-run fails the next test using it, with a message naming it;
servers left behind by a killed test run are stopped by the next one.

Each case runs a two-test pytest session in a subprocess, through the real
fixtures: the first test SIGKILLs the session's server (its whole process
group), the second only asks for the fixture. The second must fail - an error
at setup, never a skip or a pass - and the message must name the dead process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.process import REPO, reap_orphans

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Case:
    fixture: str  # the fixture a test asks for
    param: str | None  # its parameter (server kind), if it is parametrized
    pool: str  # the session fixture holding the servers
    kind: str  # the server's key in that pool
    process: str  # attribute of the running server holding the process to kill
    name: str  # the process name the failure must mention
    label: str  # how the fixture names the server in the failure


CASES = [
    Case("sqs_endpoint", "moto", "sqs_servers", "moto", "process", "moto", "SQS server 'moto'"),
    Case(
        "sqs_endpoint",
        "localstack",
        "sqs_servers",
        "localstack",
        "process",
        "localstack",
        "SQS server 'localstack'",
    ),
    Case("kafka_broker", "noida", "kafka_servers", "noida", "process", "noida", "Kafka broker"),
    Case("kafka_broker", "tansu", "kafka_servers", "tansu", "process", "tansu", "Kafka broker"),
    Case("kube_api", None, "kube_servers", "kube", "apiserver", "kube-apiserver", "Kubernetes"),
    Case("kube_api", None, "kube_servers", "kube", "etcd", "kube-etcd", "Kubernetes"),
]

INNER = """
import os
import signal

import pytest

pytest_plugins = ["tests.fixtures.sqs", "tests.fixtures.kafka", "tests.fixtures.kube"]
{mark}
def test_a_kills_the_server({fixture}, {pool}):
    process = getattr({pool}.started({kind!r}), {attr!r})
    os.killpg(process.pid, signal.SIGKILL)
    process.proc.wait(10)
{mark}
def test_b_uses_the_server({fixture}):
    pass
"""


def running(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}-{c.process}" for c in CASES])
def test_server_killed_mid_run_fails_the_next_test_naming_it(case: Case, tmp_path: Path) -> None:
    """1. An inner session starts the server through its fixture; test a SIGKILLs it.
    2. Test b asks for the same (session) fixture.
    3. Test b errors at setup; the message names the fixture's server and the dead process.
    """
    mark = (
        f"@pytest.mark.parametrize({case.fixture!r}, [{case.param!r}], indirect=True)"
        if case.param
        else ""
    )
    (tmp_path / "test_inner.py").write_text(
        INNER.format(
            mark=mark, fixture=case.fixture, pool=case.pool, kind=case.kind, attr=case.process
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYMIRROR_TEST_ARTIFACTS": str(tmp_path / "logs"),  # keep the outer session's logs
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=100,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 1, out
    assert "1 passed, 1 error" in out, out
    assert "skipped" not in out, out
    assert "ERROR at setup of test_b_uses_the_server" in out, out
    assert f"{case.label}" in out, out
    assert f"{case.name} (pid " in out, out
    assert "is not running" in out, out


def test_servers_of_a_killed_test_run_are_recorded_and_reaped(tmp_path: Path) -> None:
    """1. An inner session starts moto through its fixture, then SIGKILLs itself (no teardown).
    2. moto survives as an orphan, and its pid file names it and the dead owner.
    3. reap_orphans() (run at every session start) stops it and removes the pid file.
    """
    (tmp_path / "test_inner.py").write_text(
        "import os, signal\n"
        "pytest_plugins = ['tests.fixtures.sqs']\n"
        "def test_dies(moto_endpoint):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    logs = tmp_path / "logs"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYMIRROR_TEST_ARTIFACTS": str(logs)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL
    (pid_file,) = logs.glob("moto.*.pid")
    pgid, owner = (int(n) for n in pid_file.read_text().split()[:2])
    try:
        assert running(pgid), "moto should have outlived its killed test process"
        assert reap_orphans(logs) == [f"moto (pid {pgid}, left by dead test process {owner})"]
        assert not pid_file.exists()
        deadline = time.monotonic() + 10
        while running(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(pgid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
