"""registry.kafka_client_configs.load_client_config on the real test API server.

MirrordKafkaClientConfig objects live in the operator namespace; ``loadFromSecret``
Secrets are the stand-in Secret CRD (tests/kube/), reached through
``ConfigKinds`` as production reaches core/v1 Secrets.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from registry.config_sources import ConfigKinds
from registry.errors import ClientConfigError
from registry.kafka_client_configs import load_client_config
from registry.models import API_VERSION, MirrordKafkaClientConfig
from registry.objects import Kube
from registry.resources import Resource
from tests.fixtures.kube import STAND_INS

pytestmark = pytest.mark.integration

STAND_IN_SECRETS = Resource(*STAND_INS["Secret"])
STAND_IN_CONFIG = ConfigKinds(secret=STAND_IN_SECRETS)
CONFIGS = MirrordKafkaClientConfig.RESOURCE


def client_config(name: str, *props: tuple[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "MirrordKafkaClientConfig",
        "metadata": {"name": name},
        "spec": {**spec, "properties": [{"name": n, "value": v} for n, v in props]},
    }


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": STAND_IN_SECRETS.api_version,
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


async def test_a_chain_resolves_child_property_then_child_secret_then_parent_property_then_secret(
    kube: Kube, unique_name: str
) -> None:
    operator_ns, secrets_ns = unique_name, f"{unique_name}-s"
    secrets = kube.objects(STAND_IN_SECRETS, secrets_ns)
    await secrets.create(
        secret("parent-secret", {"sasl.username": "parent-user", "client.id": "parent-secret"})
    )
    await secrets.create(
        secret("child-secret", {"sasl.username": "child-user", "linger.ms": "child-secret"})
    )
    configs = kube.objects(CONFIGS, operator_ns)
    await configs.create(
        client_config(
            "base",
            ("bootstrap.servers", "kafka:9092"),
            ("client.id", "parent-prop"),
            ("linger.ms", "parent-prop"),
            ("acks", "parent-prop"),
            ("message.send.max.retries", 4),
            loadFromSecret=f"{secrets_ns}/parent-secret",
        )
    )
    await configs.create(
        client_config(
            "child",
            ("acks", "child-prop"),
            ("message.send.max.retries", None),
            ("group.id", "theirs"),
            parent="base",
            loadFromSecret=f"{secrets_ns}/child-secret",
        )
    )

    resolved = await load_client_config(kube, operator_ns, "child", config=STAND_IN_CONFIG)

    assert resolved == {
        "bootstrap.servers": "kafka:9092",
        "client.id": "parent-prop",  # parent property beats parent secret
        "sasl.username": "child-user",  # child secret beats parent secret
        "linger.ms": "child-secret",  # child secret beats parent property
        "acks": "child-prop",  # child property beats everything
    }  # value: null removed message.send.max.retries; group.id is pymirror's
    assert await load_client_config(kube, operator_ns, "base", config=STAND_IN_CONFIG) == {
        "bootstrap.servers": "kafka:9092",
        "sasl.username": "parent-user",
        "client.id": "parent-prop",
        "linger.ms": "parent-prop",
        "acks": "parent-prop",
        "message.send.max.retries": "4",
    }


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        pytest.param(
            [client_config("a", parent="b"), client_config("b", parent="a")],
            "MirrordKafkaClientConfig parent cycle: a -> b -> a; remove one spec.parent",
            id="a cycle",
        ),
        pytest.param(
            [client_config("a", parent="a")],
            "parent cycle: a -> a",
            id="its own parent",
        ),
        pytest.param(
            [client_config("a", parent="missing")],
            "MirrordKafkaClientConfig 'missing' (parent of a) not found in the operator namespace",
            id="a missing parent",
        ),
        pytest.param([], "MirrordKafkaClientConfig 'a' not found", id="a missing config"),
        pytest.param(
            [client_config("a", loadFromSecret="{ns}/absent")],
            "MirrordKafkaClientConfig a: spec.loadFromSecret {ns}/absent: Secret {ns}/absent not "
            "found; create it or fix the reference",
            id="a missing secret",
        ),
        pytest.param(
            [client_config("a", ("bootstrap.servers", ["a", "b"]))],
            "spec.properties[0] bootstrap.servers: the value must be a string, number, boolean",
            id="a non-scalar value",
        ),
    ],
)
async def test_broken_chains_fail_naming_the_config_and_the_fix(
    kube: Kube, unique_name: str, objects: list[dict[str, Any]], message: str
) -> None:
    configs = kube.objects(CONFIGS, unique_name)
    for obj in objects:
        spec = obj["spec"]
        if "loadFromSecret" in spec:
            spec["loadFromSecret"] = spec["loadFromSecret"].format(ns=unique_name)
        await configs.create(obj)
    with pytest.raises(ClientConfigError, match=re.escape(message.format(ns=unique_name))):
        await load_client_config(kube, unique_name, "a", config=STAND_IN_CONFIG)
