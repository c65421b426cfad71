"""Smoke: the Kubernetes API fixture gives a real API server that does what pymirror relies on.

CRDs from crds/ and tests/kube/ install and become Established; custom objects
are created, watched, server-side applied with field managers (list-map merge
on Deployment env, atomic lists on Rollout env), JSON-patched, validated (422)
and protected by optimistic concurrency (409). The reference doc's examples
apply unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch

import tests.servers.kube as kube_servers
from tests.fixtures.kube import FIELD_MANAGER, STAND_INS
from tests.servers.kube import KubeApi, start_kube
from tests.servers.process import ServerError

pytestmark = pytest.mark.integration

MIRRORD = ("queues.mirrord.metalbear.co", "v1alpha")
APPS = STAND_INS["Deployment"][:2]
ARGO = STAND_INS["Rollout"][:2]
APPLY = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"

REFERENCE_EXAMPLES = """
apiVersion: queues.mirrord.metalbear.co/v1alpha
kind: MirrordWorkloadQueueRegistry
metadata:
  name: meme-app-q-registry
spec:
  queues:
    meme-queue:
      queueType: SQS
      nameSource:
        envVar: INCOMING_MEME_QUEUE_NAME
      tags:
        tool: mirrord
    ad-queue:
      queueType: SQS
      nameSource:
        envVar: AD_QUEUE_NAME
      tags:
        tool: mirrord
  consumer:
    name: meme-app
    container: main
    workloadType: Deployment
---
apiVersion: queues.mirrord.metalbear.co/v1alpha
kind: MirrordKafkaTopicsConsumer
metadata:
  name: meme-app-topics-consumer
spec:
  consumerApiVersion: apps/v1
  consumerKind: Deployment
  consumerName: meme-app
  topics:
  - id: views-topic
    clientConfig: base-config
    groupIdSources:
    - directEnvVar:
        container: consumer
        variable: KAFKA_GROUP_ID
    nameSources:
    - directEnvVar:
        container: consumer
        variable: KAFKA_TOPIC_NAME
---
apiVersion: queues.mirrord.metalbear.co/v1alpha
kind: MirrordKafkaClientConfig
metadata:
  name: base-config
spec:
  properties:
  - name: bootstrap.servers
    value: kafka.default.svc.cluster.local:9092
  - name: message.send.max.retries
    value: 4
---
apiVersion: queues.mirrord.metalbear.co/v1alpha
kind: MirrordKafkaClientConfig
metadata:
  name: with-client-id
spec:
  parent: base-config
  properties:
  - name: client.id
    value: mirrord-operator
  - name: message.send.max.retries
    value: null
---
apiVersion: queues.mirrord.metalbear.co/v1alpha
kind: MirrordKafkaClientConfig
metadata:
  name: from-secret
spec:
  loadFromSecret: mirrord/my-secret
  properties: []
"""

PLURALS = {
    "MirrordWorkloadQueueRegistry": "mirrordworkloadqueueregistries",
    "MirrordKafkaTopicsConsumer": "mirrordkafkatopicsconsumers",
    "MirrordKafkaClientConfig": "mirrordkafkaclientconfigs",
}


def registry(name: str, env_var: str = "INCOMING_MEME_QUEUE_NAME") -> dict[str, Any]:
    return {
        "apiVersion": "queues.mirrord.metalbear.co/v1alpha",
        "kind": "MirrordWorkloadQueueRegistry",
        "metadata": {"name": name},
        "spec": {
            "queues": {
                "meme-queue": {"queueType": "SQS", "nameSource": {"envVar": env_var}},
            },
            "consumer": {"name": "meme-app", "container": "main", "workloadType": "Deployment"},
        },
    }


def workload(api_version: str, kind: str, name: str) -> dict[str, Any]:
    env = [
        {"name": "A", "value": "1"},
        {"name": "QUEUE", "value": "orig"},
        {"name": "B", "value": "2"},
    ]
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "main", "image": "app:1", "env": env},
                        {
                            "name": "sidecar",
                            "image": "proxy:1",
                            "env": [{"name": "C", "value": "3"}],
                        },
                    ]
                },
            },
        },
    }


def env_of(obj: dict[str, Any], container: str) -> list[tuple[str, str]]:
    containers = obj["spec"]["template"]["spec"]["containers"]
    (match,) = [c for c in containers if c["name"] == container]
    return [(e["name"], e.get("value", "")) for e in match.get("env", [])]


def env_apply(api_version: str, kind: str, name: str, value: str) -> dict[str, Any]:
    """The apply configuration pymirror would send: only the one env var it owns."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "main", "env": [{"name": "QUEUE", "value": value}]}]
                }
            }
        },
    }


