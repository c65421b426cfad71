"""registry.models: wire names, unknown fields kept, errors naming fields; client configs."""

from __future__ import annotations

from typing import Any

import pytest

from registry.errors import ClientConfigError, ModelError
from registry.kafka_client_configs import ClientConfigProperty, ClientConfigSpec
from registry.models import (
    API_VERSION,
    MirrordKafkaClientConfig,
    MirrordWorkloadQueueRegistry,
    ObjectMeta,
    QueueConsumer,
    QueueNameSource,
    SqsQueueDetails,
    UnknownQueueDetails,
    WorkloadQueueRegistrySpec,
    parse_object,
)
from registry.resources import PODS, Resource
from registry.session_models import QueueSplit, SplitSession, parse_pymirror_object

pytestmark = pytest.mark.unit


def registry_object(**extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "MirrordWorkloadQueueRegistry",
        "metadata": {"name": "r", "resourceVersion": "5", "managedFields": [{"manager": "x"}]},
        "spec": {
            "queues": {"q": {"queueType": "SQS", "nameSource": {"envVar": "Q"}}},
            "consumer": {"name": "app", "workloadType": "Deployment"},
            **extra,
        },
        "status": {"future": True},
    }


def test_wire_names_are_camel_case_and_python_names_snake_case() -> None:
    model = parse_object(registry_object())
    assert isinstance(model, MirrordWorkloadQueueRegistry)
    assert model.spec.queues["q"].name_source.env_var == "Q"
    assert model.spec.consumer.workload_type == "Deployment"
    assert model.metadata.resource_version == "5"
    built = MirrordWorkloadQueueRegistry(
        metadata=ObjectMeta(name="r"),
        spec=WorkloadQueueRegistrySpec(
            queues={
                "q": SqsQueueDetails(queue_type="SQS", name_source=QueueNameSource(env_var="Q"))
            },
            consumer=QueueConsumer(name="app", workload_type="Deployment"),
        ),
    )
    assert built.to_body() == {
        "apiVersion": API_VERSION,
        "kind": "MirrordWorkloadQueueRegistry",
        "metadata": {"name": "r"},
        "spec": registry_object()["spec"],
    }


def test_unknown_fields_survive_a_round_trip() -> None:
    obj = registry_object(addedLater={"x": [1]})
    assert parse_object(obj).to_body() == obj


def test_model_errors_name_the_object_and_the_wire_fields() -> None:
    obj = registry_object()
    obj["spec"]["consumer"]["workloadType"] = "Job"
    del obj["spec"]["queues"]["q"]["nameSource"]
    with pytest.raises(ModelError) as bad:
        parse_object(obj)
    message = str(bad.value)
    assert message.startswith("MirrordWorkloadQueueRegistry r: ")
    assert "spec.consumer.workloadType: Input should be" in message
    assert "spec.queues.q.nameSource: Field required" in message


def test_an_unknown_kind_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="kind 'Deployment' is none of Mirrord"):
        parse_object({"kind": "Deployment"})


def test_types_are_strict_like_the_api_server() -> None:
    obj = registry_object()
    obj["spec"]["consumer"]["name"] = 5  # the server rejects it; no coercion to "5"
    with pytest.raises(ModelError, match=r"spec\.consumer\.name: Input should be a valid string"):
        parse_object(obj)


def client_config(*properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "MirrordKafkaClientConfig",
        "metadata": {"name": "c"},
        "spec": {"parent": "p", "properties": list(properties)},
    }


def test_client_configs_are_read_through_the_model() -> None:
    spec = ClientConfigSpec.from_object(
        client_config({"name": "a", "value": True}, {"name": "b", "value": 1.5}, {"name": "c"})
    )
    assert spec.properties == (
        ClientConfigProperty("a", "true"),
        ClientConfigProperty("b", "1.5"),
        ClientConfigProperty("c", None),
    )
    model = MirrordKafkaClientConfig.model_validate(client_config())
    assert ClientConfigSpec.from_model(model).parent == "p"


@pytest.mark.parametrize(
    ("prop", "message"),
    [
        ({"value": "v"}, r"MirrordKafkaClientConfig c: spec\.properties\.0\.name: Field required"),
        ({"name": "x", "value": {"a": 1}}, r"spec\.properties\[0\] x: the value must be a string"),
        ({"name": "x", "value": [1]}, r"spec\.properties\[0\] x: the value must be a string"),
    ],
)
def test_a_bad_client_config_property_is_named(prop: dict[str, Any], message: str) -> None:
    with pytest.raises(ClientConfigError, match=message):
        ClientConfigSpec.from_object(client_config(prop))


def test_resource_paths_for_core_and_named_groups() -> None:
    apps = Resource("apps", "v1", "deployments")
    assert apps.api_version == "apps/v1"
    assert apps.object_path("status") == (
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status"
    )
    assert PODS.api_version == "v1"
    assert PODS.collection_path() == "/api/{version}/namespaces/{namespace}/{plural}"
    assert MirrordKafkaClientConfig.RESOURCE.plural == "mirrordkafkaclientconfigs"


