"""Resolution of MirrordKafkaClientConfig chains (mirrord's documented semantics)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest

from registry.errors import ClientConfigError
from registry.kafka_client_configs import (
    ClientConfigProperty,
    ClientConfigSpec,
    resolve_client_config,
)

pytestmark = pytest.mark.unit

SECRETS = {
    ("mirrord", "parent-secret"): {
        "sasl.username": "parent-user",
        "client.id": "from-parent-secret",
    },
    ("mirrord", "child-secret"): {"sasl.username": "child-user", "linger.ms": "from-child-secret"},
}


def read_secret(namespace: str, name: str) -> Mapping[str, str]:
    try:
        return SECRETS[(namespace, name)]
    except KeyError:
        raise ClientConfigError(f"secret {namespace}/{name} not found") from None


def spec(name: str, *props: tuple[str, str | None], **kw: str) -> ClientConfigSpec:
    return ClientConfigSpec(
        name=name,
        properties=tuple(ClientConfigProperty(n, v) for n, v in props),
        parent=kw.get("parent"),
        load_from_secret=kw.get("secret"),
    )


def test_documented_inheritance_example_resolves_like_mirrord() -> None:
    configs = {
        "base-config": spec(
            "base-config",
            ("bootstrap.servers", "kafka.default.svc.cluster.local:9092"),
            ("message.send.max.retries", "4"),
        ),
        "with-client-id": spec(
            "with-client-id",
            ("client.id", "mirrord-operator"),
            ("message.send.max.retries", None),
            parent="base-config",
        ),
    }
    assert resolve_client_config("with-client-id", configs, read_secret) == {
        "bootstrap.servers": "kafka.default.svc.cluster.local:9092",
        "client.id": "mirrord-operator",
    }


def test_priority_is_child_property_then_child_secret_then_parent_property_then_parent_secret() -> (
    None
):
    configs = {
        "parent": spec(
            "parent",
            ("client.id", "parent-prop"),
            ("linger.ms", "parent-prop"),
            ("acks", "parent-prop"),
            secret="mirrord/parent-secret",
        ),
        "child": spec(
            "child", ("acks", "child-prop"), parent="parent", secret="mirrord/child-secret"
        ),
    }
    assert resolve_client_config("child", configs, read_secret) == {
        "client.id": "parent-prop",  # parent property beats parent secret
        "sasl.username": "child-user",  # child secret beats parent secret
        "linger.ms": "from-child-secret",  # child secret beats parent property
        "acks": "child-prop",  # child property beats everything
    }


def test_group_id_is_always_dropped_because_pymirror_sets_it() -> None:
    configs = {"c": spec("c", ("group.id", "theirs"), ("bootstrap.servers", "b:9092"))}
    assert resolve_client_config("c", configs, read_secret) == {"bootstrap.servers": "b:9092"}


@pytest.mark.parametrize(
    ("configs", "expected"),
    [
        ({"a": spec("a", parent="b"), "b": spec("b", parent="a")}, "parent cycle: a -> b -> a"),
        ({"a": spec("a", parent="missing")}, "'missing' (parent of a) not found"),
        ({}, "'a' not found"),
        ({"a": spec("a", secret="no-slash")}, "must be '<namespace>/<name>'"),
        ({"a": spec("a", secret="mirrord/absent")}, "secret mirrord/absent not found"),
    ],
)
def test_broken_chains_raise_an_error_naming_the_problem(
    configs: dict[str, ClientConfigSpec], expected: str
) -> None:
    with pytest.raises(ClientConfigError, match=re.escape(expected)):
        resolve_client_config("a", configs, read_secret)


def test_object_form_turns_numbers_into_text_and_keeps_null_as_removal() -> None:
    obj = {
        "metadata": {"name": "with-client-id"},
        "spec": {
            "parent": "base-config",
            "properties": [
                {"name": "message.send.max.retries", "value": None},
                {"name": "retries", "value": 4},
            ],
        },
    }
    parsed = ClientConfigSpec.from_object(obj)
    assert parsed.parent == "base-config"
    assert parsed.properties == (
        ClientConfigProperty("message.send.max.retries", None),
        ClientConfigProperty("retries", "4"),
    )
