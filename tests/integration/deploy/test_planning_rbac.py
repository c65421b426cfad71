"""The reads of planning a session that splits an SQS queue (its name from a ConfigMap)
and a Kafka topic (a client config loading a Secret), recorded and checked against the
chart's rules (registry/permissions.py): the paths test_operator_from_chart.py's SQS-only
session does not take. Planning is the operator's code (pymirror.operator.planning), on
the real test API server."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from pymirror.operator.planning import plan_session
from pymirror.operator.settings import OperatorSettings
from registry.kube import KubeTransport
from registry.models import MirrordKafkaClientConfig
from registry.objects import Kube
from registry.permissions import OPERATOR, allowed
from registry.resources import Resource
from tests.fixtures.kube import STAND_INS
from tests.integration.deploy.recording import RecordingTransport, production
from tests.integration.operator.test_planning import (
    BOOTSTRAP,
    create_client_config,
    create_session,
    setup_meme_app,
)
from tests.servers.kube import KubeApi

pytestmark = [pytest.mark.integration]

SECRETS = Resource(*STAND_INS["Secret"])


@pytest.fixture
async def kube(kube_api: KubeApi, kube_crds: list[str]) -> AsyncIterator[Kube]:
    async with Kube.from_kubeconfig(kube_api.kubeconfig) as client:
        yield client


async def test_planning_sqs_and_kafka_reads_only_what_the_operators_rules_grant(
    kube: Kube, kube_api: KubeApi, unique_name: str
) -> None:
    ns, ops = unique_name, f"{unique_name}-ops"
    await setup_meme_app(kube, ns)
    await kube.objects(SECRETS, ops).create(
        {
            "apiVersion": SECRETS.api_version,
            "kind": "Secret",
            "metadata": {"name": "kafka-auth"},
            "data": {"client.id": base64.b64encode(b"meme-views").decode()},
        }
    )
    await create_client_config(
        kube, ops, "base-config", BOOTSTRAP, loadFromSecret=f"{ops}/kafka-auth"
    )
    session = await create_session(kube, ns)  # examples/pymirror/split-session.yaml
    settings = OperatorSettings(
        namespace=ops,
        workload_kinds={k: "/".join(STAND_INS[k][:2]) for k in ("Deployment", "StatefulSet")},
        config_kinds={k: "/".join(STAND_INS[k][:2]) for k in ("ConfigMap", "Secret")},
    )
    recording = RecordingTransport(KubeTransport.from_kubeconfig(kube_api.kubeconfig))
    planner = Kube(recording)  # type: ignore[arg-type]  # duck-typed KubeTransport
    try:
        plan = await plan_session(planner, session, settings=settings)
    finally:
        planner.close()
    assert {q.kind for q in plan.queues} == {"SQS", "Kafka"}
    seen = {production(a) for a in recording.accesses}
    refused = sorted(str(a) for a in seen if not allowed(OPERATOR, a, ops))
    assert not refused, f"the chart's RBAC does not grant: {refused} (registry/permissions.py)"
    reads = {(a.group, a.resource, a.verb, a.namespace) for a in seen}
    for wanted in [
        ("", "configmaps", "get", ns),
        ("", "secrets", "get", ops),
        ("queues.mirrord.metalbear.co", MirrordKafkaClientConfig.RESOURCE.plural, "get", ops),
        ("queues.mirrord.metalbear.co", "mirrordkafkatopicsconsumers", "list", ns),
        ("queues.mirrord.metalbear.co", "mirrordworkloadqueueregistries", "list", ns),
    ]:
        assert wanted in reads, (wanted, sorted(map(str, seen)))
