"""Resolve a ``MirrordKafkaClientConfig`` chain into one flat property map: a pure core, and
the async feeder that reads the chain and its Secrets from the API server.

Semantics (mirrord's, kept so existing resources resolve unchanged):

* a config with ``parent`` resolves the parent first, then applies its own layers;
* within one config, properties loaded from ``loadFromSecret`` come first and the
  config's own ``properties`` override them; a property whose ``value`` is null
  removes that property;
* so the priority, highest first, is: child property > child secret > parent
  property > parent secret;
* ``group.id`` is always dropped: pymirror sets the group id itself.

The core (``resolve_client_config``) is pure: it takes the configs and a Secret
reader as data (``ClientConfigSpec.from_object`` checks an object with
``registry.models``). ``load_client_config`` is the async feeder on top: it reads
the chain's ``MirrordKafkaClientConfig`` objects through ``registry.objects`` in
the operator namespace and their ``loadFromSecret`` Secrets through
``registry.config_sources``, then resolves::

    props = await load_client_config(kube, "mirrord", "with-client-id")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from registry.config_sources import ConfigKinds
from registry.errors import (
    ClientConfigError,
    ConfigSourceError,
    ConfigSourceNotFoundError,
    NotFoundError,
)
from registry.models import MirrordKafkaClientConfig
from registry.objects import Kube

#: Property pymirror always sets itself.
GROUP_ID = "group.id"


@dataclass(frozen=True)
class ClientConfigProperty:
    name: str
    value: str | None  # None removes the property inherited so far


@dataclass(frozen=True)
class ClientConfigSpec:
    """The spec of one ``MirrordKafkaClientConfig`` (operator namespace)."""

    name: str
    properties: Sequence[ClientConfigProperty] = ()
    parent: str | None = None
    load_from_secret: str | None = None  # "<namespace>/<name>"

    @classmethod
    def from_object(cls, obj: Mapping[str, object]) -> ClientConfigSpec:
        """Build from a Kubernetes object (dict form), checked by its model; numbers and
        booleans become text, as in .properties. ``ClientConfigError`` names what is wrong."""
        try:
            model = MirrordKafkaClientConfig.model_validate(obj)
        except ValidationError as e:
            meta = obj.get("metadata")
            name = meta.get("name") if isinstance(meta, Mapping) else None
            problems = "; ".join(
                ".".join(str(p) for p in err["loc"]) + f": {err['msg']}" for err in e.errors()
            )
            raise ClientConfigError(f"MirrordKafkaClientConfig {name}: {problems}") from e
        return cls.from_model(model)

    @classmethod
    def from_model(cls, model: MirrordKafkaClientConfig) -> ClientConfigSpec:
        name = model.metadata.name or ""
        props = []
        for i, item in enumerate(model.spec.properties or ()):
            if isinstance(item.value, dict | list):
                raise ClientConfigError(
                    f"MirrordKafkaClientConfig {name}: spec.properties[{i}] {item.name}: the value "
                    "must be a string, number, boolean or null"
                )
            props.append(ClientConfigProperty(item.name, _as_text(item.value)))
        return cls(
            name=name,
            properties=tuple(props),
            parent=model.spec.parent,
            load_from_secret=model.spec.load_from_secret,
        )


def _as_text(value: str | int | float | bool | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


SecretReader = Callable[[str, str], Mapping[str, str]]
"""``(namespace, name) -> decoded data`` of a Secret; raises ClientConfigError if missing."""


@dataclass
class _Resolution:
    configs: Mapping[str, ClientConfigSpec]
    read_secret: SecretReader
    seen: list[str] = field(default_factory=list)


def resolve_client_config(
    name: str,
    configs: Mapping[str, ClientConfigSpec],
    read_secret: SecretReader,
) -> dict[str, str]:
    """Flatten config ``name`` (and its ancestors) into ``property -> value``.

    Raises ``ClientConfigError`` for a missing config or parent, a parent cycle, or
    a malformed ``loadFromSecret`` reference.
    """
    return _resolve(name, _Resolution(configs, read_secret))


def _resolve(name: str, state: _Resolution) -> dict[str, str]:
    if name in state.seen:
        chain = " -> ".join([*state.seen, name])
        raise ClientConfigError(
            f"MirrordKafkaClientConfig parent cycle: {chain}; remove one spec.parent"
        )
    spec = state.configs.get(name)
    if spec is None:
        referrer = f" (parent of {state.seen[-1]})" if state.seen else ""
        raise ClientConfigError(
            f"MirrordKafkaClientConfig {name!r}{referrer} not found in the operator namespace; "
            "create it or fix the reference"
        )
    state.seen.append(name)
    resolved = _resolve(spec.parent, state) if spec.parent else {}
    if spec.load_from_secret:
        namespace, sep, secret = spec.load_from_secret.partition("/")
        if not sep or not namespace or not secret or "/" in secret:
            raise ClientConfigError(
                f"MirrordKafkaClientConfig {name}: loadFromSecret {spec.load_from_secret!r} "
                "must be '<namespace>/<name>'"
            )
        resolved.update(state.read_secret(namespace, secret))
    for prop in spec.properties:
        if prop.value is None:
            resolved.pop(prop.name, None)
        else:
            resolved[prop.name] = prop.value
    resolved.pop(GROUP_ID, None)
    return resolved


# --- the async feeder -----------------------------------------------------------------------


async def load_client_config(
    kube: Kube,
    operator_namespace: str,
    name: str,
    *,
    config: ConfigKinds = ConfigKinds(),  # noqa: B008 - frozen
) -> dict[str, str]:
    """Read config ``name`` and its parents (``MirrordKafkaClientConfig`` objects in
    ``operator_namespace``) and their ``loadFromSecret`` Secrets (where ``config`` says
    Secrets are served), and resolve them into one property map.

    ``ClientConfigError`` for a missing config, parent or Secret, a parent cycle, a bad
    ``loadFromSecret`` reference, a Secret value that is not text, or an object that does
    not match its model; other API errors pass through."""
    objects = kube.objects(MirrordKafkaClientConfig.RESOURCE, operator_namespace)
    configs: dict[str, ClientConfigSpec] = {}
    current: str | None = name
    while current is not None and current not in configs:
        try:
            obj = await objects.get(current)
        except NotFoundError:
            break  # resolve_client_config names it (and whose parent it is)
        configs[current] = ClientConfigSpec.from_object(obj)
        current = configs[current].parent

    secrets_source = config.sources(kube).secrets
    secrets: dict[tuple[str, str], dict[str, str]] = {}
    for spec in configs.values():
        namespace, sep, secret = (spec.load_from_secret or "").partition("/")
        if not sep or not namespace or not secret or (namespace, secret) in secrets:
            continue  # absent; a malformed reference is reported by resolve_client_config
        try:
            secrets[(namespace, secret)] = await secrets_source.data(namespace, secret)
        except ConfigSourceNotFoundError as e:
            raise ClientConfigError(
                f"MirrordKafkaClientConfig {spec.name}: spec.loadFromSecret "
                f"{spec.load_from_secret}: {e}"
            ) from e
        except ConfigSourceError as e:
            raise ClientConfigError(f"MirrordKafkaClientConfig {spec.name}: {e}") from e

    def read_secret(namespace: str, secret: str) -> Mapping[str, str]:
        return secrets[(namespace, secret)]

    return resolve_client_config(name, configs, read_secret)
