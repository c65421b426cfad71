"""registry.models and crds/*.yaml agree: each example is accepted by both or rejected by both.

Accepted by the server means a server-side create succeeds; rejected means a 422
(``InvalidError``). Accepted by the model means ``parse_object`` returns; rejected
means ``ModelError`` (a pydantic ``ValidationError`` underneath). The table holds
valid objects and deliberately invalid ones: a required field missing, a value
outside an enum, a wrong type, an empty string or list where the CRD sets a minimum,
a bad pattern, a duplicate list-map key.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from registry.errors import InvalidError, ModelError
from registry.models import API_VERSION, KINDS, parse_object
from registry.objects import Kube

pytestmark = pytest.mark.integration

Obj = dict[str, Any]


def queue_registry() -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": "MirrordWorkloadQueueRegistry",
        "metadata": {"name": "meme-app-q-registry"},
        "spec": {
            "queues": {
                "meme-queue": {
                    "queueType": "SQS",
                    "nameSource": {"envVar": "INCOMING_MEME_QUEUE_NAME"},
                    "tags": {"tool": "mirrord"},
                },
            },
            "consumer": {"name": "meme-app", "container": "main", "workloadType": "Deployment"},
        },
    }


def topics_consumer() -> Obj:
    source = {"directEnvVar": {"container": "consumer", "variable": "KAFKA_GROUP_ID"}}
    return {
        "apiVersion": API_VERSION,
        "kind": "MirrordKafkaTopicsConsumer",
        "metadata": {"name": "meme-app-topics-consumer"},
        "spec": {
            "consumerApiVersion": "apps/v1",
            "consumerKind": "Deployment",
            "consumerName": "meme-app",
            "topics": [
                {
                    "id": "views-topic",
                    "clientConfig": "base-config",
                    "groupIdSources": [source],
                    "nameSources": [
                        {"directEnvVar": {"container": "consumer", "variable": "TOPIC"}}
                    ],
                }
            ],
        },
    }


def client_config() -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": "MirrordKafkaClientConfig",
        "metadata": {"name": "base-config"},
        "spec": {
            "parent": "root-config",
            "loadFromSecret": "mirrord/my-secret",
            "properties": [
                {"name": "bootstrap.servers", "value": "kafka:9092"},
                {"name": "message.send.max.retries", "value": 4},
                {"name": "enable.idempotence", "value": False},
                {"name": "client.id", "value": None},
            ],
        },
    }


DROP = object()
"""A change's value that removes the key."""


def variant(make: Callable[[], Obj], *changes: tuple[str, object]) -> Obj:
    """``make()`` with each ``("a/b/0/c", value)`` change applied (``DROP`` removes)."""
    obj = make()
    for path, value in changes:
        *parents, last = path.split("/")
        target: Any = obj
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is DROP:
            del target[last]
        else:
            target[last] = copy.deepcopy(value)
    return obj


R, T, C = queue_registry, topics_consumer, client_config
QUEUE = "spec/queues/meme-queue"
TOPIC = "spec/topics/0"