def api_error(excinfo: pytest.ExceptionInfo[k8s.ApiException]) -> tuple[int, str]:
    return int(excinfo.value.status or 0), str(excinfo.value.body)


def test_crds_are_established_and_the_kubeconfig_works(
    kube_api: KubeApi, kube_crds: list[str]
) -> None:
    assert {f"{p}.queues.mirrord.metalbear.co" for p in PLURALS.values()} <= set(kube_crds)
    assert {f"{plural}.{group}" for group, _, plural in STAND_INS.values()} <= set(kube_crds)
    # The written kubeconfig is usable by the kubernetes client as-is.
    with k8s_config.new_client_from_config(str(kube_api.kubeconfig)) as from_file:
        crds = k8s.ApiextensionsV1Api(from_file).list_custom_resource_definition()
    assert set(kube_crds) <= {c.metadata.name for c in crds.items}


def test_reference_doc_examples_apply_unchanged(
    kube_client: k8s.ApiClient, kube_crds: list[str], unique_name: str
) -> None:
    api = k8s.CustomObjectsApi(kube_client)
    for doc in yaml.safe_load_all(REFERENCE_EXAMPLES):
        api.create_namespaced_custom_object(*MIRRORD, unique_name, PLURALS[doc["kind"]], doc)
    child = api.get_namespaced_custom_object(
        *MIRRORD, unique_name, "mirrordkafkaclientconfigs", "with-client-id"
    )
    base = api.get_namespaced_custom_object(
        *MIRRORD, unique_name, "mirrordkafkaclientconfigs", "base-config"
    )
    # value: null survives (it means "remove"), value: 4 stays a number.
    assert child["spec"]["properties"][1] == {"name": "message.send.max.retries", "value": None}
    assert base["spec"]["properties"][1]["value"] == 4
    # Unquoted booleans are accepted as written too.
    flags = {
        "apiVersion": "queues.mirrord.metalbear.co/v1alpha",
        "kind": "MirrordKafkaClientConfig",
        "metadata": {"name": "flags"},
        "spec": {
            "parent": "base-config",
            "properties": [{"name": "enable.idempotence", "value": False}],
        },
    }
    created = api.create_namespaced_custom_object(
        *MIRRORD, unique_name, "mirrordkafkaclientconfigs", flags
    )
    assert created["spec"]["properties"] == [{"name": "enable.idempotence", "value": False}]


def test_registry_is_created_watched_and_applied_server_side(
    kube_client: k8s.ApiClient, kube_crds: list[str], unique_name: str
) -> None:
    api = k8s.CustomObjectsApi(kube_client)
    ns, plural = unique_name, PLURALS["MirrordWorkloadQueueRegistry"]
    start = api.list_namespaced_custom_object(*MIRRORD, ns, plural)["metadata"]["resourceVersion"]
    api.create_namespaced_custom_object(*MIRRORD, ns, plural, registry("reg"))

    events = watch.Watch().stream(
        api.list_namespaced_custom_object,
        *MIRRORD,
        ns,
        plural,
        resource_version=start,
        timeout_seconds=10,
    )
    first = next(iter(events))
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "reg")

    applied = api.patch_namespaced_custom_object(
        *MIRRORD,
        ns,
        plural,
        "reg",
        {
            "apiVersion": "queues.mirrord.metalbear.co/v1alpha",
            "kind": "MirrordWorkloadQueueRegistry",
            "metadata": {"name": "reg"},
            "spec": {"queues": {"meme-queue": {"tags": {"team": "memes"}}}},
        },
        field_manager="pymirror",
        _content_type=APPLY,
    )
    queue = applied["spec"]["queues"]["meme-queue"]
    assert queue == {
        "queueType": "SQS",
        "nameSource": {"envVar": "INCOMING_MEME_QUEUE_NAME"},
        "tags": {"team": "memes"},
    }
    managers = {(m["manager"], m["operation"]) for m in applied["metadata"]["managedFields"]}
    assert ("pymirror", "Apply") in managers


