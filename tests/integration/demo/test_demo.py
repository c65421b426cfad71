"""``make demo``'s code path: ``pymirror demo`` run as a process, as the Makefile runs it.

The demo brings up its own sandbox (real API server, moto, Tansu, the local runtime, the
operator) in this test's directory, runs the deployed workload and two ``pymirror exec``
sessions with real local consumers (plain boto3 and kafka-python) splitting an SQS queue
and a Kafka topic, and ends with one verdict line, which the test parses: every count is
asserted, and the exit code must agree with it.

The second test injects a fault through the consumer's test hook
(``PYMIRROR_DEMO_FAULT_DROP=bob``: bob's consumer acknowledges its first message and its
first record without recording them): the demo must count exactly those two lost, one
per transport, and exit 1. The third runs ``--no-kafka``: the SQS half alone.

Every wait is inside the demo, on measured progress; the test's timeout bounds a hang.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.process import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

VERDICT = re.compile(r"^verdict: (?P<fields>.*)$", re.MULTILINE)
LEFTOVER = "(leftover of alice's session, routed again)"
#: The verdict's fields of a run where every message went where it must.
CLEAN = {
    "lost": "0",
    "duplicated": "0",
    "misrouted": "0",
    "temporary_left": "0",
    "env_restored": "yes",
    "result": "PASS",
}


def run_demo(state_dir: Path, *args: str, **env: str) -> tuple[int, dict[str, str], str]:
    """(exit code, the verdict's fields, the whole output)."""
    done = subprocess.run(
        [sys.executable, "-m", "pymirror", "demo", "--state-dir", str(state_dir), *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    output = done.stdout + done.stderr
    matches = VERDICT.findall(done.stdout)
    assert len(matches) == 1, f"no single verdict line (exit {done.returncode}):\n{output}"
    fields = dict(item.split("=", 1) for item in matches[0].split())
    return done.returncode, fields, output


def assert_sessions_ended_and_sandbox_down(output: str, state_dir: Path) -> None:
    assert "alice: pymirror exec exited 0: session ended" in output
    assert "bob: pymirror exec exited 0: session ended" in output
    assert not (state_dir / "sandbox" / "state.json").exists(), "the demo left its sandbox up"


def test_make_demo_routes_every_message_and_record_where_it_must_go(tmp_path: Path) -> None:
    code, verdict, output = run_demo(tmp_path / "demo")
    assert verdict == {
        "sent": "72",
        "sent.sqs": "36",
        "sent.kafka": "36",
        # per transport: phase 1 carol; phase 2 carol + alice's leftovers by alice;
        # phase 3 all 12
        "delivered.workload": "42",
        # per transport: phase 1 alice and pair (alice's session started first)
        "delivered.alice": "12",
        # per transport: phase 1 bob; phase 2 bob + alice's leftovers by pair
        "delivered.bob": "18",
        **CLEAN,
    }, output
    assert code == 0, output
    # the live view showed each leftover routed again (queue and topic), and the hand-backs
    leftovers = [line for line in output.splitlines() if LEFTOVER in line]
    assert sorted(line.split()[0][0] for line in leftovers) == ["k"] * 6 + ["m"] * 6, output
    assert "-orders-events (leftover of alice's session" in output
    assert "hand-back of shop-orders-queue-" in output
    assert "hand-back of shop-orders-events-topic-" in output
    assert "ORDERS_EVENTS_TOPIC=orders-events" in output
    assert_sessions_ended_and_sandbox_down(output, tmp_path / "demo")


def test_a_consumer_that_drops_a_message_and_a_record_makes_the_demo_fail(
    tmp_path: Path,
) -> None:
    code, verdict, output = run_demo(tmp_path / "demo", PYMIRROR_DEMO_FAULT_DROP="bob")
    assert code == 1, output
    assert verdict["result"] == "FAIL"
    assert (verdict["sent"], verdict["lost"], verdict["delivered.bob"]) == ("72", "2", "16"), output
    cleanly = (verdict["duplicated"], verdict["misrouted"], verdict["temporary_left"])
    assert cleanly == ("0", "0", "0"), output
    # bob's first message (m1) and first record (k1): one of each is lost
    assert "the queues are empty and nobody received m1, k1" in output, output
    assert_sessions_ended_and_sandbox_down(output, tmp_path / "demo")


def test_make_demo_without_kafka_splits_the_queue_alone(tmp_path: Path) -> None:
    code, verdict, output = run_demo(tmp_path / "demo", "--no-kafka")
    assert verdict == {
        "sent": "36",
        "sent.sqs": "36",
        "delivered.workload": "21",
        "delivered.alice": "6",
        "delivered.bob": "9",
        **CLEAN,
    }, output
    assert code == 0, output
    assert output.count(LEFTOVER) == 6, output
    assert "orders-events" not in output
    assert "starting Tansu" not in output
    assert_sessions_ended_and_sandbox_down(output, tmp_path / "demo")
