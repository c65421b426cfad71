"""registry.config_sources on the real test API server: ConfigMap and Secret data and keys.

ConfigMaps and Secrets are the stand-in CRDs of tests/kube/ (the test server serves
no core/v1); ``ConfigKinds`` points the sources at them, as production points them
at core/v1.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from registry.config_sources import (
    CONFIG_MAPS,
    SECRETS,
    ConfigKinds,
    ConfigSourceError,
    ConfigSourceNotFoundError,
)
from registry.objects import Kube
from registry.resources import Resource
from tests.fixtures.kube import STAND_INS

pytestmark = pytest.mark.integration

STAND_IN_CONFIG_MAPS = Resource(
    *STAND_INS.get("ConfigMap", ("core.pymirror.test", "v1", "configmaps"))
)
STAND_IN_SECRETS = Resource(*STAND_INS["Secret"])
STAND_IN_CONFIG = ConfigKinds(config_map=STAND_IN_CONFIG_MAPS, secret=STAND_IN_SECRETS)


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def stand_in(resource: Resource, kind: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": resource.api_version, "kind": kind, "metadata": {"name": name}, **fields}


def test_in_a_cluster_config_maps_and_secrets_are_the_core_v1_kinds() -> None:
    kinds = ConfigKinds()
    assert (kinds.config_map, kinds.secret) == (CONFIG_MAPS, SECRETS)
    assert kinds.secret.collection_path() == "/api/{version}/namespaces/{namespace}/{plural}"
    assert kinds.config_map.api_version == "v1"


async def test_config_map_text_and_binary_data_and_decoded_secret_data_are_read(
    kube: Kube, unique_name: str
) -> None:
    await kube.objects(STAND_IN_CONFIG_MAPS, unique_name).create(
        stand_in(
            STAND_IN_CONFIG_MAPS,
            "ConfigMap",
            "queues",
            data={"QUEUE": "orders", "URL": "https://sqs/1/q"},
            binaryData={"BLOB": b64("from binary")},
        )
    )
    await kube.objects(STAND_IN_SECRETS, unique_name).create(
        stand_in(
            STAND_IN_SECRETS,
            "Secret",
            "kafka-auth",
            type="Opaque",
            data={"sasl.password": b64("s3cr3t ü"), "sasl.username": b64("user")},
        )
    )
    sources = STAND_IN_CONFIG.sources(kube)

    assert await sources.config_maps.data(unique_name, "queues") == {
        "QUEUE": "orders",
        "URL": "https://sqs/1/q",
        "BLOB": "from binary",
    }
    assert await sources.config_maps.value(unique_name, "queues", "URL") == "https://sqs/1/q"
    assert await sources.secrets.data(unique_name, "kafka-auth") == {
        "sasl.password": "s3cr3t ü",
        "sasl.username": "user",
    }
    assert await sources.secrets.value(unique_name, "kafka-auth", "sasl.username") == "user"
    assert await sources.secrets.optional_data(unique_name, "absent") is None


async def test_errors_name_the_object_and_the_key(kube: Kube, unique_name: str) -> None:
    await kube.objects(STAND_IN_CONFIG_MAPS, unique_name).create(
        stand_in(STAND_IN_CONFIG_MAPS, "ConfigMap", "queues", data={"A": "1", "B": "2"})
    )
    await kube.objects(STAND_IN_SECRETS, unique_name).create(
        stand_in(STAND_IN_SECRETS, "Secret", "binary", data={"cert": b64(b"\xff\xfe")})
    )
    sources = STAND_IN_CONFIG.sources(kube)
    ns = unique_name
    cases: list[tuple[Any, type[Exception], str]] = [
        (
            sources.config_maps.value(ns, "queues", "C"),
            ConfigSourceNotFoundError,
            f"ConfigMap {ns}/queues has no key 'C' (its keys: A, B); add the key or fix the "
            "reference",
        ),
        (
            sources.config_maps.data(ns, "absent"),
            ConfigSourceNotFoundError,
            f"ConfigMap {ns}/absent not found; create it or fix the reference",
        ),
        (
            sources.secrets.value(ns, "absent", "k"),
            ConfigSourceNotFoundError,
            f"Secret {ns}/absent not found",
        ),
        (
            sources.secrets.data(ns, "binary"),
            ConfigSourceError,
            f"Secret {ns}/binary: data['cert'] is not UTF-8 text; store the value as text",
        ),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            await call
