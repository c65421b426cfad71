"""What the demo puts into its sandbox: the deployed workload and its registry objects.

* the SQS queue ``orders`` and the Kafka topic ``orders-events`` (made by the demo's
  driver);
* Deployment ``shop`` (the sandbox's stand-in kind), whose container ``main`` runs the
  demo's consumer (:mod:`pymirror.demo.consumer`) as the deployed workload: it reads the
  queue ``ORDERS_QUEUE`` names and the topic ``ORDERS_EVENTS_TOPIC`` names, in the
  consumer group ``ORDERS_EVENTS_GROUP`` names;
* the queue registry naming the queue's env var, the topics consumer naming the topic's
  and the group id's, and the Kafka client config they use (mirrord's own kinds, as a
  user would write them);
* each developer's mirrord config (the queue and the topic split by the ``author``
  attribute or header).

Without Kafka (``pymirror demo --no-kafka``) the topic, its env vars and objects are left
out.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pymirror.sandbox.workloads import STAND_IN_KINDS
from registry.objects import Obj

NAMESPACE = "demo"
OPERATOR_NAMESPACE = "pymirror-system"
APP = "shop"
CONTAINER = "main"
QUEUE, QUEUE_VAR, QUEUE_ID = "orders", "ORDERS_QUEUE", "orders-queue"
TOPIC, TOPIC_VAR, TOPIC_ID = "orders-events", "ORDERS_EVENTS_TOPIC", "orders-events-topic"
GROUP, GROUP_VAR = "shop-orders-events", "ORDERS_EVENTS_GROUP"
#: The MirrordKafkaClientConfig (operator namespace) the topic's split uses.
CLIENT_CONFIG = "demo-kafka"
QUEUES_API = "queues.mirrord.metalbear.co/v1alpha"
TEMPORARY_PREFIX = "mirrord-tmp-"


def consumer_command(name: str, records: Path, *, kafka: bool) -> list[str]:
    """The demo's consumer as ``name``, reading the queue ``ORDERS_QUEUE`` names (and with
    ``kafka`` the topic ``ORDERS_EVENTS_TOPIC`` names, in group ``ORDERS_EVENTS_GROUP``)."""
    command = [sys.executable, "-m", "pymirror.demo.consumer", "--name", name]
    command += ["--records", str(records), "--sqs-var", QUEUE_VAR]
    return [*command, "--kafka-var", TOPIC_VAR, "--group-var", GROUP_VAR] if kafka else command


def workload(records: Path, *, kafka: bool) -> Obj:
    env = [{"name": QUEUE_VAR, "value": QUEUE}]
    if kafka:
        env += [{"name": TOPIC_VAR, "value": TOPIC}, {"name": GROUP_VAR, "value": GROUP}]
    # Ready once the consumer reads (for Kafka: once the group assigned it its partitions),
    # so a rollout stops the old process only after the new one joined.
    ready = ["sh", "-c", f'test -e "{records}/ready-$HOSTNAME"']
    container = {
        "name": CONTAINER,
        "image": "local",
        "command": [
            *consumer_command("workload", records, kafka=kafka),
            "--ready-dir",
            str(records),
        ],
        "env": env,
        "readinessProbe": {"exec": {"command": ready}, "periodSeconds": 1},
    }
    return {
        "apiVersion": STAND_IN_KINDS.resource("Deployment").api_version,
        "kind": "Deployment",
        "metadata": {"name": APP},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": APP}},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {"terminationGracePeriodSeconds": 10, "containers": [container]},
            },
        },
    }


def queue_registry() -> Obj:
    return {
        "apiVersion": QUEUES_API,
        "kind": "MirrordWorkloadQueueRegistry",
        "metadata": {"name": f"{APP}-queues"},
        "spec": {
            "queues": {QUEUE_ID: {"queueType": "SQS", "nameSource": {"envVar": QUEUE_VAR}}},
            "consumer": {"name": APP, "container": CONTAINER, "workloadType": "Deployment"},
        },
    }


def kafka_client_config(bootstrap: str, timeouts: dict[str, int]) -> Obj:
    """The client properties of the topic's split (the split worker's): the sandbox's
    broker, the range assignor and the group timeouts the demo's consumers use too (one
    group, so one assignor all members support)."""
    properties = {
        "bootstrap.servers": bootstrap,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range",
        "session.timeout.ms": str(timeouts["session"]),
        "heartbeat.interval.ms": str(timeouts["heartbeat"]),
    }
    return {
        "apiVersion": QUEUES_API,
        "kind": "MirrordKafkaClientConfig",
        "metadata": {"name": CLIENT_CONFIG},
        "spec": {"properties": [{"name": k, "value": v} for k, v in properties.items()]},
    }


def kafka_topics_consumer() -> Obj:
    """Where the workload finds the topic's name and its consumer group id."""
    source = {"container": CONTAINER}
    topic = {
        "id": TOPIC_ID,
        "clientConfig": CLIENT_CONFIG,
        "nameSources": [{"directEnvVar": {**source, "variable": TOPIC_VAR}}],
        "groupIdSources": [{"directEnvVar": {**source, "variable": GROUP_VAR}}],
    }
    return {
        "apiVersion": QUEUES_API,
        "kind": "MirrordKafkaTopicsConsumer",
        "metadata": {"name": f"{APP}-topics-consumer"},
        "spec": {
            "consumerApiVersion": STAND_IN_KINDS.resource("Deployment").api_version,
            "consumerKind": "Deployment",
            "consumerName": APP,
            "topics": [topic],
        },
    }


def developer_config(filter_regex: str, *, kafka: bool) -> dict[str, object]:
    """A developer's mirrord config: the workload's queue (and topic) split by the author
    attribute (header)."""
    author = {"message_filter": {"author": filter_regex}}
    queues = {QUEUE_ID: {"queue_type": "SQS", **author}}
    if kafka:
        queues[TOPIC_ID] = {"queue_type": "Kafka", **author}
    return {
        "target": {"path": f"deployment/{APP}/container/{CONTAINER}", "namespace": NAMESPACE},
        "feature": {"split_queues": queues},
    }
