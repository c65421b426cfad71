"""Shared fixtures and session hooks.

Server fixtures live in tests/fixtures/*.py, one module per server kind. Every test
must be marked ``unit`` or ``integration``; servers a killed earlier run left behind
are stopped at session start.
"""

from __future__ import annotations

import uuid

import pytest

from tests.servers.process import reap_orphans

pytest_plugins: list[str] = [
    "tests.fixtures.sqs",
    "tests.fixtures.kafka",
    "tests.fixtures.helm",
    "tests.fixtures.kube",
    "tests.fixtures.capture",
]


@pytest.fixture
def unique_name() -> str:
    """A short name unique to this test, for queues, topics and Kubernetes objects."""
    return f"t{uuid.uuid4().hex[:12]}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop test servers that an earlier, killed test run left behind (see reap_orphans)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for line in reap_orphans():
        if reporter is not None:
            reporter.write_line(f"stopped an orphaned test server: {line}", yellow=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test is marked ``unit`` or ``integration``, so ``make unit`` misses none."""
    kinds = ("unit", "integration")
    unmarked = [i.nodeid for i in items if not any(i.get_closest_marker(k) for k in kinds)]
    if unmarked:
        raise pytest.UsageError(
            "tests without a unit/integration marker (set pytestmark in the module): "
            + ", ".join(unmarked[:10])
            + (f" and {len(unmarked) - 10} more" if len(unmarked) > 10 else "")
        )
