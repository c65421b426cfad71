"""The effective environment of a container, from its pod template and ConfigMaps (pure).

As in Kubernetes, ``env`` overrides ``envFrom`` and a later entry an earlier one.
A variable pymirror cannot read (``valueFrom.secretKeyRef``, ``fieldRef``,
``resourceFieldRef``, a missing non-optional ConfigMap or key) is kept with the
``problem`` instead of a value, and an ``envFrom`` entry it cannot enumerate (a
Secret, a missing ConfigMap) is listed: ``registry.env_reading`` raises only
when that variable is the one looked for, so an unrelated broken variable does
not fail a split. ``config_map_names`` lists the ConfigMaps to fetch first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from registry.env_refs import CONFIG_MAP_KEY_REF, ENV_FROM_CONFIG_MAP, VALUE, ValueOrigin

SUPPORTED = "env[].value, env[].valueFrom.configMapKeyRef or envFrom[].configMapRef"

ConfigMapResolver = Callable[[str], Mapping[str, str] | None]
"""ConfigMap name (in the workload's namespace) -> its data, or None when it does not exist."""


@dataclass(frozen=True)
class EnvEntry:
    """One variable of a container's effective environment."""

    variable: str
    value: str | None
    """None when pymirror cannot read it (``problem`` says why)."""
    origin: ValueOrigin | None
    problem: str | None = None


@dataclass(frozen=True)
class ContainerEnv:
    """A container's effective environment, in definition order (later overrides earlier)."""

    workload: str
    container: str
    entries: Mapping[str, EnvEntry]
    unreadable_env_from: tuple[str, ...] = field(default=())
    """``envFrom`` entries pymirror cannot enumerate (a Secret, a missing ConfigMap):
    an absent variable may come from one of them."""

    def where(self, variable: str) -> str:
        return f"env var {variable} of container {self.container} of {self.workload}"


def container_env(
    container: Mapping[str, Any], config_maps: ConfigMapResolver, *, workload: str
) -> ContainerEnv:
    """The effective environment of ``container``: ``envFrom`` in order, then ``env``."""
    name = str(container.get("name"))
    entries: dict[str, EnvEntry] = {}
    unreadable: list[str] = []
    for i, item in enumerate(container.get("envFrom") or ()):
        prefix = str(item.get("prefix") or "")
        ref = item.get("configMapRef")
        if isinstance(ref, Mapping):
            cm = str(ref.get("name"))
            data = config_maps(cm)
            if data is None:
                if not ref.get("optional"):
                    unreadable.append(
                        f"envFrom[{i}].configMapRef: ConfigMap {cm} does not exist (the pods "
                        "cannot start without it: create it or mark it optional)"
                    )
                continue
            for key, value in data.items():
                var = prefix + key
                entries.pop(var, None)  # keep definition order: a redefinition moves to the end
                entries[var] = EnvEntry(
                    var, value, ValueOrigin(ENV_FROM_CONFIG_MAP, cm, key, prefix)
                )
        elif isinstance(item.get("secretRef"), Mapping):
            secret = item["secretRef"].get("name")
            unreadable.append(
                f"envFrom[{i}].secretRef: Secret {secret} (pymirror does not read queue names "
                "from Secrets)"
            )
        else:
            unreadable.append(f"envFrom[{i}]: neither configMapRef nor secretRef")
    for item in container.get("env") or ():
        var = str(item.get("name"))
        entries.pop(var, None)
        entry = _env_entry(var, item, config_maps, f"env var {var} of container {name}")
        if entry is not None:
            entries[var] = entry
    return ContainerEnv(workload, name, entries, tuple(unreadable))


def _env_entry(
    var: str, item: Mapping[str, Any], config_maps: ConfigMapResolver, where: str
) -> EnvEntry | None:
    """One ``env[]`` item; None when an optional ConfigMap ref leaves the variable unset."""
    value_from = item.get("valueFrom")
    if not value_from:
        return EnvEntry(var, str(item.get("value") or ""), ValueOrigin(VALUE))
    move = f"put the queue name in {SUPPORTED} instead"
    ref = value_from.get("configMapKeyRef")
    if isinstance(ref, Mapping):
        cm, key = str(ref.get("name")), str(ref.get("key"))
        data = config_maps(cm)
        origin = ValueOrigin(CONFIG_MAP_KEY_REF, cm, key)
        if data is not None and key in data:
            return EnvEntry(var, data[key], origin)
        if ref.get("optional"):
            return None
        missing = (
            f"ConfigMap {cm} does not exist"
            if data is None
            else f"ConfigMap {cm} has no key {key!r}"
        )
        problem = (
            f"comes from valueFrom.configMapKeyRef, but {missing} (without it the pods cannot "
            "start): create the ConfigMap key or fix the reference"
        )
        return EnvEntry(var, None, origin, problem)
    for kind in ("secretKeyRef", "fieldRef", "resourceFieldRef"):
        if kind in value_from:
            return EnvEntry(var, None, None, f"comes from valueFrom.{kind}; {move}")
    kinds = ", ".join(sorted(value_from)) or "nothing"
    return EnvEntry(var, None, None, f"has a valueFrom of {kinds}; {move}")


def config_map_names(containers: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every ConfigMap the containers' ``env`` and ``envFrom`` reference, once, in order."""
    names: dict[str, None] = {}
    for c in containers:
        for item in c.get("envFrom") or ():
            ref = item.get("configMapRef") if isinstance(item, Mapping) else None
            if isinstance(ref, Mapping) and ref.get("name"):
                names[str(ref["name"])] = None
        for item in c.get("env") or ():
            value_from = item.get("valueFrom") if isinstance(item, Mapping) else None
            ref = value_from.get("configMapKeyRef") if isinstance(value_from, Mapping) else None
            if isinstance(ref, Mapping) and ref.get("name"):
                names[str(ref["name"])] = None
    return list(names)
