"""Named kill points in the operator: a test hook for crash recovery (kill -9 at a step).

The operator's steps call ``fault_point("<name>")`` right after a step whose effect is
written and before the next one. When the environment variable
``PYMIRROR_OPERATOR_KILL_AT`` equals that name, the process logs ``fault point reached``
and sends itself SIGKILL: a real ``kill -9`` at a named step, reached by the code path
rather than by timing. Otherwise a call costs one comparison (the variable is read once,
at import)::

    PYMIRROR_OPERATOR_KILL_AT=env-patched pymirror operator --namespace team-a

tests/integration/operator/test_recovery.py runs the operator like that at every point in
``POINTS``, restarts it without the variable and checks the end state equals a clean
run's. Never set the variable in production: the operator dies at the first point named.
"""

from __future__ import annotations

import os
import signal

import structlog

log = structlog.get_logger("pymirror.operator.fault_points")

#: The environment variable naming the point to die at.
KILL_AT_VAR = "PYMIRROR_OPERATOR_KILL_AT"
#: Every point the operator's code calls, in the order a session meets them.
POINTS = (
    "split-created",
    "session-queue-recorded",
    "session-queue-created",
    "fallback-recorded",
    "fallback-created",
    "env-patched",
    "worker-created",
    "route-added",
    "session-ready",
    "route-removed",
    "env-restored",
)

_KILL_AT = os.environ.get(KILL_AT_VAR) or None


def fault_point(name: str) -> None:
    """SIGKILL this process if ``PYMIRROR_OPERATOR_KILL_AT`` (read at import) is ``name``."""
    if name == _KILL_AT:
        log.warning("fault point reached", point=name, pid=os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)
