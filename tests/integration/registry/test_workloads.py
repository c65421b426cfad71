"""registry.workloads and registry.workload_queues on the real test API server.

Workloads are the stand-in Deployment/StatefulSet CRDs and the cut-down Argo
Rollout CRD (tests/kube/README.md); ConfigMaps the stand-in ConfigMap CRD. The
kinds' groups come from configuration (``WorkloadKinds``/``ConfigKinds``), as in
production. The registry cases are mirrord's end-to-end shapes (regexPattern over
a name and a URL, two ids, JSON map + fallbackName with ``*``, ``envFrom``,
``valueFrom``, both), on a Deployment, a Rollout with a template and a Rollout
with a ``workloadRef``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from registry.config_sources import ConfigKinds
from registry.env_refs import CONFIG_MAP_KEY_REF, ENV_FROM_CONFIG_MAP, VALUE
from registry.errors import EnvReadingError, NotFoundError
from registry.models import (
    API_VERSION,
    MirrordKafkaTopicsConsumer,
    MirrordWorkloadQueueRegistry,
    parse_kind,
)
from registry.objects import Kube
from registry.resources import Resource
from registry.workload_queues import read_kafka_topics, read_registry_queues
from registry.workloads import (
    WorkloadError,
    WorkloadKinds,
    WorkloadNotFoundError,
    WorkloadRef,
    get_workload,
)
from tests.fixtures.kube import STAND_INS

pytestmark = pytest.mark.integration

#: The test server's stand-in kinds (production: apps/v1, argoproj.io/v1alpha1, core v1).
STAND_IN_WORKLOADS = WorkloadKinds.from_mapping(STAND_INS)
STAND_IN_CONFIG_MAPS = Resource(
    *STAND_INS.get("ConfigMap", ("core.pymirror.test", "v1", "configmaps"))
)
STAND_IN_CONFIG = ConfigKinds(
    config_map=STAND_IN_CONFIG_MAPS, secret=Resource(*STAND_INS["Secret"])
)

Q1_NAME = "E2ETest-q1"
Q2_URL = "http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/E2ETest-q2.fifo"
JSON_MAP = json.dumps({"queue1_name": Q1_NAME, "queue2_url": Q2_URL})


def config_map(name: str, data: dict[str, str]) -> dict[str, Any]:
    """A stand-in core/v1 ConfigMap."""
    return {
        "apiVersion": STAND_IN_CONFIG_MAPS.api_version,
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": data,
    }


def api_version(kind: str) -> str:
    return STAND_IN_WORKLOADS.resource(kind).api_version


def template(containers: list[dict[str, Any]], app: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": app}}, "spec": {"containers": containers}}


def deployment(
    name: str, containers: list[dict[str, Any]], kind: str = "Deployment"
) -> dict[str, Any]:
    return {
        "apiVersion": api_version(kind),
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": template(containers, name),
        },
    }


def rollout_with_template(name: str, containers: list[dict[str, Any]]) -> dict[str, Any]:
    return deployment(name, containers, kind="Rollout")


def rollout_with_ref(name: str, deployment_name: str) -> dict[str, Any]:
    return {
        "apiVersion": api_version("Rollout"),
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": deployment_name}},
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment_name},
        },
    }


async def create_workload(
    kube: Kube, namespace: str, shape: str, name: str, containers: list[dict[str, Any]]
) -> tuple[str, WorkloadRef]:
    """Create a workload of ``shape``; return its kind and the object holding its template."""
    objects = {
        k: kube.objects(STAND_IN_WORKLOADS.resource(k), namespace)
        for k in ("Deployment", "StatefulSet", "Rollout")
    }
    if shape == "Rollout with workloadRef":
        await objects["Deployment"].create(deployment(f"{name}-template", containers))
        await objects["Rollout"].create(rollout_with_ref(name, f"{name}-template"))
        return "Rollout", WorkloadRef("Deployment", namespace, f"{name}-template")
    if shape == "Rollout with template":
        await objects["Rollout"].create(rollout_with_template(name, containers))
        return "Rollout", WorkloadRef("Rollout", namespace, name)
    await objects[shape].create(deployment(name, containers, kind=shape))
    return shape, WorkloadRef(shape, namespace, name)


SHAPES = ["Deployment", "StatefulSet", "Rollout with template", "Rollout with workloadRef"]


# --- workloads ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_workload_and_its_pod_template_are_read_where_the_kinds_are_configured(
    kube: Kube, unique_name: str, shape: str
) -> None:
    containers = [{"name": "sidecar", "image": "s:1"}, {"name": "main", "image": "app:1"}]
    kind, owner = await create_workload(kube, unique_name, shape, "app", containers)

    workload = await get_workload(kube, STAND_IN_WORKLOADS, unique_name, kind.lower(), "app")

    assert workload.ref == WorkloadRef(kind, unique_name, "app")
    assert workload.template_owner == owner
    assert workload.template_owner_obj["metadata"]["name"] == owner.name
    assert [c["name"] for c in workload.containers()] == ["sidecar", "main"]
    assert workload.container("main")["image"] == "app:1"
    assert workload.container(None)["name"] == "sidecar"


async def test_workload_errors_name_the_object_and_the_fix(kube: Kube, unique_name: str) -> None:
    await kube.objects(STAND_IN_WORKLOADS.rollout, unique_name).create(
        rollout_with_ref("dangling", "gone")
    )
    await kube.objects(STAND_IN_WORKLOADS.deployment, unique_name).create(
        deployment("app", [{"name": "main"}])
    )
    cases: list[tuple[str, str, type[Exception], str]] = [
        (
            "Job",
            "app",
            WorkloadError,
            "unknown workload kind 'Job': use one of Deployment, StatefulSet, Rollout",
        ),
        (
            "StatefulSet",
            "app",
            WorkloadNotFoundError,
            f"StatefulSet {unique_name}/app not found "
            "(apps.pymirror.test/v1 statefulsets); create it or fix the workload name",
        ),
        (
            "Rollout",
            "dangling",
            WorkloadNotFoundError,
            f"Deployment {unique_name}/gone (spec."
            f"workloadRef of Rollout {unique_name}/dangling) not found",
        ),
    ]
    for kind, name, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            await get_workload(kube, STAND_IN_WORKLOADS, unique_name, kind, name)
    workload = await get_workload(kube, STAND_IN_WORKLOADS, unique_name, "Deployment", "app")
    with pytest.raises(
        WorkloadError, match=re.escape("has no container 'web' (its containers: main)")
    ):
        workload.container("web")


async def test_the_default_kinds_look_in_apps_v1_which_the_test_server_does_not_serve(
    kube: Kube, unique_name: str
) -> None:
    await kube.objects(STAND_IN_WORKLOADS.deployment, unique_name).create(
        deployment("app", [{"name": "main"}])
    )
    with pytest.raises(WorkloadNotFoundError, match=re.escape("(apps/v1 deployments)")) as raised:
        await get_workload(kube, WorkloadKinds(), unique_name, "Deployment", "app")
    assert isinstance(raised.value.__cause__, NotFoundError)


# --- queue names from registries: mirrord's end-to-end shapes -------------------------------


def by_value() -> list[dict[str, Any]]:
    return [
        {"name": "SQS_TEST_Q_NAME1", "value": Q1_NAME},
        {"name": "SQS_TEST_Q2_URL", "value": Q2_URL},
        {"name": "UNRELATED", "value": "x"},
    ]


def by_value_from() -> list[dict[str, Any]]:
    return [
        {
            "name": "SQS_TEST_Q_NAME1",
            "valueFrom": {"configMapKeyRef": {"name": "for-value-from", "key": "q1"}},
        },
        {
            "name": "SQS_TEST_Q2_URL",
            "valueFrom": {"configMapKeyRef": {"name": "for-value-from", "key": "q2"}},
        },
    ]


def queue(env_var: str | None = None, **extra: Any) -> dict[str, Any]:
    source = {"envVar": env_var} if env_var else {"regexPattern": extra.pop("regex")}
    return {"queueType": "SQS", "nameSource": source, **extra}


TWO_IDS = {
    "e2e-test-queue1": queue("SQS_TEST_Q_NAME1"),
    "e2e-test-queue2": queue("SQS_TEST_Q2_URL"),
}
# (case, container env, container envFrom, registry queues, queue ids asked (None = "*"),
#  expected: queue id -> [(variable, value, how)])
E2E_CASES: list[Any] = [
    pytest.param(
        by_value(),
        None,
        {"e2e-test-queues": queue(regex="SQS_TEST_Q.+")},
        ["e2e-test-queues"],
        {
            "e2e-test-queues": [
                ("SQS_TEST_Q_NAME1", Q1_NAME, VALUE),
                ("SQS_TEST_Q2_URL", Q2_URL, VALUE),
            ]
        },
        id="with_regex_without_fallback_json",
    ),
    pytest.param(
        by_value(),
        None,
        TWO_IDS,
        ["e2e-test-queue1", "e2e-test-queue2"],
        {
            "e2e-test-queue1": [("SQS_TEST_Q_NAME1", Q1_NAME, VALUE)],
            "e2e-test-queue2": [("SQS_TEST_Q2_URL", Q2_URL, VALUE)],
        },
        id="without_regex_without_fallback_json",
    ),
    pytest.param(
        [
            {"name": "SQS_TEST_Q_JSON", "value": JSON_MAP},
            {"name": "SQS_FORWARDER_CONFIG", "value": "{}"},
        ],
        None,
        {"e2e-test-queues": queue("SQS_TEST_Q_JSON", fallbackName=JSON_MAP, namesFromJsonMap=True)},
        ["e2e-test-queues"],
        {"e2e-test-queues": [("SQS_TEST_Q_JSON", JSON_MAP, VALUE)]},
        id="without_regex_with_fallback_json",
    ),
    pytest.param(
        [{"name": "SQS_TEST_Q_JSON", "value": JSON_MAP}],
        None,
        {
            "e2e-test-queues": queue(
                "SQS_TEST_Q_JSON", fallbackName=JSON_MAP, namesFromJsonMap=True
            ),
            "rabbit": {"queueType": "RMQ", "clusterProperties": "x"},
        },
        None,
        {"e2e-test-queues": [("SQS_TEST_Q_JSON", JSON_MAP, VALUE)]},
        id="without_regex_with_fallback_json_with_asterisk",
    ),
    pytest.param(
        [],
        [{"configMapRef": {"name": "for-env-from"}}],
        TWO_IDS,
        None,
        {
            "e2e-test-queue1": [("SQS_TEST_Q_NAME1", Q1_NAME, ENV_FROM_CONFIG_MAP)],
            "e2e-test-queue2": [("SQS_TEST_Q2_URL", Q2_URL, ENV_FROM_CONFIG_MAP)],
        },
        id="with_env_from",
    ),
    pytest.param(
        by_value_from(),
        None,
        TWO_IDS,
        None,
        {
            "e2e-test-queue1": [("SQS_TEST_Q_NAME1", Q1_NAME, CONFIG_MAP_KEY_REF)],
            "e2e-test-queue2": [("SQS_TEST_Q2_URL", Q2_URL, CONFIG_MAP_KEY_REF)],
        },
        id="with_value_from",
    ),
    pytest.param(
        by_value_from()[1:],
        [{"configMapRef": {"name": "for-env-from"}}],
        TWO_IDS,
        None,
        {
            "e2e-test-queue1": [("SQS_TEST_Q_NAME1", Q1_NAME, ENV_FROM_CONFIG_MAP)],
            "e2e-test-queue2": [("SQS_TEST_Q2_URL", Q2_URL, CONFIG_MAP_KEY_REF)],
        },
        id="with_env_from_and_value_from",
    ),
]


async def setup_registry(
    kube: Kube,
    namespace: str,
    shape: str,
    env: list[dict[str, Any]],
    env_from: list[dict[str, Any]] | None,
    queues: dict[str, Any],
) -> MirrordWorkloadQueueRegistry:
    config_maps = kube.objects(STAND_IN_CONFIG_MAPS, namespace)
    await config_maps.create(
        config_map("for-env-from", {"SQS_TEST_Q_NAME1": Q1_NAME, "SQS_TEST_Q2_URL": Q2_URL})
    )
    await config_maps.create(config_map("for-value-from", {"q1": Q1_NAME, "q2": Q2_URL}))
    container: dict[str, Any] = {"name": "main", "image": "forwarder:latest", "env": env}
    if env_from is not None:
        container["envFrom"] = env_from
    kind, _ = await create_workload(kube, namespace, shape, "sqs-forwarder", [container])
    registries = kube.objects(MirrordWorkloadQueueRegistry.RESOURCE, namespace)
    created = await registries.create(
        {
            "apiVersion": API_VERSION,
            "kind": "MirrordWorkloadQueueRegistry",
            "metadata": {"name": "mirrord-e2e-test-queue-registry"},
            "spec": {"queues": queues, "consumer": {"name": "sqs-forwarder", "workloadType": kind}},
        }
    )
    return parse_kind(created, {"MirrordWorkloadQueueRegistry": MirrordWorkloadQueueRegistry})


@pytest.mark.parametrize(
    "shape", ["Deployment", "Rollout with workloadRef", "Rollout with template"]
)
@pytest.mark.parametrize(("env", "env_from", "queues", "ids", "expected"), E2E_CASES)
async def test_mirrord_end_to_end_registries_resolve_to_the_same_queues(
    kube: Kube,
    unique_name: str,
    shape: str,
    env: list[dict[str, Any]],
    env_from: list[dict[str, Any]] | None,
    queues: dict[str, Any],
    ids: list[str] | None,
    expected: dict[str, list[tuple[str, str, str]]],
) -> None:
    registry = await setup_registry(kube, unique_name, shape, env, env_from, queues)

    read = await read_registry_queues(
        kube, registry, ids, workloads=STAND_IN_WORKLOADS, config=STAND_IN_CONFIG
    )

    assert read.container == "main"
    got = {
        qid: [(v.variable, v.value, v.origin.kind) for v in q.vars]
        for qid, q in read.queues.items()
    }
    assert got == expected
    names = sorted(n for q in read.queues.values() for n in q.names())
    assert names == sorted([Q1_NAME, Q2_URL])  # a URL stays a URL


async def test_a_json_map_registry_uses_its_fallback_name_when_the_var_is_absent(
    kube: Kube, unique_name: str
) -> None:
    registry = await setup_registry(
        kube,
        unique_name,
        "Deployment",
        [{"name": "OTHER", "value": "x"}],
        None,
        {"e2e-test-queues": queue("SQS_TEST_Q_JSON", fallbackName=JSON_MAP, namesFromJsonMap=True)},
    )
    read = await read_registry_queues(
        kube, registry, workloads=STAND_IN_WORKLOADS, config=STAND_IN_CONFIG
    )
    (var,) = read.queues["e2e-test-queues"].vars
    assert (var.variable, var.value, var.must_add) == ("SQS_TEST_Q_JSON", JSON_MAP, True)
    assert [(n.json_key, n.name) for n in var.names] == [
        ("queue1_name", Q1_NAME),
        ("queue2_url", Q2_URL),
    ]


@pytest.mark.parametrize(
    ("env", "queues", "ids", "message"),
    [
        pytest.param(
            [{"name": "Q", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            {"q": queue("Q")},
            None,
            "MirrordWorkloadQueueRegistry {ns}/mirrord-e2e-test-queue-registry queue 'q': env var "
            "Q of container main of Deployment {ns}/sqs-forwarder comes from "
            "valueFrom.secretKeyRef",
            id="a secret var",
        ),
        pytest.param(
            [
                {
                    "name": "Q",
                    "valueFrom": {"configMapKeyRef": {"name": "for-value-from", "key": "nope"}},
                }
            ],
            {"q": queue("Q")},
            None,
            "env var Q of container main of Deployment {ns}/sqs-forwarder comes from "
            "valueFrom.configMapKeyRef, but ConfigMap for-value-from has no key 'nope'",
            id="a missing ConfigMap key",
        ),
        pytest.param(
            [],
            {"q": queue("Q")},
            None,
            "env var Q of container main of Deployment {ns}/sqs-forwarder is not set; add it",
            id="a missing var",
        ),
        pytest.param(
            [{"name": "Q", "value": "not json"}],
            {"q": queue("Q", namesFromJsonMap=True)},
            None,
            "env var Q of container main of Deployment {ns}/sqs-forwarder is not JSON",
            id="a JSON map that does not parse",
        ),
        pytest.param(
            [{"name": "Q", "value": "q"}],
            {"q": queue("Q"), "rabbit": {"queueType": "RMQ"}},
            ["rabbit"],
            "queue 'rabbit' has queueType 'RMQ'; pymirror splits only SQS queues",
            id="an unsupported queue type asked for",
        ),
        pytest.param(
            [{"name": "Q", "value": "q"}],
            {"q": queue("Q")},
            ["nope"],
            "has no queue 'nope' (its queues: q); fix the queue id",
            id="an unknown queue id",
        ),
    ],
)
async def test_unreadable_registry_queues_fail_naming_the_var_the_container_and_the_workload(
    kube: Kube,
    unique_name: str,
    env: list[dict[str, Any]],
    queues: dict[str, Any],
    ids: list[str] | None,
    message: str,
) -> None:
    registry = await setup_registry(kube, unique_name, "Deployment", env, None, queues)
    with pytest.raises(EnvReadingError, match=re.escape(message.format(ns=unique_name))):
        await read_registry_queues(
            kube, registry, ids, workloads=STAND_IN_WORKLOADS, config=STAND_IN_CONFIG
        )


async def test_errors_of_a_workload_ref_rollout_name_the_deployment_holding_the_template(
    kube: Kube, unique_name: str
) -> None:
    registry = await setup_registry(
        kube, unique_name, "Rollout with workloadRef", [], None, {"q": queue("Q")}
    )
    with pytest.raises(EnvReadingError) as raised:
        await read_registry_queues(
            kube, registry, workloads=STAND_IN_WORKLOADS, config=STAND_IN_CONFIG
        )
    assert (
        f"env var Q of container main of Deployment {unique_name}/sqs-forwarder-template (the pod "
        f"template of Rollout {unique_name}/sqs-forwarder, spec.workloadRef) is not set"
    ) in str(raised.value)


# --- Kafka topics and group ids -------------------------------------------------------------


async def test_kafka_topic_names_and_group_ids_are_read_from_a_stateful_set(
    kube: Kube, unique_name: str
) -> None:
    await kube.objects(STAND_IN_CONFIG_MAPS, unique_name).create(
        config_map("kafka", {"GROUP": "views-group"})
    )
    containers = [
        {
            "name": "consumer",
            "env": [
                {"name": "KAFKA_TOPIC_NAME", "value": "views"},
                {
                    "name": "KAFKA_GROUP_ID",
                    "valueFrom": {"configMapKeyRef": {"name": "kafka", "key": "GROUP"}},
                },
            ],
        },
        {"name": "audit", "env": [{"name": "AUDIT_TOPIC", "value": "views"}]},
    ]
    await create_workload(kube, unique_name, "StatefulSet", "views-app", containers)
    created = await kube.objects(MirrordKafkaTopicsConsumer.RESOURCE, unique_name).create(
        {
            "apiVersion": API_VERSION,
            "kind": "MirrordKafkaTopicsConsumer",
            "metadata": {"name": "views-consumer"},
            "spec": {
                "consumerApiVersion": "apps/v1",
                "consumerKind": "StatefulSet",
                "consumerName": "views-app",
                "topics": [
                    {
                        "id": "views-topic",
                        "clientConfig": "base-config",
                        "nameSources": [
                            {
                                "directEnvVar": {
                                    "container": "consumer",
                                    "variable": "KAFKA_TOPIC_NAME",
                                }
                            },
                            {"directEnvVar": {"container": "audit", "variable": "AUDIT_TOPIC"}},
                        ],
                        "groupIdSources": [
                            {
                                "directEnvVar": {
                                    "container": "consumer",
                                    "variable": "KAFKA_GROUP_ID",
                                }
                            }
                        ],
                    },
                    {
                        "id": "clicks-topic",
                        "clientConfig": "base-config",
                        "nameSources": [
                            {
                                "directEnvVar": {
                                    "container": "consumer",
                                    "variable": "CLICKS_TOPIC",
                                    "fallback": "clicks",
                                }
                            }
                        ],
                        "groupIdSources": [
                            {
                                "directEnvVar": {
                                    "container": "consumer",
                                    "variable": "KAFKA_GROUP_ID",
                                }
                            }
                        ],
                    },
                ],
            },
        }
    )
    consumer = parse_kind(created, {"MirrordKafkaTopicsConsumer": MirrordKafkaTopicsConsumer})

    read = await read_kafka_topics(
        kube, consumer, workloads=STAND_IN_WORKLOADS, config=STAND_IN_CONFIG
    )

    views, clicks = read.topics["views-topic"], read.topics["clicks-topic"]
    assert (views.topic, views.group_id) == ("views", "views-group")
    assert [(v.container, v.variable, v.origin.kind) for v in views.name_vars] == [
        ("consumer", "KAFKA_TOPIC_NAME", VALUE),
        ("audit", "AUDIT_TOPIC", VALUE),
    ]
    assert [(v.variable, v.origin.kind) for v in views.group_id_vars] == [
        ("KAFKA_GROUP_ID", CONFIG_MAP_KEY_REF)
    ]
    assert (clicks.topic, [v.must_add for v in clicks.name_vars]) == ("clicks", [True])

    with pytest.raises(
        EnvReadingError,
        match=re.escape("has no topic 'nope' (its topics: views-topic, clicks-topic)"),
    ):
        await read_kafka_topics(
            kube, consumer, ["nope"], workloads=STAND_IN_WORKLOADS, config=STAND_IN_CONFIG
        )
