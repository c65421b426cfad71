"""Which topic configs a temporary topic copies (splitter/kafka/admin.py)."""

from __future__ import annotations

import pytest

from splitter.kafka.admin import _non_default

pytestmark = pytest.mark.unit

DEFAULT, TOPIC = 5, 1


def test_entries_set_on_the_topic_are_kept_read_only_and_defaults_dropped() -> None:
    entries = [
        ("retention.ms", "3600000", False, TOPIC),
        ("cleanup.policy", "compact", False, TOPIC),
        ("segment.bytes", "1073741824", False, DEFAULT),
        ("message.format.version", "3.0", True, TOPIC),
        ("min.insync.replicas", None, False, TOPIC),
    ]
    assert _non_default(entries) == {"retention.ms": "3600000", "cleanup.policy": "compact"}


def test_a_short_all_default_answer_is_taken_as_set_on_the_topic() -> None:
    # Tansu 0.6: only the topic's own configs, every one marked as a default.
    entries = [("retention.ms", "60000", False, DEFAULT), ("x.ro", "1", True, DEFAULT)]
    assert _non_default(entries) == {"retention.ms": "60000"}


def test_a_full_default_table_copies_nothing() -> None:
    entries = [(f"config.{i}", str(i), False, DEFAULT) for i in range(20)]
    assert _non_default(entries) == {}
