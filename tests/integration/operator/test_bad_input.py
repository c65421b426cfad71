"""Bad input through the whole operator: each a ``Failed`` session, nothing created.

The operator (``pymirror.operator.controller.build``) runs in the test's event loop on
the real test API server, with moto and (for the Kafka cases) a real broker. Each case
breaks one thing the session depends on: a Kafka client config whose parents form a
cycle, a client config's ``loadFromSecret`` naming a missing Secret, a registry queue
read from a ConfigMap that does not exist, a registry queue whose env var the target's
container does not have. Each must end the session ``Failed`` (condition reason
``Invalid``) with a message that starts with the field at fault and ends with the fix,
count one ``Invalid`` in ``pymirror_operator_provisioning_failures_total``, and leave
no QueueSplit, no worker Deployment, no temporary queue or topic, and the workload
untouched (same resourceVersion, no original-env annotation).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from registry.env_patch import ORIGINAL_ENV_ANNOTATION
from registry.models import API_VERSION as MODELS_API_VERSION
from registry.models import MirrordKafkaClientConfig, MirrordKafkaTopicsConsumer
from registry.objects import Kube, Obj
from registry.session_models import QueueSplit, SplitSession
from splitter.sqs.client import SqsClient
from tests.integration.kafka.support import list_topics
from tests.integration.operator.support import (
    APP,
    DEPLOYMENTS,
    IDLE,
    REGISTRIES,
    app_body,
    meme_registry,
    operating,
    operator_settings,
    session_body,
    settled,
)
from tests.integration.sqs.support import make_queue
from tests.servers.kafka import KAFKA_KINDS, RunningKafka
from tests.servers.kube import KubeApi
from tests.servers.pool import ServerPool
from tests.servers.sqs import SqsEndpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FAILURES = "pymirror_operator_provisioning_failures_total"


@dataclass(frozen=True)
class Case:
    session_queue: Obj
    #: client configs in the operator namespace: name -> spec ("{ops}" is its namespace)
    configs: dict[str, dict[str, Any]]
    #: the app's AD_QUEUE_NAME env entry (without its name)
    ad_env: dict[str, Any]
    message_start: str
    message_end: str


KAFKA = {"id": "views-topic", "kind": "Kafka", "messageFilter": {"user": "^x$"}}
BOOTSTRAP = {"name": "bootstrap.servers", "value": "localhost:9"}
CASES = {
    "client-config-cycle": Case(
        KAFKA,
        {"base-config": {"parent": "other"}, "other": {"parent": "base-config"}},
        {"value": "ads"},
        "spec.queues[0]: topic 'views-topic' of MirrordKafkaTopicsConsumer {ns}/app-topics: "
        "clientConfig 'base-config': MirrordKafkaClientConfig parent cycle: ",
        "base-config -> other -> base-config; remove one spec.parent",
    ),
    "missing-secret": Case(
        KAFKA,
        {"base-config": {"loadFromSecret": "{ops}/kafka-auth"}},
        {"value": "ads"},
        "spec.queues[0]: topic 'views-topic' of MirrordKafkaTopicsConsumer {ns}/app-topics: "
        "clientConfig 'base-config': MirrordKafkaClientConfig base-config: spec.loadFromSecret ",
        "Secret {ops}/kafka-auth not found; create it or fix the reference",
    ),
    "missing-config-map": Case(
        {"id": "ad-queue", "kind": "SQS", "messageFilter": {"author": "^x$"}},
        {},
        {"valueFrom": {"configMapKeyRef": {"name": "meme-queues", "key": "ads"}}},
        "spec.queues[0]: MirrordWorkloadQueueRegistry {ns}/meme-app-q-registry queue "
        "'ad-queue': env var AD_QUEUE_NAME of container main of Deployment {ns}/meme-app comes "
        "from valueFrom.configMapKeyRef, but ConfigMap meme-queues does not exist",
        "create the ConfigMap key or fix the reference",
    ),
    "env-var-absent": Case(
        {"id": "missing", "kind": "SQS", "messageFilter": {"author": "^x$"}},
        {},
        {"value": "ads"},
        "spec.queues[0]: MirrordWorkloadQueueRegistry {ns}/meme-app-q-registry queue "
        "'missing': env var NOT_THERE of container main of Deployment {ns}/meme-app is not set",
        "add it to the container, or set fallbackName in the registry's queue",
    ),
}


def topics_consumer() -> Obj:
    return {
        "apiVersion": f"{MirrordKafkaTopicsConsumer.RESOURCE.group}/"
        f"{MirrordKafkaTopicsConsumer.RESOURCE.version}",
        "kind": "MirrordKafkaTopicsConsumer",
        "metadata": {"name": "app-topics"},
        "spec": {
            "consumerApiVersion": DEPLOYMENTS.api_version,
            "consumerKind": "Deployment",
            "consumerName": APP,
            "topics": [
                {
                    "id": "views-topic",
                    "clientConfig": "base-config",
                    "groupIdSources": [
                        {"directEnvVar": {"container": "main", "variable": "GROUP"}}
                    ],
                    "nameSources": [{"directEnvVar": {"container": "main", "variable": "TOPIC"}}],
                }
            ],
        },
    }


@dataclass
class Refused:
    kube: Kube
    sqs: SqsClient
    namespace: str
    operator_namespace: str
    metrics: CollectorRegistry
    before: Obj
    topic: str


@pytest.fixture(params=sorted(CASES))
def case_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def refused(
    case_name: str,
    kube: Kube,
    kube_api: KubeApi,
    sqs: SqsClient,
    moto_endpoint: SqsEndpoint,
    namespaces: tuple[str, str],
) -> AsyncIterator[Refused]:
    case = CASES[case_name]
    namespace, ops = namespaces
    memes = await make_queue(sqs, f"memes-{namespace}")
    await make_queue(sqs, f"ads-{namespace}")
    topic = f"{namespace}.views"
    env = [
        {"name": "INCOMING_MEME_QUEUE_NAME", "value": memes.rpartition("/")[2]},
        {"name": "AD_QUEUE_NAME", **case.ad_env},
        {"name": "TOPIC", "value": topic},
        {"name": "GROUP", "value": "views-group"},
    ]
    before = await kube.objects(DEPLOYMENTS, namespace).create(
        app_body(env, name=APP, image="local", command=IDLE)
    )
    registry = meme_registry()
    registry["spec"]["queues"]["missing"] = {
        "queueType": "SQS",
        "nameSource": {"envVar": "NOT_THERE"},
    }
    await kube.objects(REGISTRIES, namespace).create(registry)
    await kube.objects(MirrordKafkaTopicsConsumer.RESOURCE, namespace).create(topics_consumer())
    for name, spec in case.configs.items():
        body = {
            "apiVersion": MODELS_API_VERSION,
            "kind": "MirrordKafkaClientConfig",
            "metadata": {"name": name},
            "spec": {
                "properties": [BOOTSTRAP],
                **{k: v.format(ops=ops) for k, v in spec.items()},
            },
        }
        await kube.objects(MirrordKafkaClientConfig.RESOURCE, ops).create(body)
    settings = operator_settings(kube_api, moto_endpoint, ops)
    metrics = CollectorRegistry()
    async with operating(kube, settings, namespace, registry=metrics):
        yield Refused(kube, sqs, namespace, ops, metrics, before, topic)


async def test_a_session_on_bad_input_fails_naming_the_field_and_creates_nothing(
    refused: Refused, case_name: str, request: pytest.FixtureRequest
) -> None:
    r, case = refused, CASES[case_name]
    sessions = r.kube.objects(SplitSession.RESOURCE, r.namespace)
    body = session_body("alice")
    body["spec"]["queues"] = [case.session_queue]
    await sessions.create(body)

    obj = await settled(sessions, "alice")

    status = obj["status"]
    assert (status["phase"], status["endReason"]) == ("Failed", "Failed"), status
    message = str(status["message"])
    start = case.message_start.format(ns=r.namespace, ops=r.operator_namespace)
    end = case.message_end.format(ns=r.namespace, ops=r.operator_namespace)
    assert message.startswith(start), message
    assert message.endswith(end), message
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Invalid")
    assert r.metrics.get_sample_value(FAILURES, {"reason": "Invalid"}) == 1.0
    assert r.metrics.get_sample_value(FAILURES, {"reason": "ProvisioningFailed"}) == 0.0
    # nothing created, nothing changed
    assert "queues" not in status or not status["queues"]
    assert (await r.kube.objects(QueueSplit.RESOURCE, r.operator_namespace).list()).items == []
    assert (await r.kube.objects(DEPLOYMENTS, r.operator_namespace).list()).items == []
    app = await r.kube.objects(DEPLOYMENTS, r.namespace).get(APP)
    assert app["metadata"]["resourceVersion"] == r.before["metadata"]["resourceVersion"]
    assert ORIGINAL_ENV_ANNOTATION not in (app["metadata"].get("annotations") or {})
    temporary = [u for u in await r.sqs.list_queues("mirrord-") if r.namespace in u]
    assert temporary == []
    if case.session_queue["kind"] == "Kafka":
        servers: ServerPool[RunningKafka] = request.getfixturevalue("kafka_servers")
        broker = servers.get(KAFKA_KINDS[0]).broker
        assert [t for t in await list_topics(broker) if t.endswith(r.topic)] == []
