"""The pure parts of SQS forwarding: the release delay (splitter/sqs/forwarding.py) and
how a FIFO outbox cuts batches that keep per-group order (splitter/sqs/batching.py)."""

from __future__ import annotations

from typing import Any

import pytest

from splitter.sqs.batching import BATCH_ENTRIES, Outbox, entry_size, forward_entry
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


def _outbox(groups: str) -> Outbox:
    """An outbox of FIFO entries m0, m1, ... in the groups named by ``groups`` (one letter
    per entry)."""
    outbox = Outbox()
    for n, group in enumerate(groups):
        message = {"MessageId": f"id{n}", "Body": "b", "Attributes": {"MessageGroupId": group}}
        entry = forward_entry(message, f"m{n}", fifo=True)
        outbox.entries.append((entry, message, "s"))
        outbox.size += entry_size(entry)
    return outbox


def _ids(entries: list[tuple[dict[str, Any], Any, str]]) -> list[str]:
    return [entry["Id"] for entry, _held, _label in entries]


def test_a_fifo_batch_takes_one_entry_per_group_in_order_and_leaves_the_rest_waiting() -> None:
    outbox = _outbox("aabcab")
    assert _ids(outbox.take_fifo()) == ["m0", "m2", "m3"]
    assert _ids(outbox.entries) == ["m1", "m4", "m5"]
    assert _ids(outbox.take_fifo()) == ["m1", "m5"]
    assert _ids(outbox.take_fifo()) == ["m4"]
    assert outbox.entries == []
    assert outbox.size == 0


def test_a_fifo_batch_never_passes_an_entry_of_a_group_left_behind_by_the_size_limit() -> None:
    outbox = _outbox("ab" * 8)  # 16 entries, two groups: 2 per batch
    batches = []
    while outbox.entries:
        batches.append(_ids(outbox.take_fifo()))
    assert batches == [[f"m{2 * k}", f"m{2 * k + 1}"] for k in range(8)]


def test_a_failed_fifo_group_takes_its_waiting_successors_out_together() -> None:
    outbox = _outbox("abab")
    outbox.take_fifo()
    assert _ids(outbox.take_group("a")) == ["m2"]
    assert _ids(outbox.entries) == ["m3"]
    assert outbox.size == entry_size(outbox.entries[0][0])


def test_more_than_ten_groups_make_more_than_one_batch() -> None:
    outbox = _outbox("abcdefghijkl")
    assert len(outbox.take_fifo()) == BATCH_ENTRIES
    assert _ids(outbox.entries) == ["m10", "m11"]
