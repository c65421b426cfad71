"""Queue names read back against a temporary-name format (splitter/sqs/queue_names.py)."""

from __future__ import annotations

import pytest

from splitter.naming import DEFAULT_SQS_QUEUE_FORMAT, NameFormat
from splitter.sqs.queue_names import matches_format

pytestmark = pytest.mark.unit


# --- names ----------------------------------------------------------------------


@pytest.mark.parametrize("fallback", [True, False])
@pytest.mark.parametrize(
    "original", ["orders", "orders.fifo", "fallback-x", "a" * 80, "x" * 75 + ".fifo"]
)
def test_rendered_names_match_their_format_and_original(original: str, fallback: bool) -> None:
    name_format = NameFormat(DEFAULT_SQS_QUEUE_FORMAT, "sqs")
    name = name_format.render(original, fallback=fallback)
    assert matches_format(name, name_format, original)


@pytest.mark.parametrize(
    ("name", "original"),
    [
        ("mirrord-tmp-0123456789-orders", "payments"),
        ("mirrord-tmp-0123456789-orders.fifo", "orders"),
        ("mirrord-tmp-0123456789-orders", "orders.fifo"),
        ("mirrord-tmp-012345678-orders", "orders"),
        ("mirrord-tmp-0123456789-", "orders"),
        ("orders", "orders"),
        ("other-0123456789-orders", "orders"),
        ("mirrord-tmp-0123456789-orders-dlq", "orders"),
    ],
)
def test_names_not_rendered_for_the_original_do_not_match(name: str, original: str) -> None:
    assert not matches_format(name, NameFormat(DEFAULT_SQS_QUEUE_FORMAT, "sqs"), original)


def test_a_format_with_the_original_first_matches_its_names() -> None:
    name_format = NameFormat("{{ORIGINAL_QUEUE}}{{FALLBACK}}{{RANDOM}}_tmp", "sqs")
    assert matches_format("orders-fallback-0123456789_tmp", name_format, "orders")
    assert matches_format("ord-er-s-0123456789_tmp", name_format, "ord-er-s")
    assert not matches_format("orders-0123456789_tmp", name_format, "order")
