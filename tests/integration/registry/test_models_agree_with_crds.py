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
from registry.models import API_VERSION, KINDS, parse_kind
from registry.objects import Kube
from registry.session_models import API_VERSION as PYMIRROR_API_VERSION
from registry.session_models import PYMIRROR_KINDS

pytestmark = pytest.mark.integration

Obj = dict[str, Any]
ALL_KINDS = {**KINDS, **PYMIRROR_KINDS}


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


SOURCE = {"directEnvVar": {"container": "consumer", "variable": "KAFKA_GROUP_ID"}}


def topics_consumer() -> Obj:
    source = copy.deepcopy(SOURCE)
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


def split_session() -> Obj:
    return {
        "apiVersion": PYMIRROR_API_VERSION,
        "kind": "SplitSession",
        "metadata": {"name": "alice-meme"},
        "spec": {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "meme-app",
                       "container": "main"},
            "owner": {"username": "alice", "hostname": "laptop", "k8sUsername": "alice@corp"},
            "queues": [
                {"id": "meme-queue", "kind": "SQS", "messageFilter": {"author": "^alice$"}},
                {"id": "views-topic", "kind": "Kafka", "jqFilter": ".total > 100",
                 "mode": "mirror"},
            ],
            "leaseSeconds": 30,
            "renewTime": "2026-05-01T10:00:00Z",
        },
        "status": {
            "phase": "Ready",
            "sequence": 3,
            "message": "splitting 2 queues",
            "queues": [
                {"id": "meme-queue", "kind": "SQS", "original": "memes",
                 "split": "meme-app-meme-queue", "temporary": "mirrord-tmp-1-memes",
                 "envVar": "INCOMING_MEME_QUEUE_NAME", "value": "mirrord-tmp-1-memes"},
            ],
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Provisioned",
                 "lastTransitionTime": "2026-05-01T10:00:01.5+02:00", "observedGeneration": 1},
            ],
        },
    }  # fmt: skip


def queue_split() -> Obj:
    return {
        "apiVersion": PYMIRROR_API_VERSION,
        "kind": "QueueSplit",
        "metadata": {"name": "meme-app-views-topic"},
        "spec": {
            "kind": "Kafka",
            "queueId": "views-topic",
            "original": "views",
            "groupId": "meme-app",
            "clientConfig": "base-config",
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "meme-app",
                       "namespace": "default", "container": "consumer",
                       "envVar": "KAFKA_TOPIC_NAME"},
            "fallback": "mirrord-tmp-2-fallback-views",
            "routes": [
                {"session": "default/alice-meme", "sequence": 3,
                 "destination": "mirrord-tmp-1-views", "jqFilter": ".total > 100",
                 "mode": "mirror"},
            ],
            "handBack": False,
        },
        "status": {
            "appliedGeneration": 2,
            "activeSessions": 1,
            "endedSessions": ["default/bob-meme"],
            "handBack": {"phase": "Draining", "remaining": 0, "message": "waiting"},
            "counters": {"read": 10, "unmatched": 2, "fallback": 7, "failed": 0, "lag": 1,
                         "forwarded": {"default/alice-meme": 3}},
            "temporaryResources": [
                {"name": "mirrord-tmp-2-fallback-views", "role": "fallback", "created": True},
                {"name": "mirrord-tmp-1-views", "role": "session",
                 "session": "default/alice-meme", "created": False},
            ],
            "workload": {"state": "RolledOut", "observedGeneration": 4},
            "workerDeployment": "pymirror-worker-meme-app-views-topic",
            "conditions": [{"type": "WorkerReady", "status": "False", "reason": "Starting"}],
        },
    }  # fmt: skip


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
        key: str | int = int(last) if isinstance(target, list) else last
        if value is DROP:
            del target[key]
        else:
            target[key] = copy.deepcopy(value)
    return obj


R, T, C, S, Q = queue_registry, topics_consumer, client_config, split_session, queue_split
QUEUE = "spec/queues/meme-queue"
TOPIC = "spec/topics/0"
SQ, SS = "spec/queues/0", "status/queues/0"
ROUTE, RES = "spec/routes/0", "status/temporaryResources/1"
SQS_SPLIT = (("spec/kind", "SQS"), ("spec/groupId", DROP), ("spec/clientConfig", DROP))