CASES: list[tuple[str, Obj, bool]] = [
    # --- MirrordWorkloadQueueRegistry
    ("registry: reference example", R(), True),
    (
        "registry: Kafka queue, no tags, no container",
        variant(R, (f"{QUEUE}/queueType", "Kafka"), (f"{QUEUE}/tags", DROP),
                ("spec/consumer/container", DROP)),
        True,
    ),
    ("registry: no queues at all", variant(R, ("spec/queues", {})), True),
    ("registry: unknown field (pruned, kept by the model)", variant(R, ("spec/future", 1)), True),
    ("registry: missing spec", variant(R, ("spec", DROP)), False),
    ("registry: missing consumer", variant(R, ("spec/consumer", DROP)), False),
    ("registry: missing nameSource", variant(R, (f"{QUEUE}/nameSource", DROP)), False),
    ("registry: queueType not in the enum", variant(R, (f"{QUEUE}/queueType", "NATS")), False),
    ("registry: workloadType not in the enum",
     variant(R, ("spec/consumer/workloadType", "Job")), False),
    ("registry: empty envVar", variant(R, (f"{QUEUE}/nameSource/envVar", "")), False),
    ("registry: tag value is a number", variant(R, (f"{QUEUE}/tags", {"n": 1})), False),
    ("registry: queues is a list", variant(R, ("spec/queues", [])), False),
    ("registry: consumer name is a number", variant(R, ("spec/consumer/name", 5)), False),
    ("registry: name not a DNS subdomain", variant(R, ("metadata/name", "Bad_Name")), False),
    # --- MirrordKafkaTopicsConsumer
    ("topics: reference example", T(), True),
    (
        "topics: Rollout consumer, no topics",
        variant(T, ("spec/consumerKind", "Rollout"),
                ("spec/consumerApiVersion", "argoproj.io/v1alpha1"), ("spec/topics", [])),
        True,
    ),
    ("topics: missing topics", variant(T, ("spec/topics", DROP)), False),
    ("topics: missing consumerName", variant(T, ("spec/consumerName", DROP)), False),
    ("topics: consumerKind not in the enum", variant(T, ("spec/consumerKind", "Job")), False),
    ("topics: no groupIdSources", variant(T, (f"{TOPIC}/groupIdSources", [])), False),
    ("topics: source without directEnvVar", variant(T, (f"{TOPIC}/nameSources", [{}])), False),
    ("topics: variable is a list",
     variant(T, (f"{TOPIC}/nameSources/0/directEnvVar/variable", ["X"])), False),
    ("topics: empty clientConfig", variant(T, (f"{TOPIC}/clientConfig", "")), False),
    ("topics: duplicate topic id",
     variant(T, ("spec/topics", [T()["spec"]["topics"][0]] * 2)), False),
    # --- MirrordKafkaClientConfig
    ("config: reference example", C(), True),
    ("config: empty spec", variant(C, ("spec", {})), True),
    ("config: property without value", variant(C, ("spec/properties", [{"name": "x"}])), True),
    ("config: non-scalar value (the CRD preserves it)",
     variant(C, ("spec/properties", [{"name": "x", "value": {"a": [1]}}])), True),
    ("config: missing spec", variant(C, ("spec", DROP)), False),
    ("config: property without name", variant(C, ("spec/properties", [{"value": "v"}])), False),
    ("config: property name is a number",
     variant(C, ("spec/properties", [{"name": 7, "value": "v"}])), False),
    ("config: loadFromSecret without namespace",
     variant(C, ("spec/loadFromSecret", "my-secret")), False),
    ("config: empty parent", variant(C, ("spec/parent", "")), False),
    ("config: properties is an object", variant(C, ("spec/properties", {})), False),
]  # fmt: skip


def model_accepts(obj: Obj) -> bool:
    try:
        parse_object(obj)
    except ModelError as e:
        if not isinstance(e.__cause__, ValidationError):
            raise
        return False
    return True


async def server_accepts(kube: Kube, namespace: str, obj: Obj) -> bool:
    objects = kube.objects(KINDS[obj["kind"]].RESOURCE, namespace)
    try:
        await objects.create(obj)
    except InvalidError:
        return False
    return True


def test_the_table_covers_every_kind_both_ways() -> None:
    covered = {(obj["kind"], valid) for _, obj, valid in CASES}
    assert covered == {(kind, valid) for kind in KINDS for valid in (True, False)}


@pytest.mark.parametrize(("obj", "valid"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_model_and_crd_agree(kube: Kube, unique_name: str, obj: Obj, valid: bool) -> None:
    assert (model_accepts(obj), await server_accepts(kube, unique_name, obj)) == (valid, valid)


async def test_a_model_round_trip_keeps_what_the_server_stored(
    kube: Kube, unique_name: str
) -> None:
    for make in (R, T, C):
        stored = await kube.objects(KINDS[make()["kind"]].RESOURCE, unique_name).create(make())
        model = parse_object(stored)
        assert model.to_body() == stored  # managedFields, uid, ... kept as extra fields
