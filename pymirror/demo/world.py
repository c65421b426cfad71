"""What the demo puts into its sandbox: the deployed workload and its queue registry.

* the SQS queue ``orders`` (made by the demo's driver);
* Deployment ``shop`` (the sandbox's stand-in kind), whose container ``main`` runs the
  demo's consumer (:mod:`pymirror.demo.consumer`) as the deployed workload: it reads the
  queue ``ORDERS_QUEUE`` names;
* the queue registry naming that env var (mirrord's own kind, as a user would write it);
* each developer's mirrord config (the queue split by the ``author`` attribute).
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
QUEUES_API = "queues.mirrord.metalbear.co/v1alpha"
TEMPORARY_PREFIX = "mirrord-tmp-"


def consumer_command(name: str, records: Path) -> list[str]:
    """The demo's consumer as ``name``, reading the queue ``ORDERS_QUEUE`` names."""
    command = [sys.executable, "-m", "pymirror.demo.consumer", "--name", name]
    return [*command, "--records", str(records), "--sqs-var", QUEUE_VAR]


def workload(records: Path) -> Obj:
    container = {
        "name": CONTAINER,
        "image": "local",
        "command": consumer_command("workload", records),
        "env": [{"name": QUEUE_VAR, "value": QUEUE}],
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


def developer_config(filter_regex: str) -> dict[str, object]:
    """A developer's mirrord config: the workload's queue split by the author attribute."""
    queues = {QUEUE_ID: {"queue_type": "SQS", "message_filter": {"author": filter_regex}}}
    return {
        "target": {"path": f"deployment/{APP}/container/{CONTAINER}", "namespace": NAMESPACE},
        "feature": {"split_queues": queues},
    }
