"""OperatorSettings: defaults, PYMIRROR_OPERATOR__* and mirrord's names, kinds as data,
the worker's grace period checked against the worker's shutdown bound."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pymirror.errors import ConfigError
from pymirror.operator.settings import EXIT_MARGIN, OperatorSettings, worker_shutdown_bound
from pymirror.settings import load_settings
from registry.resources import Resource
from registry.workloads import WorkloadKinds

pytestmark = pytest.mark.unit


def test_the_defaults_are_the_production_ones() -> None:
    settings = OperatorSettings()
    assert settings.namespace == "pymirror-system"
    assert settings.sqs_splitting
    assert settings.kafka_splitting
    assert settings.workload_restart_timeout == 120.0
    assert settings.gc_interval == 300.0
    assert settings.session_namespaces == []  # every namespace
    assert settings.gc_queues
    assert settings.worker_command == ["pymirror"]
    assert settings.worker_replicas == 1
    assert settings.worker_service_account == "pymirror-worker"
    assert settings.kinds() == WorkloadKinds()
    assert settings.workload_kinds.kinds() == WorkloadKinds()
    config = settings.config_kinds.kinds()
    assert config.secret == Resource("", "v1", "secrets")
    assert config.config_map == Resource("", "v1", "configmaps")
    assert settings.worker_resource() == Resource("apps", "v1", "deployments")


def test_the_group_is_read_from_pymirror_operator_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYMIRROR_OPERATOR__NAMESPACE", "mirrord")
    monkeypatch.setenv("PYMIRROR_OPERATOR__WORKER_ENV", '{"AWS_ENDPOINT_URL": "http://sqs:4566"}')
    monkeypatch.setenv(
        "PYMIRROR_OPERATOR__WORKER_COMMAND", '["/venv/bin/python", "-m", "pymirror"]'
    )
    monkeypatch.setenv(
        "PYMIRROR_OPERATOR__WORKLOAD_KINDS", '{"deployment": "apps.pymirror.test/v1"}'
    )
    monkeypatch.setenv("PYMIRROR_OPERATOR__CONFIG_KINDS", '{"Secret": "core.pymirror.test/v1"}')
    operator = load_settings().operator
    assert operator.namespace == "mirrord"
    assert operator.worker_env == {"AWS_ENDPOINT_URL": "http://sqs:4566"}
    assert operator.worker_command == ["/venv/bin/python", "-m", "pymirror"]
    kinds = operator.kinds()
    assert kinds.deployment == Resource("apps.pymirror.test", "v1", "deployments")
    assert kinds.stateful_set == Resource("apps", "v1", "statefulsets")  # not named: default
    assert operator.worker_resource() == kinds.deployment
    config = operator.config_kinds.kinds()
    assert config.secret == Resource("core.pymirror.test", "v1", "secrets")
    assert config.config_map == Resource("", "v1", "configmaps")


@pytest.mark.parametrize(
    ("value", "expected"), [("false", False), ("true", True), ("False", False)]
)
def test_mirrords_splitting_switches_win(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("PYMIRROR_OPERATOR__SQS_SPLITTING", str(not expected).lower())
    monkeypatch.setenv("OPERATOR_SQS_SPLITTING", value)
    monkeypatch.setenv("OPERATOR_KAFKA_SPLITTING", value)
    settings = load_settings()
    assert settings.operator.sqs_splitting is expected
    assert settings.operator.kafka_splitting is expected
    assert "operator_sqs_splitting" not in settings.model_dump()


def test_the_grace_period_must_exceed_the_workers_shutdown_bound() -> None:
    bound = worker_shutdown_bound({})
    assert bound == 20.0  # sqs.wait_seconds (a long poll is finished) and kafka.flush_timeout
    OperatorSettings(worker_grace_seconds=int(bound + EXIT_MARGIN))
    with pytest.raises(ValidationError) as caught:
        OperatorSettings(worker_grace_seconds=int(bound + EXIT_MARGIN) - 1)
    message = str(caught.value)
    assert "worker_grace_seconds is 24 s but a worker may take 20 s to stop" in message
    assert "PYMIRROR_OPERATOR__WORKER_GRACE_SECONDS to at least 25" in message


def test_the_bound_is_the_one_worker_env_gives_the_worker() -> None:
    env = {"PYMIRROR_SQS__SHUTDOWN_GRACE": "50", "pymirror_kafka__flush_timeout": "3"}
    assert worker_shutdown_bound(env) == 50.0
    assert worker_shutdown_bound({"PYMIRROR_KAFKA__FLUSH_TIMEOUT": "42"}) == 42.0
    assert worker_shutdown_bound({"PYMIRROR_SQS__WAIT_SECONDS": "1"}) == 20.0  # flush_timeout
    with pytest.raises(ValidationError, match=r"worker_grace_seconds is 30 s .* 50 s"):
        OperatorSettings(worker_env=env)
    assert OperatorSettings(worker_env=env, worker_grace_seconds=60).worker_grace_seconds == 60
    lower = {"PYMIRROR_SQS__WAIT_SECONDS": "2", "PYMIRROR_KAFKA__FLUSH_TIMEOUT": "2"}
    assert OperatorSettings(worker_env=lower, worker_grace_seconds=16).worker_env == lower


def test_an_invalid_worker_setting_in_worker_env_is_named() -> None:
    with pytest.raises(
        ValidationError, match="invalid worker setting: PYMIRROR_SQS__WAIT_SECONDS='99'"
    ):
        OperatorSettings(worker_env={"PYMIRROR_SQS__WAIT_SECONDS": "99"})


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("workload_kinds", {"Job": "batch/v1"}, "unknown workload kind 'Job'"),
        ("workload_kinds", {"Deployment": "apps"}, "expected GROUP/VERSION"),
        ("config_kinds", {"Pod": "v1"}, "unknown config kind 'Pod'"),
        ("config_kinds", {"Secret": "a/b/c"}, "expected GROUP/VERSION"),
        ("worker_resources", {"request": {"cpu": "1"}}, "unknown key(s) request"),
        ("worker_replicas", 0, "worker_replicas"),
        ("worker_command", [], "worker_command"),
        ("session_namespaces", ["Shop"], "not a namespace name: 'Shop'"),
        ("session_namespaces", [""], "not a namespace name: ''"),
    ],
)
def test_bad_values_are_refused_naming_the_problem(field: str, value: object, named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        OperatorSettings.model_validate({field: value})
    assert named in str(caught.value)


def test_a_bad_operator_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYMIRROR_OPERATOR__WORKER_GRACE_SECONDS", "10")
    with pytest.raises(ConfigError, match=r"invalid settings: operator: .*worker_grace_seconds"):
        load_settings()


def test_session_namespaces_come_from_the_environment_as_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYMIRROR_OPERATOR__SESSION_NAMESPACES", '["shop", "billing", "shop"]')
    assert load_settings().operator.session_namespaces == ["shop", "billing"]  # once each


def test_the_operator_command_watches_the_flags_then_the_setting_then_everything() -> None:
    from pymirror.commands.operator import session_namespaces
    from pymirror.settings import Settings

    listed = Settings(operator=OperatorSettings(session_namespaces=["shop", "billing"]))
    assert session_namespaces(["a", "b", "a"], listed) == ["a", "b"]  # the flags win
    assert session_namespaces([], listed) == ["shop", "billing"]  # then the setting
    assert session_namespaces([], Settings()) == []  # then every namespace


def test_an_empty_namespace_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from pymirror.cli import main

    assert main(["operator", "--namespace", ""]) == 2
    assert "--namespace needs a namespace name" in capsys.readouterr().err
