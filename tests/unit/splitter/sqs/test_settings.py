"""SQS settings (splitter/sqs/settings.py): the one home of every SQS default."""

from __future__ import annotations

import pydantic
import pytest

from splitter.sqs.settings import SqsSettings

pytestmark = pytest.mark.unit


def test_every_field_has_a_description_long_enough_to_give_its_unit_or_reason() -> None:
    for name, field in SqsSettings.model_fields.items():
        assert field.description, name
        assert len(field.description) >= 20, name


def test_the_worker_tunables_live_here_with_the_defaults_the_worker_had() -> None:
    s = SqsSettings()
    assert (s.receivers, s.wait_seconds, s.visibility_timeout, s.linger) == (4, 20, None, 0.02)
    assert (s.backlog_linger, s.max_in_hand, s.batch_calls, s.retry_for) == (1.0, 1000, 16, 30.0)
    assert (s.shutdown_grace, s.drain_timeout, s.drain_poll) == (10.0, None, 1.0)
    assert (s.session_end_warn_after, s.delete_linger) == (120.0, 0.0)


def test_flags_override_through_model_copy_leaving_the_rest() -> None:
    base = SqsSettings(linger=0.1)
    flags = {"receivers": 2, "wait_seconds": None, "drain_timeout": 0.0}
    copy = base.model_copy(update={k: v for k, v in flags.items() if v is not None})
    assert (copy.receivers, copy.wait_seconds, copy.drain_timeout) == (2, 20, 0.0)
    assert copy.linger == 0.1
    assert base.receivers == 4


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("visibility_timeout", 43201),
        ("visibility_timeout", -1),
        ("retry_for", 0),
        ("drain_poll", 0),
        ("session_end_warn_after", -1),
        ("backlog_linger", 0),
        ("batch_calls", 0),
    ],
)
def test_out_of_range_values_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        SqsSettings(**{field: value})