@pytest.mark.parametrize(
    ("queue", "model", "supported"),
    [
        ({"queueType": "SQS", "nameSource": {"envVar": "Q"}}, SqsQueueDetails, True),
        ({"queueType": "SQS", "nameSource": {"regexPattern": "^Q_"}}, SqsQueueDetails, True),
        ({"queueType": "RMQ", "clusterProperties": "p"}, UnknownQueueDetails, False),
        ({"queueType": "sqs", "nameSource": {"envVar": "Q"}}, UnknownQueueDetails, False),
    ],
)
def test_a_queue_is_sqs_or_an_unknown_kind_that_is_kept(
    queue: dict[str, Any], model: type, supported: bool
) -> None:
    obj = registry_object()
    obj["spec"]["queues"] = {"q": queue}
    parsed = parse_object(obj)
    assert isinstance(parsed, MirrordWorkloadQueueRegistry)
    details = parsed.spec.queues["q"]
    assert (type(details), details.SUPPORTED) == (model, supported)
    assert parsed.to_body()["spec"]["queues"]["q"] == queue


@pytest.mark.parametrize(
    ("queue", "message"),
    [
        ({"nameSource": {"envVar": "Q"}}, "spec.queues.q: queueType: Field required"),
        ({"queueType": "SQS"}, "spec.queues.q.nameSource: Field required"),
        (
            {"queueType": "SQS", "nameSource": {"envVar": "Q", "regexPattern": "Q"}},
            "spec.queues.q.nameSource: Value error, exactly one of envVar and regexPattern",
        ),
        ({"queueType": "RMQ", "sns": "yes"}, "spec.queues.q.sns: Input should be a valid boolean"),
    ],
)
def test_queue_errors_name_the_wire_field_without_the_union_tag(
    queue: dict[str, Any], message: str
) -> None:
    obj = registry_object()
    obj["spec"]["queues"] = {"q": queue}
    with pytest.raises(ModelError) as bad:
        parse_object(obj)
    assert message in str(bad.value)


def test_pymirror_kinds_fill_the_server_defaults_but_send_only_what_was_set() -> None:
    session = parse_pymirror_object(
        {
            "kind": "SplitSession",
            "metadata": {"name": "s"},
            "spec": {
                "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
                "owner": {"username": "a", "hostname": "h", "k8sUsername": "a@corp"},
                "queues": [{"id": "q", "kind": "SQS"}],
            },
        }
    )
    assert isinstance(session, SplitSession)
    assert (session.spec.lease_seconds, session.spec.queues[0].mode) == (30, "steal")
    assert session.spec.owner.k8s_username == "a@corp"
    body = session.to_body()
    assert body["apiVersion"] == "pymirror.dev/v1alpha1"
    assert "leaseSeconds" not in body["spec"]
    assert body["spec"]["owner"] == {"username": "a", "hostname": "h", "k8sUsername": "a@corp"}


@pytest.mark.parametrize(
    ("renew_time", "valid"),
    [
        ("2026-05-01T10:00:00Z", True),
        ("2026-05-01t10:00:00.123456+02:00", True),
        ("2026-05-01T10:00:00", False),
        ("2026-13-01T10:00:00Z", False),
        ("2026-05-01T24:00:00Z", False),
        ("2026-05-01 10:00:00Z", False),
    ],
)
def test_date_times_are_rfc_3339_with_an_offset(renew_time: str, valid: bool) -> None:
    obj = {
        "kind": "SplitSession",
        "metadata": {"name": "s"},
        "spec": {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
            "owner": {"username": "a", "hostname": "h", "k8sUsername": "a"},
            "queues": [{"id": "q", "kind": "SQS"}],
            "renewTime": renew_time,
        },
    }
    if valid:
        assert parse_pymirror_object(obj).to_body()["spec"]["renewTime"] == renew_time
    else:
        with pytest.raises(ModelError, match=r"spec\.renewTime: Value error, .* RFC 3339"):
            parse_pymirror_object(obj)


def test_a_kafka_queue_split_needs_its_group_id_and_client_config() -> None:
    spec = {
        "kind": "Kafka",
        "original": "views",
        "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "a", "namespace": "n"},
    }
    obj = {"kind": "QueueSplit", "metadata": {"name": "s"}, "spec": spec}
    with pytest.raises(ModelError, match=r"spec\.groupId is set for a Kafka topic and only then"):
        parse_pymirror_object(obj)
    spec |= {"groupId": "g", "clientConfig": "c"}
    split = parse_pymirror_object(obj)
    assert isinstance(split, QueueSplit)
    assert (split.spec.group_id, split.spec.hand_back) == ("g", False)
