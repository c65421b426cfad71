"""ConfigMaps and Secrets behind one small interface: the data of one object, or one key.

``ConfigSource`` reads ``namespace/name`` of one kind and returns its data as text:
a ConfigMap's ``data`` (and ``binaryData``, decoded), a Secret's ``data``
base64-decoded. Where the kinds are served is data (``ConfigKinds``): the real
core/v1 ``configmaps`` and ``secrets`` (``/api/v1``) in a cluster, the stand-in
CRDs in tests (tests/kube/README.md)::

    sources = ConfigKinds().sources(kube)
    password = await sources.secrets.value("mirrord", "kafka-auth", "sasl.password")
    queues = await sources.config_maps.data("shop", "queue-names")

Errors are ``ConfigSourceError``s naming the object and key: the object does not
exist (``ConfigSourceNotFoundError``), has no such key, or a value is not text.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from registry.errors import (
    ConfigSourceError,
    ConfigSourceNotFoundError,
    NotFoundError,
)
from registry.objects import Kube
from registry.resources import Resource

#: Where the kinds are served in a cluster: the core group, ``/api/v1``.
CONFIG_MAPS = Resource("", "v1", "configmaps")
SECRETS = Resource("", "v1", "secrets")


@dataclass(frozen=True)
class ConfigKinds:
    """Where ConfigMaps and Secrets are served: core/v1 unless pointed at stand-ins."""

    config_map: Resource = CONFIG_MAPS
    secret: Resource = SECRETS

    def sources(self, kube: Kube) -> ConfigSources:
        return ConfigSources(
            config_maps=ConfigSource(kube, self.config_map, "ConfigMap"),
            secrets=ConfigSource(kube, self.secret, "Secret"),
        )


class ConfigSource:
    """The ConfigMaps, or the Secrets, of a cluster: data as text by namespace and name."""

    def __init__(self, kube: Kube, resource: Resource, kind: str) -> None:
        if kind not in ("ConfigMap", "Secret"):
            raise ValueError(f"kind must be ConfigMap or Secret, not {kind!r}")
        self.kube = kube
        self.resource = resource
        self.kind = kind

    async def data(self, namespace: str, name: str) -> dict[str, str]:
        """Every key of the object, values as text; ``ConfigSourceNotFoundError`` if missing."""
        try:
            obj = await self.kube.objects(self.resource, namespace).get(name)
        except NotFoundError as e:
            raise ConfigSourceNotFoundError(
                f"{self.kind} {namespace}/{name} not found; create it or fix the reference"
            ) from e
        return decode_data(self.kind, f"{namespace}/{name}", obj)

    async def optional_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """Like ``data``, but None when the object does not exist."""
        try:
            return await self.data(namespace, name)
        except ConfigSourceNotFoundError:
            return None

    async def value(self, namespace: str, name: str, key: str) -> str:
        """One key's value; ``ConfigSourceNotFoundError`` naming the object and key."""
        data = await self.data(namespace, name)
        try:
            return data[key]
        except KeyError:
            keys = ", ".join(sorted(data)) or "none"
            raise ConfigSourceNotFoundError(
                f"{self.kind} {namespace}/{name} has no key {key!r} (its keys: {keys}); "
                "add the key or fix the reference"
            ) from None


@dataclass(frozen=True)
class ConfigSources:
    config_maps: ConfigSource
    secrets: ConfigSource


def decode_data(kind: str, where: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """The data of a ConfigMap (``data``, then ``binaryData`` decoded) or a Secret (``data``
    base64-decoded), as UTF-8 text; ``ConfigSourceError`` naming a key that is not text."""
    out: dict[str, str] = {}
    if kind == "ConfigMap":
        out.update({k: str(v) for k, v in (obj.get("data") or {}).items()})
        encoded = obj.get("binaryData") or {}
    else:
        encoded = obj.get("data") or {}
    for key, value in encoded.items():
        field = "binaryData" if kind == "ConfigMap" else "data"
        try:
            raw = base64.b64decode(str(value), validate=True)
        except binascii.Error as e:
            raise ConfigSourceError(
                f"{kind} {where}: {field}[{key!r}] is not base64; store it base64-encoded"
            ) from e
        try:
            out[key] = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigSourceError(
                f"{kind} {where}: {field}[{key!r}] is not UTF-8 text; store the value as text"
            ) from e
    return out
