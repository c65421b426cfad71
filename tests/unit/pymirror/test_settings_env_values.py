"""Settings: what an environment variable set to "" or to null/none means (pymirror/settings.py).

"" counts as not set (the default stays); null/none in any case is None: the "no value"
of an optional setting, refused with a ConfigError by a setting that needs a value.
"""

from __future__ import annotations

import pytest

from pymirror.errors import ConfigError
from pymirror.settings import load_settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value", ["", "null", "none", "NULL", "None", " none "])
def test_an_empty_or_null_optional_setting_is_none(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PYMIRROR_SQS__VISIBILITY_TIMEOUT", value)
    monkeypatch.setenv("PYMIRROR_KAFKA__TOPIC_REPLICATION_FACTOR", value)
    settings = load_settings()
    assert settings.sqs.visibility_timeout is None
    assert settings.kafka.topic_replication_factor is None


def test_a_value_still_sets_an_optional_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYMIRROR_SQS__VISIBILITY_TIMEOUT", "45")
    assert load_settings().sqs.visibility_timeout == 45


def test_empty_keeps_the_default_and_null_turns_an_optional_setting_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker metrics port defaults to 9400: "" keeps it, null means no metrics."""
    monkeypatch.setenv("PYMIRROR_OPERATOR__WORKER_METRICS_PORT", "")
    assert load_settings().operator.worker_metrics_port == 9400
    monkeypatch.setenv("PYMIRROR_OPERATOR__WORKER_METRICS_PORT", "null")
    assert load_settings().operator.worker_metrics_port is None


def test_empty_keeps_the_default_of_a_setting_that_needs_a_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = load_settings()
    monkeypatch.setenv("PYMIRROR_SQS__RECEIVERS", "")
    monkeypatch.setenv("PYMIRROR_OPERATOR__NAMESPACE", "")
    monkeypatch.setenv("PYMIRROR_LOG__LEVEL", "")
    monkeypatch.setenv("OPERATOR_SQS_SPLITTING", "")
    settings = load_settings()
    assert settings.sqs.receivers == default.sqs.receivers
    assert settings.operator.namespace == default.operator.namespace == "pymirror-system"
    assert settings.log.level == "info"
    assert settings.operator.sqs_splitting == default.operator.sqs_splitting


def test_an_empty_endpoint_url_is_aws_not_an_empty_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYMIRROR_SQS__ENDPOINT_URL", "")
    assert load_settings().sqs.endpoint_url is None


@pytest.mark.parametrize(
    ("variable", "named"),
    [
        ("PYMIRROR_SQS__RECEIVERS", "sqs.receivers"),
        ("PYMIRROR_OPERATOR__NAMESPACE", "operator.namespace"),
        ("PYMIRROR_OPERATOR__SESSION_NAMESPACES", "operator.session_namespaces"),
    ],
)
def test_null_for_a_setting_that_needs_a_value_is_a_config_error_saying_so(
    monkeypatch: pytest.MonkeyPatch, variable: str, named: str
) -> None:
    monkeypatch.setenv(variable, "null")
    with pytest.raises(ConfigError, match="invalid settings") as caught:
        load_settings()
    message = str(caught.value)
    assert named in message
    assert "null/none, which means no value" in message
    assert "unset the variable for its default" in message


def test_a_value_that_merely_contains_null_is_not_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYMIRROR_OPERATOR__NAMESPACE", "nullspace")
    assert load_settings().operator.namespace == "nullspace"