@pytest.mark.parametrize(
    ("kind", "plural"), [("Deployment", "deployments"), ("StatefulSet", "statefulsets")]
)
def test_workload_env_var_is_applied_server_side_keeping_the_other_env_vars(
    kube_client: k8s.ApiClient, kube_crds: list[str], unique_name: str, kind: str, plural: str
) -> None:
    api = k8s.CustomObjectsApi(kube_client)
    ns, version = unique_name, "apps.pymirror.test/v1"
    api.create_namespaced_custom_object(
        *APPS, ns, plural, workload(version, kind, "app"), field_manager="helm"
    )
    patch = env_apply(version, kind, "app", "mirrord-tmp-1")

    # Another manager owns QUEUE's value: without force, apply is a 409 conflict.
    with pytest.raises(k8s.ApiException) as conflict:
        api.patch_namespaced_custom_object(
            *APPS, ns, plural, "app", patch, field_manager="pymirror", _content_type=APPLY
        )
    status, body = api_error(conflict)
    assert status == 409
    assert "conflict" in body.lower()

    applied = api.patch_namespaced_custom_object(
        *APPS, ns, plural, "app", patch, field_manager="pymirror", force=True, _content_type=APPLY
    )
    assert env_of(applied, "main") == [("A", "1"), ("QUEUE", "mirrord-tmp-1"), ("B", "2")]
    assert env_of(applied, "sidecar") == [("C", "3")]


def test_workload_env_var_is_json_patched_guarded_by_a_test_op(
    kube_client: k8s.ApiClient, kube_crds: list[str], unique_name: str
) -> None:
    api = k8s.CustomObjectsApi(kube_client)
    ns = unique_name
    api.create_namespaced_custom_object(
        *APPS, ns, "deployments", workload("apps.pymirror.test/v1", "Deployment", "app")
    )
    path = "/spec/template/spec/containers/0/env/1"
    ops = [
        {"op": "test", "path": f"{path}/name", "value": "QUEUE"},
        {"op": "replace", "path": f"{path}/value", "value": "mirrord-tmp-2"},
    ]
    patched = api.patch_namespaced_custom_object(
        *APPS, ns, "deployments", "app", ops, _content_type=JSON_PATCH
    )
    assert env_of(patched, "main") == [("A", "1"), ("QUEUE", "mirrord-tmp-2"), ("B", "2")]

    stale = [{"op": "test", "path": f"{path}/value", "value": "orig"}, ops[1]]
    with pytest.raises(k8s.ApiException) as failed:
        api.patch_namespaced_custom_object(
            *APPS, ns, "deployments", "app", stale, _content_type=JSON_PATCH
        )
    assert api_error(failed)[0] == 422


def test_rollout_env_is_an_atomic_list_so_apply_replaces_it_and_json_patch_does_not(
    kube_client: k8s.ApiClient, kube_crds: list[str], unique_name: str
) -> None:
    api = k8s.CustomObjectsApi(kube_client)
    ns, version = unique_name, "argoproj.io/v1alpha1"
    api.create_namespaced_custom_object(
        *ARGO, ns, "rollouts", workload(version, "Rollout", "app"), field_manager="argo"
    )
    path = "/spec/template/spec/containers/0/env/1/value"
    patched = api.patch_namespaced_custom_object(
        *ARGO,
        ns,
        "rollouts",
        "app",
        [{"op": "replace", "path": path, "value": "mirrord-tmp-3"}],
        _content_type=JSON_PATCH,
    )
    assert env_of(patched, "main") == [("A", "1"), ("QUEUE", "mirrord-tmp-3"), ("B", "2")]

    applied = api.patch_namespaced_custom_object(
        *ARGO,
        ns,
        "rollouts",
        "app",
        env_apply(version, "Rollout", "app", "mirrord-tmp-4"),
        field_manager="pymirror",
        force=True,
        _content_type=APPLY,
    )
    # containers is atomic too: the sidecar and the other env vars are gone.
    assert [c["name"] for c in applied["spec"]["template"]["spec"]["containers"]] == ["main"]
    assert env_of(applied, "main") == [("QUEUE", "mirrord-tmp-4")]


