"""From options and config to the session to create: target, namespace, apiVersion, owner."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pymirror.client.config import parse_config
from pymirror.client.main import ExecOptions, build_plan
from pymirror.errors import ConfigError
from pymirror.operator.settings import OperatorSettings
from pymirror.settings import Settings

pytestmark = pytest.mark.unit

QUEUES = {"split_queues": {"q": {"queue_type": "SQS", "message_filter": {"a": "b"}}}}


@pytest.fixture
def kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    doc = {
        "current-context": "dev",
        "contexts": [
            {"name": "dev", "context": {"user": "alice@corp", "namespace": "ctx-ns"}},
            {"name": "bare", "context": {"user": "bob"}},
        ],
    }
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def plan_of(
    file_target: object, kubeconfig: str, **options: object
) -> tuple[str, dict[str, object]]:
    doc = {"feature": QUEUES, **({"target": file_target} if file_target is not None else {})}
    plan = build_plan(
        ExecOptions(kubeconfig=kubeconfig, **options),  # type: ignore[arg-type]
        parse_config(doc),
        Settings(),
    )
    return plan.namespace, dict(plan.body["spec"])


def test_the_namespace_flag_wins_then_the_target_then_the_context(kubeconfig: str) -> None:
    target = {"path": "deployment/app", "namespace": "file-ns"}
    assert plan_of(target, kubeconfig, namespace="flag-ns")[0] == "flag-ns"
    assert plan_of(target, kubeconfig)[0] == "file-ns"
    assert plan_of("deployment/app", kubeconfig)[0] == "ctx-ns"
    assert plan_of("deployment/app", kubeconfig, context="bare")[0] == "default"


def test_the_target_flag_replaces_the_path_and_keeps_the_files_namespace(
    kubeconfig: str,
) -> None:
    target = {"path": "deployment/app", "namespace": "file-ns"}
    namespace, spec = plan_of(target, kubeconfig, target="sts/db/container/main")
    assert namespace == "file-ns"
    assert spec["target"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "db",
        "container": "main",
    }
    assert plan_of(None, kubeconfig, target="rollout/web")[1]["target"] == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "name": "web",
    }


def test_no_target_anywhere_is_an_error(kubeconfig: str) -> None:
    with pytest.raises(ConfigError, match=r"no target: .* or pass --target deployment/NAME"):
        plan_of(None, kubeconfig)


def test_the_api_version_and_owner_come_from_the_settings_and_the_kubeconfig(
    kubeconfig: str,
) -> None:
    settings = Settings(operator=OperatorSettings(workload_kinds={"Deployment": "apps.x.test/v1"}))
    plan = build_plan(
        ExecOptions(kubeconfig=kubeconfig, context="bare", lease_seconds=9),
        parse_config({"target": "deploy/app", "feature": QUEUES}),
        settings,
    )
    spec = plan.body["spec"]
    assert spec["target"]["apiVersion"] == "apps.x.test/v1"
    assert spec["owner"]["k8sUsername"] == "bob"
    assert spec["leaseSeconds"] == plan.lease_seconds == 9
    assert plan.name.startswith("exec-")
