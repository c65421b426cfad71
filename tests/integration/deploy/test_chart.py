"""The Helm chart (deploy/pymirror/): lint, render, schema, CRDs, the image's entrypoint.

helm is the real binary (scripts/install-helm.sh); the rendered CRDs go to the real test
API server (a server-side dry-run apply: validated and defaulted, nothing stored, so the
CRDs other tests installed are untouched).
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from pymirror.cli import build_parser
from pymirror.settings import load_settings
from tests.integration.deploy.chart import (
    CHART,
    NAMESPACE,
    Doc,
    Helm,
    container_env,
    of_kind,
    one,
    operator_container,
)
from tests.servers.kube import KubeApi
from tests.servers.process import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FLAGS = {
    "sqs": ("operator", "sqsSplitting"),
    "kafka": ("operator", "kafkaSplitting"),
    "crds": ("crds", "install"),
    "mirrordKinds": ("crds", "mirrordKinds"),
    "serviceMonitor": ("metrics", "serviceMonitor", "enabled"),
    "pdb": ("podDisruptionBudget", "enabled"),
}
MIRRORD_CRDS = {
    "mirrordworkloadqueueregistries.queues.mirrord.metalbear.co",
    "mirrordkafkatopicsconsumers.queues.mirrord.metalbear.co",
    "mirrordkafkaclientconfigs.queues.mirrord.metalbear.co",
}
PYMIRROR_CRDS = {"splitsessions.pymirror.dev", "queuesplits.pymirror.dev"}


def nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {path[-1]: value}
    for key in reversed(path[:-1]):
        out = {key: out}
    return out


def merge(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
    return out


def combinations() -> Iterator[dict[str, bool]]:
    for bits in itertools.product((False, True), repeat=len(FLAGS)):
        yield dict(zip(FLAGS, bits, strict=True))


def flag_values(flags: dict[str, bool]) -> dict[str, Any]:
    return merge(*(nested(FLAGS[name], on) for name, on in flags.items()))


@pytest.fixture
def helm(helm_bin: Path, tmp_path: Path) -> Helm:
    return Helm(helm_bin, tmp_path)


def test_lint_strict_passes_with_the_default_values(helm: Helm) -> None:
    done = helm.lint()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_every_feature_flag_combination_lints_and_renders_what_it_turns_on(helm: Helm) -> None:
    def check(flags: dict[str, bool]) -> None:
        values = flag_values(flags)
        lint = helm.lint(values)
        assert lint.returncode == 0, (flags, lint.stdout + lint.stderr)
        docs = helm.render(values)
        env = container_env(operator_container(docs))
        assert env["OPERATOR_SQS_SPLITTING"] == str(flags["sqs"]).lower()
        assert env["OPERATOR_KAFKA_SPLITTING"] == str(flags["kafka"]).lower()
        crds = {d["metadata"]["name"] for d in of_kind(docs, "CustomResourceDefinition")}
        wanted = set()
        if flags["crds"]:
            wanted = PYMIRROR_CRDS | (MIRRORD_CRDS if flags["mirrordKinds"] else set())
        assert crds == wanted, flags
        assert len(of_kind(docs, "ServiceMonitor")) == int(flags["serviceMonitor"])
        assert len(of_kind(docs, "Service")) == int(flags["serviceMonitor"])
        assert len(of_kind(docs, "PodDisruptionBudget")) == int(flags["pdb"])
        assert len(of_kind(docs, "ServiceAccount")) == 2

    # helm runs are independent processes: a few at once (each check's failure is raised)
    with ThreadPoolExecutor(max_workers=4) as pool:
        checked = list(pool.map(check, combinations()))
    assert len(checked) == 2 ** len(FLAGS)


def test_the_user_role_can_be_left_out(helm: Helm) -> None:
    def users(values: dict[str, Any]) -> list[Doc]:
        roles = of_kind(helm.render(values), "ClusterRole")
        return [d for d in roles if d["metadata"]["name"] == "pymirror-user"]

    assert len(users({})) == 1
    assert users({"rbac": {"userRole": False}}) == []


def test_metrics_service_alone_renders_a_service_on_the_metrics_port(helm: Helm) -> None:
    docs = helm.render({"metrics": {"service": True}, "operator": {"metricsPort": 9555}})
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9555, "targetPort": "metrics", "protocol": "TCP"}
    ]
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert not of_kind(docs, "ServiceMonitor")


# --- the schema ------------------------------------------------------------------------

INVALID: list[tuple[dict[str, Any], str]] = [
    (
        {"operator": {"sqsSplitting": "yes"}},
        "at '/operator/sqsSplitting': got string, want boolean",
    ),
    (
        {"operator": {"kafkaSplitting": 1}},
        "at '/operator/kafkaSplitting': got number, want boolean",
    ),
    ({"operator": {"sqsSpliting": True}}, "additional properties 'sqsSpliting' not allowed"),
    ({"bogus": 1}, "additional properties 'bogus' not allowed"),
    (
        {"operator": {"sqsSplittingQueueFormat": "tmp-{{RANDOM}}"}},
        "does not match pattern '\\\\{\\\\{FALLBACK\\\\}\\\\}'",
    ),
    (
        {"operator": {"kafkaSplittingTopicFormat": "t-{{RANDOM}}{{FALLBACK}}{{ORIGINAL_QUEUE}}"}},
        "does not match pattern '\\\\{\\\\{ORIGINAL_TOPIC\\\\}\\\\}'",
    ),
    ({"operator": {"drainTimeout": -1}}, "at '/operator/drainTimeout': minimum: got -1, want 0"),
    (
        {"operator": {"workloadRestartTimeout": 0}},
        "at '/operator/workloadRestartTimeout': exclusiveMinimum: got 0, want 0",
    ),
    ({"operator": {"metricsPort": 70000}}, "at '/operator/metricsPort': maximum: got 70,000"),
    ({"operator": {"logLevel": "loud"}}, "at '/operator/logLevel': value must be one of"),
    (
        {"operator": {"sessionNamespaces": ["Shop"]}},
        "at '/operator/sessionNamespaces/0': 'Shop' does not match pattern",
    ),
    ({"sa": {"roleArn": "my-role"}}, "at '/sa/roleArn': 'my-role' does not match pattern"),
    ({"worker": {"replicas": 0}}, "at '/worker/replicas': minimum: got 0, want 1"),
    ({"worker": {"graceSeconds": "30"}}, "at '/worker/graceSeconds': got string, want integer"),
    ({"worker": {"resources": {"request": {}}}}, "additional properties 'request' not allowed"),
    (
        {"worker": {"resources": {"limits": {"memory": "lots"}}}},
        "at '/worker/resources/limits/memory': 'lots' does not match pattern",
    ),
    ({"worker": {"metricsPort": 0}}, "at '/worker/metricsPort': minimum: got 0, want 1"),
    ({"worker": {"env": {"A": {"b": 1}}}}, "at '/worker/env/A': got object, want"),
    ({"aws": {"region": "EU"}}, "at '/aws/region': 'EU' does not match pattern"),
    ({"aws": {"sqsEndpointUrl": "localhost:4566"}}, "at '/aws/sqsEndpointUrl'"),
    ({"crds": {"install": "false"}}, "at '/crds/install': got string, want boolean"),
    (
        {"metrics": {"serviceMonitor": {"interval": "often"}}},
        "at '/metrics/serviceMonitor/interval'",
    ),
    ({"podDisruptionBudget": {"maxUnavailable": -1}}, "at '/podDisruptionBudget/maxUnavailable'"),
    ({"rbac": {"secretNamespaces": ["a", "a"]}}, "at '/rbac/secretNamespaces': items at"),
    ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of"),
]


@pytest.mark.parametrize(("values", "message"), INVALID, ids=[m for _, m in INVALID])
def test_the_schema_rejects_a_bad_value_naming_it(
    helm: Helm, values: dict[str, Any], message: str
) -> None:
    done = helm.template(values)
    assert done.returncode != 0, f"{values} was accepted"
    assert "values don't meet the specifications of the schema" in done.stderr
    assert message in done.stderr, done.stderr


def test_the_schema_accepts_a_custom_name_format_pymirror_accepts(
    helm: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue_format = "dev-{{RANDOM}}{{FALLBACK}}{{ORIGINAL_QUEUE}}"
    topic_format = "dev-{{RANDOM}}{{FALLBACK}}{{ORIGINAL_TOPIC}}"
    values = {
        "operator": {
            "sqsSplittingQueueFormat": queue_format,
            "kafkaSplittingTopicFormat": topic_format,
        }
    }
    env = container_env(operator_container(helm.render(values)))
    assert env["OPERATOR_SQS_SPLITTING_QUEUE_FORMAT"] == queue_format
    assert env["OPERATOR_KAFKA_SPLITTING_TOPIC_FORMAT"] == topic_format
    settings = settings_from(env, monkeypatch)
    assert settings.sqs.queue_format == queue_format
    assert settings.kafka.topic_format == topic_format


# --- the operator's container and settings ------------------------------------------------


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``load_settings`` with exactly ``env`` as the PYMIRROR_*/OPERATOR_* environment."""
    import os

    for name in list(os.environ):
        if name.startswith(("PYMIRROR_", "OPERATOR_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_every_rendered_env_var_is_a_setting_pymirror_reads_with_the_values_given(
    helm: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {
        "operator": {
            "sqsSplitting": True,
            "sessionNamespaces": ["shop", "billing"],
            "drainTimeout": 45,
            "workloadRestartTimeout": 90,
            "gcQueues": False,
            "logLevel": "debug",
        },
        "aws": {"region": "eu-north-1", "sqsEndpointUrl": "https://sqs.eu-north-1.amazonaws.com"},
        "worker": {
            "image": "registry.example.com/pymirror:dev",
            "replicas": 2,
            "graceSeconds": 40,
            "metricsPort": 9411,
            "env": {"PYMIRROR_SQS__RECEIVERS": 8},
            "resources": {"requests": {"cpu": "200m"}, "limits": {"memory": "1Gi"}},
            "sa": {"name": "split-worker"},
        },
    }
    env = container_env(operator_container(helm.render(values, namespace="mirror-ops")))
    settings = settings_from(env, monkeypatch)
    op = settings.operator
    assert op.namespace == "mirror-ops"
    assert (op.sqs_splitting, op.kafka_splitting) == (True, False)
    assert op.session_namespaces == ["shop", "billing"]
    assert op.workload_restart_timeout == 90
    assert op.gc_queues is False
    assert op.worker_image == "registry.example.com/pymirror:dev"
    assert (op.worker_replicas, op.worker_grace_seconds) == (2, 40)
    assert op.worker_metrics_port == 9411
    assert op.worker_service_account == "split-worker"
    # helm merges a map given with the default one: memory keeps its default request
    assert op.worker_resources == {
        "requests": {"cpu": "200m", "memory": "128Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert op.worker_env["PYMIRROR_SQS__DRAIN_TIMEOUT"] == "45"
    assert op.worker_env["PYMIRROR_KAFKA__DRAIN_TIMEOUT"] == "45"
    assert op.worker_env["PYMIRROR_SQS__RECEIVERS"] == "8"
    assert op.worker_env["PYMIRROR_SQS__REGION"] == "eu-north-1"
    assert op.worker_env["PYMIRROR_SQS__ENDPOINT_URL"] == "https://sqs.eu-north-1.amazonaws.com"
    assert settings.sqs.region == "eu-north-1"
    assert settings.sqs.endpoint_url == "https://sqs.eu-north-1.amazonaws.com"
    assert settings.log.level == "debug"
    # every PYMIRROR_* name is a field pymirror knows (extra="forbid" would have refused
    # an unknown group; a field inside a group is checked here)
    dumped = settings.model_dump()
    for name in env:
        if name.startswith("PYMIRROR_"):
            group, _, field = name.removeprefix("PYMIRROR_").lower().partition("__")
            assert field in dumped[group], name


def test_the_default_values_give_settings_pymirror_accepts(
    helm: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = container_env(operator_container(helm.render()))
    settings = settings_from(env, monkeypatch)
    assert settings.operator.namespace == NAMESPACE
    assert (settings.operator.sqs_splitting, settings.operator.kafka_splitting) == (False, False)
    assert settings.operator.worker_image == "ghcr.io/pymirror/pymirror:0.1.0"
    assert settings.operator.worker_grace_seconds == 30  # exceeds the default shutdown bound
    assert "PYMIRROR_SQS__ENDPOINT_URL" not in env
    assert "OPERATOR_SQS_SPLITTING_QUEUE_FORMAT" not in env


def test_the_containers_command_and_args_are_the_cli_of_the_installed_package(helm: Helm) -> None:
    container = operator_container(helm.render({"operator": {"metricsPort": 9555}}))
    assert container["command"] == ["pymirror"]
    (script,) = [
        e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "pymirror"
    ]
    assert script.value == "pymirror.cli:main"
    assert callable(script.load())
    args = build_parser("operator").parse_args(container["args"])
    assert args.command == "operator"
    assert args.metrics_port == 9555
    assert args.kubeconfig is None  # in-cluster: the pod's ServiceAccount
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 9555}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_the_dockerfile_runs_the_same_entrypoint_as_non_root_on_a_pinned_base() -> None:
    text = (REPO / "Dockerfile").read_text()
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    base = next(line for line in lines if line.startswith("ARG PYTHON_IMAGE="))
    image = base.partition("=")[2]
    assert re.fullmatch(r"python:3\.1[1-3]\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
    froms = [line for line in lines if line.startswith("FROM ")]
    assert len(froms) == 2, "multi-stage: a build stage and the runtime stage"
    assert all("${PYTHON_IMAGE}" in line for line in froms)
    entrypoint = next(line for line in lines if line.startswith("ENTRYPOINT "))
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["pymirror"]
    cmd = json.loads(next(line for line in lines if line.startswith("CMD ")).removeprefix("CMD "))
    assert build_parser("operator").parse_args(cmd).command == "operator"
    user = [line for line in lines if line.startswith("USER ")]
    assert user
    assert user[-1].split()[1].split(":")[0] not in ("0", "root")
    installs = [line for line in lines if "pip install" in line]
    assert installs
    assert all("[dev]" not in line and "-e " not in line for line in installs)
    assert "pip install ." in text
    # what pip install . needs is in the build context (.dockerignore ignores the rest)
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    for needed in ("pyproject.toml", "README.md", "pymirror/", "splitter/", "registry/", "crds/"):
        assert f"!{needed}" in ignore, needed


def test_the_operator_pod_is_locked_down(helm: Helm) -> None:
    docs = helm.render({"sa": {"roleArn": "arn:aws:iam::111122223333:role/pymirror"}})
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["serviceAccountName"] == "pymirror-operator"
    sc = operator_container(docs)["securityContext"]
    assert sc == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    resources = operator_container(docs)["resources"]
    assert resources["requests"]
    assert resources["limits"]["memory"]
    accounts = {d["metadata"]["name"]: d for d in of_kind(docs, "ServiceAccount")}
    arn = "arn:aws:iam::111122223333:role/pymirror"
    for name in ("pymirror-operator", "pymirror-worker"):
        assert accounts[name]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == arn
    other = helm.render({"worker": {"sa": {"roleArn": "arn:aws:iam::111122223333:role/w"}}})
    accounts = {d["metadata"]["name"]: d for d in of_kind(other, "ServiceAccount")}
    assert "annotations" not in accounts["pymirror-operator"]["metadata"]
    annotations = accounts["pymirror-worker"]["metadata"]["annotations"]
    assert annotations == {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/w"}


def test_the_chart_packages(helm: Helm) -> None:
    done = helm.run("package", str(CHART), "--destination", str(helm.home))
    assert done.returncode == 0, done.stderr
    assert (helm.home / "pymirror-0.1.0.tgz").is_file()


# --- CRDs ------------------------------------------------------------------------------


def test_the_charts_crd_files_are_byte_copies_of_crds() -> None:
    source = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in (CHART / "files" / "crds").glob("*.yaml")}
    assert sorted(copies) == sorted(source), "deploy/pymirror/files/crds/ lists other files"
    stale = [name for name in source if copies[name] != source[name]]
    assert not stale, f"copy crds/{{{','.join(stale)}}} to deploy/pymirror/files/crds/"


def without_chart_metadata(crd: Doc) -> Doc:
    meta = dict(crd["metadata"])
    annotations = dict(meta.pop("annotations", {}))
    annotations.pop("helm.sh/resource-policy", None)
    if annotations:
        meta["annotations"] = annotations
    labels = {k: v for k, v in meta.pop("labels", {}).items() if not k.startswith(("app.", "helm"))}
    if labels:
        meta["labels"] = labels
    return {**crd, "metadata": meta}


def test_the_rendered_crds_are_crds_with_only_the_keep_policy_and_labels_added(helm: Helm) -> None:
    rendered = of_kind(helm.render(), "CustomResourceDefinition")
    source = [
        d
        for p in sorted((REPO / "crds").glob("*.yaml"))
        for d in yaml.safe_load_all(p.read_text())
        if isinstance(d, dict)
    ]
    assert len(rendered) == len(source) == 5
    by_name = {d["metadata"]["name"]: d for d in rendered}
    for crd in source:
        got = by_name[crd["metadata"]["name"]]
        assert got["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert without_chart_metadata(got) == crd


def test_the_rendered_crds_are_accepted_by_the_api_server(
    helm: Helm, kube_client: k8s.ApiClient, kube_api: KubeApi
) -> None:
    ext = k8s.ApiextensionsV1Api(kube_client)
    rendered = of_kind(helm.render(), "CustomResourceDefinition")
    for crd in rendered:
        name = crd["metadata"]["name"]
        applied = ext.patch_custom_resource_definition(
            name,
            crd,
            field_manager="pymirror-chart-test",
            force=True,
            dry_run="All",
            _content_type="application/apply-patch+yaml",
        )
        meta = applied.metadata
        assert meta is not None
        assert meta.name == name
        assert (meta.annotations or {})["helm.sh/resource-policy"] == "keep"
        assert [v.name for v in applied.spec.versions] == [
            v["name"] for v in crd["spec"]["versions"]
        ]
    # and a broken one is refused: the dry-run really validates
    broken = json.loads(json.dumps(rendered[0]))
    broken["spec"]["scope"] = "Galactic"
    with pytest.raises(k8s.ApiException) as refused:
        ext.patch_custom_resource_definition(
            broken["metadata"]["name"],
            broken,
            field_manager="pymirror-chart-test",
            force=True,
            dry_run="All",
            _content_type="application/apply-patch+yaml",
        )
    assert refused.value.status == 422
