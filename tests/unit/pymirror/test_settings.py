"""Settings: PYMIRROR_* variables, mirrord's operator names, bad values fail at start-up."""

from __future__ import annotations

import json

import pytest

from pymirror.cli import main
from pymirror.errors import ConfigError
from pymirror.settings import load_settings

pytestmark = pytest.mark.unit


def test_nested_variables_set_a_group_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYMIRROR_SQS__DRAIN_TIMEOUT", "60")
    monkeypatch.setenv("PYMIRROR_KAFKA__COMMIT_INTERVAL", "0.5")
    settings = load_settings()
    assert settings.sqs.drain_timeout == 60
    assert settings.kafka.commit_interval == 0.5


def test_mirrords_operator_variables_set_the_name_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "OPERATOR_SQS_SPLITTING_QUEUE_FORMAT", "dev-{{ORIGINAL_QUEUE}}{{FALLBACK}}{{RANDOM}}"
    )
    monkeypatch.setenv(
        "OPERATOR_KAFKA_SPLITTING_TOPIC_FORMAT", "dev.{{RANDOM}}{{FALLBACK}}{{ORIGINAL_TOPIC}}"
    )
    settings = load_settings()
    assert settings.sqs.name_format.render("q", fallback=True, random_digits="0" * 10) == (
        "dev-q-fallback-0000000000"
    )
    assert settings.kafka.name_format.render("t", fallback=False, random_digits="1" * 10) == (
        "dev.1111111111-t"
    )


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("OPERATOR_SQS_SPLITTING_QUEUE_FORMAT", "x-{{RANDOM}}", "lacks {{FALLBACK}}"),
        ("PYMIRROR_SQS__QUEUE_FORMAT", "a.{{RANDOM}}{{FALLBACK}}{{ORIGINAL_QUEUE}}", "'.'"),
        ("PYMIRROR_SQS__RECEIVERS", "0", "sqs.receivers"),
        ("PYMIRROR_SQS__WAIT_SECONDS", "21", "sqs.wait_seconds"),
        ("OPERATOR_KAFKA_SPLITTING_TOPIC_FORMAT", "{{RANDOM}}{{ORIGINAL_TOPIC}}", "{{FALLBACK}}"),
    ],
)
def test_bad_values_are_a_config_error_naming_the_problem(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match="invalid settings") as caught:
        load_settings()
    assert named in str(caught.value)


def test_a_bad_setting_exits_2_with_the_error_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PYMIRROR_SQS__RECEIVERS", "-1")
    assert main(["info"]) == 2
    assert capsys.readouterr().err.startswith("ConfigError: invalid settings: sqs.receivers")


def test_info_prints_the_effective_settings_as_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PYMIRROR_SQS__LINGER", "0.1")
    assert main(["info", "--settings"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["sqs"]["linger"] == 0.1
    assert "operator_sqs_queue_format" not in shown
