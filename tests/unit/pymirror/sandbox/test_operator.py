"""The sandbox's operator settings, argv and readiness (pymirror/sandbox/operator.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pymirror.sandbox.errors import SandboxError
from pymirror.sandbox.operator import (
    operator_argv,
    operator_env,
    operator_settings,
    operator_started,
)
from pymirror.settings import Settings

pytestmark = pytest.mark.unit

CLIENT_ENV = {"KUBECONFIG": "/state/kubeconfig", "PYMIRROR_SQS__ENDPOINT_URL": "http://sqs"}


def test_the_settings_read_back_from_the_environment_are_the_sandboxs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    values = operator_settings("ops", CLIENT_ENV, tmp_path / "worker-state")
    for name, value in operator_env(values).items():
        monkeypatch.setenv(name, value)
    operator = Settings().operator
    assert operator.namespace == "ops"
    assert operator.worker_command == [sys.executable, "-m", "pymirror"]
    assert operator.worker_metrics_port is None
    assert operator.worker_env == {**CLIENT_ENV, "PYMIRROR_LOG__FORMAT": "json"}
    assert operator.worker_state_dir == str(tmp_path / "worker-state")
    assert operator.kinds().deployment.api_version == "apps.pymirror.test/v1"
    assert operator.kinds().resource("StatefulSet").api_version == "apps.pymirror.test/v1"
    assert operator.config_kinds.kinds().secret.api_version == "core.pymirror.test/v1"


def test_only_unset_values_go_through_the_groups_json() -> None:
    env = operator_env({"namespace": "ops", "worker_metrics_port": None, "worker_command": ["x"]})
    assert env == {
        "PYMIRROR_OPERATOR__NAMESPACE": "ops",
        "PYMIRROR_OPERATOR__WORKER_COMMAND": '["x"]',
        "PYMIRROR_OPERATOR": '{"worker_metrics_port": null}',
    }


def test_invalid_settings_fail_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match=r"operator settings are invalid(.|\n)*namespace"):
        operator_settings("", CLIENT_ENV, tmp_path)


def test_the_argv_watches_every_demo_namespace_with_json_logs() -> None:
    argv = operator_argv(Path("/s/kubeconfig"), ["demo", "shop"], 9401)
    assert argv[:3] == [sys.executable, "-m", "pymirror"]
    assert argv[3:] == [
        "--log-format",
        "json",
        "operator",
        "--kubeconfig",
        "/s/kubeconfig",
        "--metrics-port",
        "9401",
        "--namespace",
        "demo",
        "--namespace",
        "shop",
    ]


def test_ready_once_the_log_says_the_operator_is_watching(tmp_path: Path) -> None:
    log = tmp_path / "operator.log"
    assert not operator_started(log)  # no log yet
    log.write_text('not json: "operator watching"\n')
    assert not operator_started(log)
    line = {"event": "operator watching", "watches": ["splitsessions demo"]}
    log.write_text(log.read_text() + '{"event": "other"}\n' + json.dumps(line) + "\n")
    assert operator_started(log)
