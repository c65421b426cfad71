"""What ``registry.env_reading`` looks for in a pod template, and what it finds (pure data).

What to look for, from the registry kinds (``NameSource``): ``nameSource.envVar``;
``nameSource.regexPattern`` (every variable whose name the regex - the ``regex``
module, lookaround and backreferences allowed - finds a match in, "search"
semantics); ``fallbackName``; ``namesFromJsonMap`` (the value is a JSON object
whose values are queue names). Kafka (``TopicSources``):
``nameSources[].directEnvVar{container, variable}`` and ``groupIdSources`` alike.

What was found (``FoundQueue``, ``FoundTopic``): per queue (or topic) id, every env
var that names it (``FoundVar``): the container, the variable, the original value
(a queue name or a URL, in the form written), and how it got its value
(``ValueOrigin.kind``), so an env patch can later write the same form back:

* ``value`` - directly in the pod template (``env[].value``);
* ``configMapKeyRef`` - ``env[].valueFrom.configMapKeyRef`` (``optional`` honoured);
* ``envFrom.configMapRef`` - every key of a ConfigMap, with the entry's ``prefix``;
* ``fallbackName`` - the variable is absent and the registry's ``fallbackName`` stands in
  (``FoundVar.must_add``: the patch must add the variable).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from registry.errors import EnvReadingError

SourceKind = Literal["value", "configMapKeyRef", "envFrom.configMapRef", "fallbackName"]
VALUE: SourceKind = "value"
CONFIG_MAP_KEY_REF: SourceKind = "configMapKeyRef"
ENV_FROM_CONFIG_MAP: SourceKind = "envFrom.configMapRef"
FALLBACK_NAME: SourceKind = "fallbackName"


# --- what was found -------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueOrigin:
    """How a variable got its value."""

    kind: SourceKind
    config_map: str | None = None
    """The ConfigMap, for ``configMapKeyRef`` and ``envFrom.configMapRef``."""
    key: str | None = None
    """The ConfigMap key the value is under."""
    prefix: str = ""
    """The ``envFrom`` entry's prefix (the variable is ``prefix + key``)."""


@dataclass(frozen=True)
class QueueName:
    """One queue name or URL, as written in the variable (or in its JSON map)."""

    name: str
    json_key: str | None = None
    """The JSON map key it is under, when the variable holds a JSON map."""


@dataclass(frozen=True)
class FoundVar:
    """One env var of one container that holds a queue name, topic or group id."""

    container: str
    variable: str
    value: str
    """The variable's whole original value (the raw JSON for a JSON map)."""
    origin: ValueOrigin
    names: tuple[QueueName, ...]
    """The names in it: the value itself, or the JSON map's values."""

    @property
    def must_add(self) -> bool:
        """True when the variable is absent (``fallbackName``): the patch must add it."""
        return self.origin.kind == FALLBACK_NAME

    @property
    def is_json_map(self) -> bool:
        return any(n.json_key is not None for n in self.names)


@dataclass(frozen=True)
class FoundQueue:
    """Every env var naming the queues of one registry queue id."""

    queue_id: str
    vars: tuple[FoundVar, ...]

    def names(self) -> list[str]:
        """The distinct queue names/URLs, in the order found."""
        return list(dict.fromkeys(n.name for v in self.vars for n in v.names))


@dataclass(frozen=True)
class FoundTopic:
    """A Kafka topic id: its topic, its group id, and every variable holding them."""

    topic_id: str
    topic: str
    group_id: str
    name_vars: tuple[FoundVar, ...]
    group_id_vars: tuple[FoundVar, ...]


# --- what to look for -----------------------------------------------------------------------


@dataclass(frozen=True)
class NameSource:
    """A registry queue's ``nameSource`` (exactly one of ``env_var``, ``regex_pattern``)
    with its ``fallbackName`` and ``namesFromJsonMap``."""

    env_var: str | None = None
    regex_pattern: str | None = None
    fallback_name: str | None = None
    names_from_json_map: bool = False

    @classmethod
    def from_wire(cls, details: Mapping[str, Any], what: str) -> NameSource:
        """From ``spec.queues.<id>`` as JSON (camelCase); ``EnvReadingError`` naming the field."""
        source = details.get("nameSource")
        if not isinstance(source, Mapping):
            raise EnvReadingError(f"{what}: nameSource is missing; set nameSource.envVar")
        env_var, pattern = source.get("envVar"), source.get("regexPattern")
        if (env_var is None) == (pattern is None):
            raise EnvReadingError(
                f"{what}: nameSource needs exactly one of envVar and regexPattern"
            )
        for key, v in (("nameSource.envVar", env_var), ("nameSource.regexPattern", pattern)):
            if v is not None and (not isinstance(v, str) or not v):
                raise EnvReadingError(f"{what}: {key} must be a non-empty string")
        fallback, json_map = details.get("fallbackName"), details.get("namesFromJsonMap")
        if fallback is not None and not isinstance(fallback, str):
            raise EnvReadingError(f"{what}: fallbackName must be a string")
        if json_map is not None and not isinstance(json_map, bool):
            raise EnvReadingError(f"{what}: namesFromJsonMap must be true or false")
        return cls(env_var, pattern, fallback, bool(json_map))


@dataclass(frozen=True)
class EnvVarRef:
    """``directEnvVar{container, variable}`` (and the chart's newer ``fallback``)."""

    container: str
    variable: str
    fallback: str | None = None


@dataclass(frozen=True)
class TopicSources:
    """One ``spec.topics[]`` entry of a ``MirrordKafkaTopicsConsumer``."""

    topic_id: str
    name_sources: tuple[EnvVarRef, ...]
    group_id_sources: tuple[EnvVarRef, ...]

    @classmethod
    def from_wire(cls, topic: Mapping[str, Any], what: str) -> TopicSources:
        """From one ``spec.topics[]`` entry as JSON; ``EnvReadingError`` naming the field."""
        topic_id = str(topic.get("id"))

        def refs(key: str) -> tuple[EnvVarRef, ...]:
            out = []
            for i, item in enumerate(topic.get(key) or ()):
                direct = item.get("directEnvVar") if isinstance(item, Mapping) else None
                where = f"{what}: topic {topic_id!r} {key}[{i}]"
                if not isinstance(direct, Mapping):
                    raise EnvReadingError(
                        f"{where} has no directEnvVar; pymirror reads only "
                        "directEnvVar{container, variable}"
                    )
                container, variable = direct.get("container"), direct.get("variable")
                if not isinstance(container, str) or not container:
                    raise EnvReadingError(f"{where}.directEnvVar.container must name a container")
                if not isinstance(variable, str) or not variable:
                    raise EnvReadingError(f"{where}.directEnvVar.variable must name an env var")
                fallback = direct.get("fallback")
                out.append(EnvVarRef(container, variable, fallback if fallback else None))
            if not out and key == "groupIdSources" and topic.get("applicationIdSources"):
                raise EnvReadingError(
                    f"{what}: topic {topic_id!r} has applicationIdSources (a Kafka Streams "
                    "consumer), which pymirror does not split; use groupIdSources"
                )
            if not out:
                raise EnvReadingError(f"{what}: topic {topic_id!r} needs at least one {key} entry")
            return tuple(out)

        return cls(topic_id, refs("nameSources"), refs("groupIdSources"))
