"""Shared fixtures. Server fixtures live in tests/fixtures/*.py, one module per server kind."""

from __future__ import annotations

import uuid

import pytest

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
