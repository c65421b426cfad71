"""The pure part of SQS forwarding (splitter/sqs/forwarding.py): the release delay."""

from __future__ import annotations

import pytest

from splitter.sqs.forwarding import release_delay

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("receives", "seconds"), [(0, 2), (1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (100, 60)]
)
def test_a_failed_message_waits_longer_the_more_often_it_was_received(
    receives: int, seconds: int
) -> None:
    """2 s doubling per receive, at most 60 s (as ``min(2**receives, 60)`` did)."""
    assert release_delay(receives) == seconds