CASES: list[tuple[str, Obj, bool]] = [
    # --- MirrordWorkloadQueueRegistry
    ("registry: reference example", R(), True),
    ("registry: no tags, no container",
     variant(R, (f"{QUEUE}/tags", DROP), ("spec/consumer/container", DROP)), True),
    ("registry: no queues at all", variant(R, ("spec/queues", {})), True),
    ("registry: unknown field (pruned, kept by the model)", variant(R, ("spec/future", 1)), True),
    ("registry: regexPattern instead of envVar",
     variant(R, (f"{QUEUE}/nameSource", {"regexPattern": "^MEME_.*_QUEUE$"})), True),
    ("registry: every optional queue field",
     variant(R, (f"{QUEUE}/fallbackName", "memes.fifo"), (f"{QUEUE}/namesFromJsonMap", True),
             (f"{QUEUE}/sns", True), (f"{QUEUE}/s3Event", False)), True),
    ("registry: workloadRestartTimeout", variant(R, ("spec/workloadRestartTimeout", 300)), True),
    ("registry: workloadRestartTimeout 0 (as mirrord's u32)",
     variant(R, ("spec/workloadRestartTimeout", 0)), True),
    ("registry: an unknown queueType with its own fields is kept",
     variant(R, (QUEUE, {"queueType": "RMQ", "clusterProperties": "rmq-props",
                         "nameSource": {"envVar": "Q"}})), True),
    ("registry: an unknown queueType without a nameSource",
     variant(R, (QUEUE, {"queueType": "Kafka"})), True),
    ("registry: missing spec", variant(R, ("spec", DROP)), False),
    ("registry: missing consumer", variant(R, ("spec/consumer", DROP)), False),
    ("registry: missing queueType", variant(R, (f"{QUEUE}/queueType", DROP)), False),
    ("registry: empty queueType", variant(R, (f"{QUEUE}/queueType", "")), False),
    ("registry: queueType is a number", variant(R, (f"{QUEUE}/queueType", 1)), False),
    ("registry: SQS queue without nameSource", variant(R, (f"{QUEUE}/nameSource", DROP)), False),
    ("registry: nameSource with neither envVar nor regexPattern",
     variant(R, (f"{QUEUE}/nameSource", {})), False),
    ("registry: nameSource with both envVar and regexPattern",
     variant(R, (f"{QUEUE}/nameSource/regexPattern", "^Q")), False),
    ("registry: bad nameSource of an unknown queueType",
     variant(R, (QUEUE, {"queueType": "RMQ", "nameSource": {}})), False),
    ("registry: workloadType not in the enum",
     variant(R, ("spec/consumer/workloadType", "Job")), False),
    ("registry: empty envVar", variant(R, (f"{QUEUE}/nameSource/envVar", "")), False),
    ("registry: empty regexPattern",
     variant(R, (f"{QUEUE}/nameSource", {"regexPattern": ""})), False),
    ("registry: empty fallbackName", variant(R, (f"{QUEUE}/fallbackName", "")), False),
    ("registry: namesFromJsonMap is a string",
     variant(R, (f"{QUEUE}/namesFromJsonMap", "true")), False),
    ("registry: sns is a number", variant(R, (f"{QUEUE}/sns", 1)), False),
    ("registry: tag value is a number", variant(R, (f"{QUEUE}/tags", {"n": 1})), False),
    ("registry: negative workloadRestartTimeout",
     variant(R, ("spec/workloadRestartTimeout", -1)), False),
    ("registry: workloadRestartTimeout as a duration string",
     variant(R, ("spec/workloadRestartTimeout", "120s")), False),
    ("registry: workloadRestartTimeout beyond u32",
     variant(R, ("spec/workloadRestartTimeout", 2**32)), False),
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
    ("topics: splitTtl and consumerRestartTimeout",
     variant(T, ("spec/splitTtl", 600), ("spec/consumerRestartTimeout", 90)), True),
    ("topics: a directEnvVar fallback",
     variant(T, (f"{TOPIC}/nameSources/0/directEnvVar/fallback", "views")), True),
    ("topics: applicationIdSources instead of groupIdSources",
     variant(T, (f"{TOPIC}/applicationIdSources", [SOURCE]), (f"{TOPIC}/groupIdSources", DROP)),
     True),
    ("topics: empty groupIdSources beside applicationIdSources (as mirrord writes it)",
     variant(T, (f"{TOPIC}/applicationIdSources", [SOURCE]), (f"{TOPIC}/groupIdSources", [])),
     True),
    ("topics: missing topics", variant(T, ("spec/topics", DROP)), False),
    ("topics: missing consumerName", variant(T, ("spec/consumerName", DROP)), False),
    ("topics: consumerKind not in the enum", variant(T, ("spec/consumerKind", "Job")), False),
    ("topics: no groupIdSources", variant(T, (f"{TOPIC}/groupIdSources", [])), False),
    ("topics: groupIdSources absent", variant(T, (f"{TOPIC}/groupIdSources", DROP)), False),
    ("topics: both groupIdSources and applicationIdSources",
     variant(T, (f"{TOPIC}/applicationIdSources", [SOURCE])), False),
    ("topics: no nameSources", variant(T, (f"{TOPIC}/nameSources", [])), False),
    ("topics: source without directEnvVar", variant(T, (f"{TOPIC}/nameSources", [{}])), False),
    ("topics: variable is a list",
     variant(T, (f"{TOPIC}/nameSources/0/directEnvVar/variable", ["X"])), False),
    ("topics: empty fallback",
     variant(T, (f"{TOPIC}/nameSources/0/directEnvVar/fallback", "")), False),
    ("topics: empty clientConfig", variant(T, (f"{TOPIC}/clientConfig", "")), False),
    ("topics: negative splitTtl", variant(T, ("spec/splitTtl", -5)), False),
    ("topics: splitTtl is a string", variant(T, ("spec/splitTtl", "10m")), False),
    ("topics: consumerRestartTimeout is a boolean",
     variant(T, ("spec/consumerRestartTimeout", True)), False),
    ("topics: duplicate topic id",
     variant(T, ("spec/topics", [T()["spec"]["topics"][0]] * 2)), False),
    # --- MirrordKafkaClientConfig
    ("config: reference example", C(), True),
    ("config: empty spec", variant(C, ("spec", {})), True),
    ("config: property without value", variant(C, ("spec/properties", [{"name": "x"}])), True),
    ("config: non-scalar value (the CRD preserves it)",
     variant(C, ("spec/properties", [{"name": "x", "value": {"a": [1]}}])), True),
    ("config: clientImplementation and authenticationExtra",
     variant(C, ("spec/clientImplementation", "java"),
             ("spec/authenticationExtra", {"kind": "MSK_IAM", "awsRegion": "eu-west-1"})), True),
    ("config: an unknown clientImplementation is kept",
     variant(C, ("spec/clientImplementation", "rust")), True),
    ("config: missing spec", variant(C, ("spec", DROP)), False),
    ("config: property without name", variant(C, ("spec/properties", [{"value": "v"}])), False),
    ("config: property name is a number",
     variant(C, ("spec/properties", [{"name": 7, "value": "v"}])), False),
    ("config: loadFromSecret without namespace",
     variant(C, ("spec/loadFromSecret", "my-secret")), False),
    ("config: empty parent", variant(C, ("spec/parent", "")), False),
    ("config: properties is an object", variant(C, ("spec/properties", {})), False),
    ("config: empty clientImplementation", variant(C, ("spec/clientImplementation", "")), False),
    ("config: authenticationExtra without kind",
     variant(C, ("spec/authenticationExtra", {"awsRegion": "eu-west-1"})), False),
    # --- SplitSession (a case with a status writes it through the status subresource)
    ("session: reference example", S(), True),
    ("session: only the required fields",
     variant(S, ("spec/target/container", DROP), ("spec/leaseSeconds", DROP),
             ("spec/renewTime", DROP), ("status", DROP)), True),
    ("session: every queue of a kind", variant(S, (f"{SQ}/id", "*")), True),
    ("session: a StatefulSet target with a dotted name",
     variant(S, ("spec/target/kind", "StatefulSet"), ("spec/target/name", "memes.v2")), True),
    ("session: the same id for an SQS queue and a Kafka topic",
     variant(S, ("spec/queues/1/id", "meme-queue")), True),
    ("session: leaseSeconds at the minimum", variant(S, ("spec/leaseSeconds", 6)), True),
    ("session: missing owner", variant(S, ("spec/owner", DROP)), False),
    ("session: empty k8sUsername", variant(S, ("spec/owner/k8sUsername", "")), False),
    ("session: no queues", variant(S, ("spec/queues", [])), False),
    ("session: queue kind not in the enum", variant(S, (f"{SQ}/kind", "RabbitMQ")), False),
    ("session: mode not in the enum", variant(S, (f"{SQ}/mode", "copy")), False),
    ("session: empty jqFilter", variant(S, (f"{SQ}/jqFilter", "")), False),
    ("session: filter value is a number", variant(S, (f"{SQ}/messageFilter", {"a": 1})), False),
    ("session: duplicate queue id and kind",
     variant(S, ("spec/queues/1", S()["spec"]["queues"][0])), False),
    ("session: target kind not in the enum", variant(S, ("spec/target/kind", "Job")), False),
    ("session: target name not a DNS subdomain",
     variant(S, ("spec/target/name", "Meme_App")), False),
    ("session: container not a DNS label", variant(S, ("spec/target/container", "a.b")), False),
    ("session: leaseSeconds below the minimum", variant(S, ("spec/leaseSeconds", 5)), False),
    ("session: renewTime not a date-time", variant(S, ("spec/renewTime", "yesterday")), False),
    ("session: renewTime without an offset",
     variant(S, ("spec/renewTime", "2026-05-01T10:00:00")), False),
    ("session: renewTime on a day that does not exist",
     variant(S, ("spec/renewTime", "2026-02-30T10:00:00Z")), False),
    ("session: status phase not in the enum", variant(S, ("status/phase", "Running")), False),
    ("session: status sequence 0", variant(S, ("status/sequence", 0)), False),
    ("session: status endReason not in the enum",
     variant(S, ("status/endReason", "Timeout")), False),
    ("session: status queue without original", variant(S, (f"{SS}/original", DROP)), False),
    ("session: status queue split not a DNS subdomain",
     variant(S, (f"{SS}/split", "Bad Split")), False),
    ("session: condition status not in the enum",
     variant(S, ("status/conditions/0/status", "Yes")), False),
    # --- QueueSplit
    ("split: reference example (Kafka)", Q(), True),
    ("split: an SQS queue with only the required fields",
     variant(Q, *SQS_SPLIT, ("spec/queueId", DROP), ("spec/target/container", DROP),
             ("spec/target/envVar", DROP), ("spec/fallback", DROP), ("spec/routes", DROP),
             ("spec/handBack", DROP), ("status", DROP)), True),
    ("split: hand-back with no routes",
     variant(Q, ("spec/routes", []), ("spec/handBack", True)), True),
    ("split: status with an SQS queue url",
     variant(Q, (f"{RES}/url", "https://sqs.eu-west-1.amazonaws.com/1/mirrord-tmp-1")), True),
    ("split: missing target", variant(Q, ("spec/target", DROP)), False),
    ("split: kind in lower case", variant(Q, ("spec/kind", "kafka")), False),
    ("split: Kafka without groupId", variant(Q, ("spec/groupId", DROP)), False),
    ("split: Kafka without clientConfig", variant(Q, ("spec/clientConfig", DROP)), False),
    ("split: SQS with a groupId", variant(Q, *SQS_SPLIT, ("spec/groupId", "g")), False),
    ("split: target without namespace", variant(Q, ("spec/target/namespace", DROP)), False),
    ("split: target namespace not a DNS label",
     variant(Q, ("spec/target/namespace", "my.ns")), False),
    ("split: route sequence 0", variant(Q, (f"{ROUTE}/sequence", 0)), False),
    ("split: route session without its namespace",
     variant(Q, (f"{ROUTE}/session", "alice-meme")), False),
    ("split: route with an empty destination", variant(Q, (f"{ROUTE}/destination", "")), False),
    ("split: route mode not in the enum", variant(Q, (f"{ROUTE}/mode", "copy")), False),
    ("split: duplicate route session",
     variant(Q, ("spec/routes", Q()["spec"]["routes"] * 2)), False),
    ("split: handBack is a string", variant(Q, ("spec/handBack", "yes")), False),
    ("split: negative counter", variant(Q, ("status/counters/lag", -1)), False),
    ("split: forwarded count is a string",
     variant(Q, ("status/counters/forwarded", {"default/alice-meme": "3"})), False),
    ("split: duplicate ended session",
     variant(Q, ("status/endedSessions", ["default/a", "default/a"])), False),
    ("split: hand-back phase not in the enum",
     variant(Q, ("status/handBack/phase", "Waiting")), False),
    ("split: a session's resource without its session", variant(Q, (f"{RES}/session", DROP)),
     False),
    ("split: the fallback with a session",
     variant(Q, ("status/temporaryResources/0/session", "default/alice-meme")), False),
    ("split: resource role not in the enum", variant(Q, (f"{RES}/role", "spare")), False),
    ("split: duplicate temporary resource name",
     variant(Q, (f"{RES}/name", "mirrord-tmp-2-fallback-views")), False),
    ("split: workload state not in the enum",
     variant(Q, ("status/workload/state", "Done")), False),
    ("split: workload without state", variant(Q, ("status/workload", {})), False),
    ("split: workerDeployment not a DNS subdomain",
     variant(Q, ("status/workerDeployment", "Worker_1")), False),
]  # fmt: skip


