"""``make demo``'s code path: ``pymirror demo`` run as a process, as the Makefile runs it.

The demo brings up its own sandbox (real API server, moto, the local runtime, the
operator) in this test's directory, runs the deployed workload and two ``pymirror exec``
sessions with real local consumers (plain boto3), and ends with one verdict line, which
the test parses: every count is asserted, and the exit code must agree with it.

The second test injects a fault through the consumer's test hook
(``PYMIRROR_DEMO_FAULT_DROP=bob``: bob's consumer acknowledges its first message without
recording it): the demo must count exactly that message lost and exit 1.

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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

VERDICT = re.compile(r"^verdict: (?P<fields>.*)$", re.MULTILINE)


def run_demo(state_dir: Path, **env: str) -> tuple[int, dict[str, str], str]:
    """(exit code, the verdict's fields, the whole output)."""
    done = subprocess.run(
        [sys.executable, "-m", "pymirror", "demo", "--state-dir", str(state_dir)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=380,
        check=False,
    )
    output = done.stdout + done.stderr
    matches = VERDICT.findall(done.stdout)
    assert len(matches) == 1, f"no single verdict line (exit {done.returncode}):\n{output}"
    fields = dict(item.split("=", 1) for item in matches[0].split())
    return done.returncode, fields, output


def assert_sandbox_down(state_dir: Path) -> None:
    assert not (state_dir / "sandbox" / "state.json").exists(), "the demo left its sandbox up"


def test_make_demo_routes_every_message_where_it_must_go(tmp_path: Path) -> None:
    code, verdict, output = run_demo(tmp_path / "demo")
    assert verdict == {
        "sent": "36",
        # phase 1: carol; phase 2: carol + alice's leftovers by alice; phase 3: all 12
        "delivered.workload": "21",
        # phase 1: alice and pair (alice's session started first)
        "delivered.alice": "6",
        # phase 1: bob; phase 2: bob + alice's leftovers by pair
        "delivered.bob": "9",
        "lost": "0",
        "duplicated": "0",
        "misrouted": "0",
        "temporary_left": "0",
        "env_restored": "yes",
        "result": "PASS",
    }, output
    assert code == 0, output
    # the live view showed each leftover routed again, and the hand-back
    assert output.count("(leftover of alice's session, routed again)") == 6, output
    assert "alice: pymirror exec exited 0: session ended" in output
    assert "bob: pymirror exec exited 0: session ended" in output
    assert "hand-back of shop-orders-queue-" in output
    assert_sandbox_down(tmp_path / "demo")


def test_a_consumer_that_drops_a_message_makes_the_demo_fail(tmp_path: Path) -> None:
    code, verdict, output = run_demo(tmp_path / "demo", PYMIRROR_DEMO_FAULT_DROP="bob")
    assert code == 1, output
    assert verdict["result"] == "FAIL"
    assert (verdict["sent"], verdict["lost"], verdict["delivered.bob"]) == ("36", "1", "8")
    assert (verdict["duplicated"], verdict["misrouted"], verdict["temporary_left"]) == (
        "0",
        "0",
        "0",
    )
    assert "the queues are empty and nobody received m1" in output
    assert_sandbox_down(tmp_path / "demo")
