"""Shaping temporary topics like the original (splitter/kafka/topics.py, the pure parts)."""

from __future__ import annotations

import pytest

from splitter.kafka.topics import is_temporary_name, replication_factor
from splitter.naming import DEFAULT_KAFKA_TOPIC_FORMAT, NameFormat

pytestmark = pytest.mark.unit

FORMAT = NameFormat(DEFAULT_KAFKA_TOPIC_FORMAT, "kafka")


@pytest.mark.parametrize(
    ("original", "brokers", "configured", "expected"),
    [
        (3, 5, None, 3),  # the original's, so its min.insync.replicas=2 can be met
        (3, 1, None, 1),  # capped by the live brokers
        (1, 3, None, 1),
        (3, 5, 2, 2),  # configured
        (3, 2, 4, 2),  # configured, still capped
        (0, 0, None, 1),  # never below one
    ],
)
def test_the_replication_factor_is_the_originals_or_the_configured_one_capped_by_brokers(
    original: int, brokers: int, configured: int | None, expected: int
) -> None:
    assert replication_factor(original, brokers, configured) == expected


def test_only_names_the_format_gives_a_temporary_topic_of_the_original_count_as_ours() -> None:
    fallback = FORMAT.render("orders", fallback=True)
    session = FORMAT.render("orders", fallback=False)
    assert is_temporary_name(fallback, "orders", FORMAT)
    assert is_temporary_name(session, "orders", FORMAT)
    assert not is_temporary_name("orders-fallback", "orders", FORMAT)
    assert not is_temporary_name(FORMAT.render("invoices", fallback=True), "orders", FORMAT)
    assert not is_temporary_name(fallback + "x", "orders", FORMAT)
