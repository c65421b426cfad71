"""Shared fixtures and session hooks.

Server fixtures live in tests/fixtures/*.py, one module per server kind. Every test
must be marked ``unit`` or ``integration``; servers a killed earlier run left behind
are stopped at session start. Timeouts per test: a unit test gets
``UNIT_TIMEOUT`` seconds (it touches no network: more means a hang), an
integration test the ini's ``timeout`` unless it sets its own
``pytest.mark.timeout``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import structlog

from tests.servers.process import reap_orphans

pytest_plugins: list[str] = [
    "tests.fixtures.sqs",
    "tests.fixtures.kafka",
    "tests.fixtures.helm",
    "tests.fixtures.kube",
    "tests.fixtures.capture",
]


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """A test that runs the CLI configures structlog to print to the stderr pytest captured
    for it; later tests must not log into that closed file."""
    yield
    structlog.reset_defaults()


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


#: Seconds a unit test may take: they run in milliseconds; a few seconds only on a busy machine.
UNIT_TIMEOUT = 10


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test is marked ``unit`` or ``integration``, so ``make unit`` misses none; unit
    tests get ``UNIT_TIMEOUT``."""
    kinds = ("unit", "integration")
    for item in items:
        if item.get_closest_marker("unit") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT))
    unmarked = [i.nodeid for i in items if not any(i.get_closest_marker(k) for k in kinds)]
    if unmarked:
        raise pytest.UsageError(
            "tests without a unit/integration marker (set pytestmark in the module): "
            + ", ".join(unmarked[:10])
            + (f" and {len(unmarked) - 10} more" if len(unmarked) > 10 else "")
        )
