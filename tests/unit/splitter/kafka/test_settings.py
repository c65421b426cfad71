"""Kafka settings: the one home of every Kafka default (splitter/kafka/settings.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from splitter.kafka.settings import KafkaSettings

pytestmark = pytest.mark.unit


def test_every_setting_documents_itself() -> None:
    for name, field in KafkaSettings.model_fields.items():
        assert field.description, name
        assert len(field.description) > 30, name  # a unit and a why, not just a label


def test_defaults_are_the_production_values() -> None:
    s = KafkaSettings()
    assert (s.commit_interval, s.max_uncommitted, s.fetch_max_records) == (0.2, 10_000, 500)
    assert (s.fetch_timeout_ms, s.flush_timeout, s.drain_timeout) == (200, 20.0, None)
    assert (s.join_attempts, s.join_backoff, s.join_backoff_max) == (3, 1.0, 10.0)
    assert (s.retry_backoff, s.retry_backoff_max) == (0.2, 5.0)
    assert (s.lag_poll_interval, s.end_probe_ms) == (0.5, 300)


@pytest.mark.parametrize(
    "bad",
    [
        {"commit_interval": 0},
        {"max_uncommitted": 0},
        {"fetch_timeout_ms": 0},
        {"flush_timeout": -1},
        {"join_attempts": 0},
        {"drain_timeout": -1},
        {"end_probe_ms": 0},
        {"lag_poll_interval": 0},
    ],
)
def test_out_of_range_values_are_refused_with_their_name(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError) as info:
        KafkaSettings.model_validate(bad)
    assert next(iter(bad)) in str(info.value)


def test_a_cli_flag_overrides_one_setting_and_keeps_the_rest() -> None:
    base = KafkaSettings(commit_interval=0.1)
    tuned = base.model_copy(update={"drain_timeout": 0.0})
    assert tuned.drain_timeout == 0.0
    assert tuned.commit_interval == 0.1
    assert base.drain_timeout is None