@pytest.mark.parametrize(
    ("kind", "spec", "field"),
    [
        (
            "MirrordWorkloadQueueRegistry",
            {
                # Any non-empty queueType is kept (a future mirrord kind); an empty one is not.
                "queues": {"q": {"queueType": "", "nameSource": {"envVar": "Q"}}},
                "consumer": {"name": "x", "workloadType": "Deployment"},
            },
            "spec.queues.q.queueType",
        ),
        (
            "MirrordWorkloadQueueRegistry",
            {
                "queues": {"q": {"queueType": "SQS"}},
                "consumer": {"name": "x", "workloadType": "Job"},
            },
            "spec.consumer.workloadType",
        ),
        (
            "MirrordKafkaTopicsConsumer",
            {
                "consumerApiVersion": "apps/v1",
                "consumerKind": "Deployment",
                "consumerName": "x",
                "topics": [
                    {"id": "t", "clientConfig": "c", "groupIdSources": [], "nameSources": []}
                ],
            },
            "spec.topics[0]",  # exactly one of groupIdSources/applicationIdSources
        ),
        (
            "MirrordKafkaClientConfig",
            {"properties": [{"value": "no-name"}]},
            "spec.properties[0].name",
        ),
        (
            "MirrordKafkaClientConfig",
            {"loadFromSecret": "no-namespace", "properties": []},
            "spec.loadFromSecret",
        ),
    ],
)
def test_invalid_registry_objects_are_rejected_with_422(
    kube_client: k8s.ApiClient,
    kube_crds: list[str],
    unique_name: str,
    kind: str,
    spec: dict[str, Any],
    field: str,
) -> None:
    body = {
        "apiVersion": "queues.mirrord.metalbear.co/v1alpha",
        "kind": kind,
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    with pytest.raises(k8s.ApiException) as rejected:
        k8s.CustomObjectsApi(kube_client).create_namespaced_custom_object(
            *MIRRORD, unique_name, PLURALS[kind], body
        )
    status, message = api_error(rejected)
    assert status == 422
    assert field in message


def test_update_with_a_stale_resource_version_is_a_409_conflict(
    kube_client: k8s.ApiClient, kube_crds: list[str], unique_name: str
) -> None:
    api = k8s.CustomObjectsApi(kube_client)
    ns, plural = unique_name, PLURALS["MirrordWorkloadQueueRegistry"]
    api.create_namespaced_custom_object(*MIRRORD, ns, plural, registry("reg"))
    seen = api.get_namespaced_custom_object(*MIRRORD, ns, plural, "reg")

    first = {**seen, "spec": registry("reg", "FIRST")["spec"]}
    api.replace_namespaced_custom_object(
        *MIRRORD, ns, plural, "reg", first, field_manager=FIELD_MANAGER
    )
    second = {**seen, "spec": registry("reg", "SECOND")["spec"]}  # stale resourceVersion
    with pytest.raises(k8s.ApiException) as conflict:
        api.replace_namespaced_custom_object(*MIRRORD, ns, plural, "reg", second)
    assert api_error(conflict)[0] == 409
    now = api.get_namespaced_custom_object(*MIRRORD, ns, plural, "reg")
    assert now["spec"]["queues"]["meme-queue"]["nameSource"]["envVar"] == "FIRST"


def test_missing_binaries_fail_with_a_message_naming_the_install_script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(kube_servers, "APISERVER", tmp_path / "apiextensions-apiserver")
    with pytest.raises(ServerError, match=r"scripts/install-kube-apiserver\.sh"):
        start_kube(name="missing-kube")
