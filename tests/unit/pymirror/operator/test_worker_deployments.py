"""The split-worker Deployment manifest (pure): name, labels, command, pod hardening."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pymirror.cli import _command_in, build_parser
from pymirror.operator.settings import OperatorSettings
from pymirror.operator.worker_deployments import (
    CONFIG_DIGEST_ANNOTATION,
    CONFIG_KINDS_VAR,
    SPEC_ANNOTATION,
    WORKER_LABEL,
    WorkerDeploymentError,
    config_digest,
    worker_deployment,
    worker_name,
)
from registry.session_models import QueueSplit

pytestmark = pytest.mark.unit

STAND_IN = {"Deployment": "apps.pymirror.test/v1"}


def split(kind: str = "SQS", name: str = "shop-meme-app-orders", **spec: Any) -> QueueSplit:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "pymirror-system", "uid": "u-1"},
        "spec": {
            "kind": kind,
            "original": "orders",
            "fallback": "mirrord-tmp-0123456789-fallback-orders",
            "target": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "meme-app",
                "namespace": "shop",
            },
            **spec,
        },
    }
    if kind == "Kafka":
        body["spec"] |= {"groupId": "views-consumer", "clientConfig": "base"}
    return QueueSplit.model_validate(body)


def container(obj: dict[str, Any]) -> dict[str, Any]:
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["worker"]
    result: dict[str, Any] = containers[0]
    return result


def test_the_worker_name_is_a_dns_label_unique_per_split() -> None:
    assert worker_name("shop-orders") == "pymirror-worker-shop-orders"
    long_a, long_b = "a" * 60 + "-x", "a" * 60 + "-y"
    names = {worker_name(long_a), worker_name(long_b)}
    assert len(names) == 2
    for name in names:
        assert len(name) <= 63
        assert name[0].isalnum()
        assert name[-1].isalnum()
    assert worker_name(long_a) == worker_name(long_a)


def test_an_sqs_worker_runs_pymirror_worker_sqs_for_its_split() -> None:
    settings = OperatorSettings(
        worker_env={"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://sqs:4566"},
        workload_kinds=STAND_IN,
    )
    obj = worker_deployment(split(), settings)
    assert obj["apiVersion"] == "apps.pymirror.test/v1"
    assert obj["kind"] == "Deployment"
    meta = obj["metadata"]
    assert meta["name"] == "pymirror-worker-shop-meme-app-orders"
    assert meta["namespace"] == "pymirror-system"
    assert meta["labels"][WORKER_LABEL] == "shop-meme-app-orders"
    assert meta["labels"]["app.kubernetes.io/name"] == "pymirror-worker"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "pymirror.dev/v1alpha1",
            "kind": "QueueSplit",
            "name": "shop-meme-app-orders",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    c = container(obj)
    assert c["command"] == [
        "pymirror",
        "worker",
        "sqs",
        "--split",
        "pymirror-system/shop-meme-app-orders",
        "--queue",
        "orders",
        "--fallback-queue",
        "mirrord-tmp-0123456789-fallback-orders",
        "--metrics-port",
        "9400",
    ]
    assert c["image"] == settings.worker_image
    assert c["env"] == [
        {"name": "AWS_ENDPOINT_URL", "value": "http://sqs:4566"},
        {"name": "AWS_REGION", "value": "eu-west-1"},
        {"name": CONFIG_KINDS_VAR, "value": '{"ConfigMap": "v1", "Secret": "v1"}'},
    ]
    assert c["resources"] == settings.worker_resources
    assert c["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert c["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]


def test_the_selector_matches_the_pod_labels() -> None:
    obj = worker_deployment(split(), OperatorSettings())
    selector = obj["spec"]["selector"]["matchLabels"]
    pod_labels = obj["spec"]["template"]["metadata"]["labels"]
    assert selector[WORKER_LABEL] == "shop-meme-app-orders"
    assert selector.items() <= pod_labels.items()
    assert obj["spec"]["replicas"] == 1


def test_the_pod_is_hardened_and_runs_as_the_worker_service_account() -> None:
    settings = OperatorSettings(
        worker_service_account="workers", worker_grace_seconds=45, worker_replicas=2
    )
    obj = worker_deployment(split(), settings)
    pod = obj["spec"]["template"]["spec"]
    assert obj["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == "workers"
    assert pod["terminationGracePeriodSeconds"] == 45
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = container(obj)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # the read-only root filesystem leaves the worker its state directory and /tmp
    mounts = {m["mountPath"]: m["name"] for m in container(obj)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == {settings.worker_state_dir, "/tmp"}
    assert all("emptyDir" in volumes[name] for name in mounts.values())


def test_without_a_metrics_port_there_is_no_probe_and_no_flag() -> None:
    obj = worker_deployment(split(), OperatorSettings(worker_metrics_port=None))
    c = container(obj)
    assert "readinessProbe" not in c
    assert "ports" not in c
    assert "--metrics-port" not in c["command"]


def test_a_kafka_worker_gets_the_topic_group_fallback_and_its_client_config_by_name() -> None:
    settings = OperatorSettings(worker_command=["/venv/bin/python", "-m", "pymirror"])
    props = {"bootstrap.servers": "kafka:9092", "sasl.password": "hunter2-secret"}
    obj = worker_deployment(split("Kafka"), settings, properties=props)
    command = container(obj)["command"]
    assert "hunter2-secret" not in json.dumps(obj)  # no property value in the Deployment
    state = settings.worker_state_dir
    assert command == [
        "/venv/bin/python",
        "-m",
        "pymirror",
        "worker",
        "kafka",
        "--split",
        "pymirror-system/shop-meme-app-orders",
        "--topic",
        "orders",
        "--group-id",
        "views-consumer",
        "--fallback-topic",
        "mirrord-tmp-0123456789-fallback-orders",
        "--member-file",
        f"{state}/member",
        "--hand-back-file",
        f"{state}/hand-back",
        "--client-config",
        "base",
        "--metrics-port",
        "9400",
    ]


def test_a_kafka_worker_without_bootstrap_servers_is_refused() -> None:
    with pytest.raises(WorkerDeploymentError, match=r"'base' resolves to no bootstrap\.servers"):
        worker_deployment(split("Kafka"), OperatorSettings(), properties={"client.id": "x"})


def test_a_split_without_a_fallback_has_no_worker_yet() -> None:
    with pytest.raises(WorkerDeploymentError, match=r"has no spec\.fallback: record and create"):
        worker_deployment(split(fallback=None), OperatorSettings())


def test_the_spec_annotation_changes_with_the_spec_only() -> None:
    first = worker_deployment(split(), OperatorSettings())
    again = worker_deployment(split(), OperatorSettings())
    other = worker_deployment(split(), OperatorSettings(worker_image="pymirror:2"))
    annotation = first["metadata"]["annotations"][SPEC_ANNOTATION]
    assert again["metadata"]["annotations"][SPEC_ANNOTATION] == annotation
    assert other["metadata"]["annotations"][SPEC_ANNOTATION] != annotation


@pytest.mark.parametrize("kind", ["SQS", "Kafka"])
def test_the_command_parses_with_the_worker_cli(kind: str) -> None:
    """The argv after the command prefix is what `pymirror worker sqs|kafka` accepts."""
    props = {"bootstrap.servers": "kafka:9092"}
    command = container(worker_deployment(split(kind), OperatorSettings(), properties=props))[
        "command"
    ]
    argv = command[1:]
    args = build_parser(_command_in(argv)).parse_args(argv)
    assert args.split == "pymirror-system/shop-meme-app-orders"
    assert args.metrics_port == 9400
    if kind == "SQS":
        assert (args.queue, args.fallback_queue) == ("orders", split().spec.fallback)
    else:
        assert (args.topic, args.group_id) == ("orders", "views-consumer")
        assert (args.client_config, args.property) == ("base", [])


def test_a_changed_client_config_changes_the_pod_template_and_only_then() -> None:
    """The digest of the resolved config restarts the workers when a config or Secret
    changes; it is no value of the config."""
    settings = OperatorSettings()
    props = {"bootstrap.servers": "kafka:9092", "sasl.password": "one"}
    first = worker_deployment(split("Kafka"), settings, properties=props)
    again = worker_deployment(split("Kafka"), settings, properties=dict(props))
    changed = worker_deployment(
        split("Kafka"), settings, properties=props | {"sasl.password": "two"}
    )
    digests = [
        o["spec"]["template"]["metadata"]["annotations"][CONFIG_DIGEST_ANNOTATION]
        for o in (first, again, changed)
    ]
    assert digests[0] == digests[1] == config_digest(props)
    assert digests[2] != digests[0]
    assert "one" not in digests[0]
    assert "annotations" not in worker_deployment(split(), settings)["spec"]["template"]["metadata"]