def model_accepts(obj: Obj) -> bool:
    try:
        parse_kind(obj, ALL_KINDS)
    except ModelError as e:
        if not isinstance(e.__cause__, ValidationError):
            raise
        return False
    return True


async def server_accepts(kube: Kube, namespace: str, obj: Obj) -> bool:
    """Created, and a status (ignored by a create) written through the status subresource."""
    objects = kube.objects(ALL_KINDS[obj["kind"]].RESOURCE, namespace)
    body = {k: v for k, v in obj.items() if k != "status"}
    try:
        created = await objects.create(body)
        if "status" in obj:
            await objects.patch_status(created["metadata"]["name"], obj["status"])
    except InvalidError:
        return False
    return True


def test_the_table_covers_every_kind_both_ways() -> None:
    covered = {(obj["kind"], valid) for _, obj, valid in CASES}
    assert covered == {(kind, valid) for kind in ALL_KINDS for valid in (True, False)}


@pytest.mark.parametrize(("obj", "valid"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_model_and_crd_agree(kube: Kube, unique_name: str, obj: Obj, valid: bool) -> None:
    assert (model_accepts(obj), await server_accepts(kube, unique_name, obj)) == (valid, valid)


async def test_a_model_round_trip_keeps_what_the_server_stored(
    kube: Kube, unique_name: str
) -> None:
    unknown_queue = variant(
        R,
        (
            QUEUE,
            {
                "queueType": "RMQ",
                "clusterProperties": "props",
                "queueProperties": {"x-max-length": 10},
            },
        ),
        ("metadata/name", "rmq-registry"),
    )
    for obj in (R(), T(), C(), unknown_queue):
        stored = await kube.objects(ALL_KINDS[obj["kind"]].RESOURCE, unique_name).create(obj)
        model = parse_kind(stored, ALL_KINDS)
        assert model.to_body() == stored  # managedFields, uid, ... kept as extra fields
    assert stored["spec"]["queues"]["meme-queue"]["queueProperties"] == {"x-max-length": 10}


async def test_a_model_round_trip_keeps_a_stored_status(kube: Kube, unique_name: str) -> None:
    for make in (S, Q):
        objects = kube.objects(ALL_KINDS[make()["kind"]].RESOURCE, unique_name)
        created = await objects.create({k: v for k, v in make().items() if k != "status"})
        stored = await objects.patch_status(created["metadata"]["name"], make()["status"])
        assert stored["status"] == make()["status"]
        assert parse_kind(stored, ALL_KINDS).to_body() == stored
