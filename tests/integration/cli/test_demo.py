"""The README's main command: ``pymirror demo`` on its embedded SQS endpoint."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

#: Seconds the demo may run: a hang guard only (it takes ~10 s on a quiet 2-core machine).
HANG_GUARD = 300


@pytest.mark.timeout(HANG_GUARD + 60)
def test_demo_delivers_every_message_once_and_cleans_up_its_queues() -> None:
    """Run the demo as a user would (no server of ours running) and read its verdict."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pymirror",
            "demo",
            "--embedded",
            "--messages",
            "24",
            "--rate",
            "50",
        ],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    out = " ".join(done.stdout.split())  # rich wraps long lines
    assert done.returncode == 0, out + done.stderr
    assert "sent 30, delivered 30" in out
    assert "lost 0, duplicated 0, misrouted 0; temporary queues left 0" in out
    assert "re-routed 6" in out
    for consumer in ("alice", "beginners", "workload"):
        assert f"-> {consumer}" in out
