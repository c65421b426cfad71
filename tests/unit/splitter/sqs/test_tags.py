"""Tags of temporary SQS queues (splitter/sqs/tags.py)."""

from __future__ import annotations

import pytest

from splitter.errors import SqsError
from splitter.sqs.tags import bookkeeping_tags, temporary_tags

pytestmark = pytest.mark.unit


# --- tags -----------------------------------------------------------------------


def test_registry_tags_win_over_the_original_and_bookkeeping_wins_over_both() -> None:
    bookkeeping = bookkeeping_tags("orders", fallback=False, session="alice")
    got = temporary_tags(
        {"team": "payments", "env": "dev", "pymirror.dev/session": "forged", "aws:created": "x"},
        {"env": "shared", "cost-center": "42"},
        bookkeeping,
    )
    assert got == {
        "team": "payments",
        "env": "shared",
        "cost-center": "42",
        "pymirror.dev/created-by": "pymirror",
        "pymirror.dev/original-queue": "orders",
        "pymirror.dev/session": "alice",
    }


def test_bookkeeping_marks_the_fallback_queue() -> None:
    assert bookkeeping_tags("orders.fifo", fallback=True, session=None) == {
        "pymirror.dev/created-by": "pymirror",
        "pymirror.dev/original-queue": "orders.fifo",
        "pymirror.dev/fallback": "true",
    }


def test_a_session_queue_records_its_mode_so_a_resumed_end_knows_copies_from_owned() -> None:
    tags = bookkeeping_tags("orders", fallback=False, session="alice", mode="mirror")
    assert tags["pymirror.dev/session"] == "alice"
    assert tags["pymirror.dev/mode"] == "mirror"
    assert "pymirror.dev/mode" not in bookkeeping_tags("orders", fallback=False, session="a")


@pytest.mark.parametrize(("fallback", "session"), [(True, "alice"), (False, None)])
def test_a_queue_is_either_the_fallback_or_a_sessions(fallback: bool, session: str | None) -> None:
    with pytest.raises(ValueError, match="either the fallback or a session's"):
        bookkeeping_tags("orders", fallback=fallback, session=session)


def test_exactly_fifty_tags_are_allowed() -> None:
    bookkeeping = bookkeeping_tags("orders", fallback=True, session=None)
    original = {f"k{i}": "v" for i in range(47)}
    assert len(temporary_tags(original, None, bookkeeping)) == 50


def test_fifty_one_tags_fail_with_the_count_and_the_fix() -> None:
    bookkeeping = bookkeeping_tags("orders", fallback=True, session=None)
    original = {f"k{i}": "v" for i in range(40)}
    registry = {f"r{i}": "v" for i in range(8)}
    with pytest.raises(SqsError) as caught:
        temporary_tags(original, registry, bookkeeping)
    assert str(caught.value) == (
        "a temporary queue would get 51 tags (40 from the original, 8 from the registry, "
        "3 of pymirror's own; overlaps counted once) but SQS allows 50; remove 1 from the "
        "original queue or the registry's tags"
    )


def test_overlapping_tags_count_once() -> None:
    bookkeeping = bookkeeping_tags("orders", fallback=True, session=None)
    original = {f"k{i}": "v" for i in range(47)}
    registry = {f"k{i}": "w" for i in range(47)}
    assert len(temporary_tags(original, registry, bookkeeping)) == 50


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"k" * 129: "v"}, "has 129 characters; SQS allows 1 to 128"),
        ({"big": "v" * 257}, "tag 'big' has a 257-character value; SQS allows 256"),
    ],
)
def test_tags_longer_than_sqs_allows_fail_with_the_limit(
    tags: dict[str, str], message: str
) -> None:
    with pytest.raises(SqsError, match=message):
        temporary_tags({}, tags, {})
