"""Reading queue names/URLs, topics and group ids from a workload's pod template (pure).

The core takes a container's effective environment (``registry.container_envs``)
and what to look for (``registry.env_refs``); it returns, per queue (or topic) id,
every env var that names it, with how it got its value, so an env patch can
later write the same form back::

    env = container_env(container, config_maps.get, workload="Deployment shop/app")
    found = find_queue("meme-queue", NameSource(env_var="INCOMING_MEME_QUEUE_NAME"), env)

A looked-for variable that cannot be read (``valueFrom.secretKeyRef``, ``fieldRef``,
``resourceFieldRef``, absent without ``fallbackName``, a JSON map that does not
parse, a missing non-optional ConfigMap) is an ``EnvReadingError`` naming the env
var, the container, the workload and the fix. Every source of one Kafka topic
(and of its group id) must hold the same value. ``registry.workload_queues``
reads the workloads and ConfigMaps through the Kubernetes adapter and calls this.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import regex

from registry.container_envs import ContainerEnv, EnvEntry
from registry.env_refs import (
    FALLBACK_NAME,
    EnvVarRef,
    FoundQueue,
    FoundTopic,
    FoundVar,
    NameSource,
    QueueName,
    TopicSources,
    ValueOrigin,
)
from registry.errors import EnvReadingError


def find_queue(
    queue_id: str, source: NameSource, env: ContainerEnv, *, what: str = ""
) -> FoundQueue:
    """Every variable of ``env`` naming queue ``queue_id``; ``EnvReadingError`` otherwise.

    ``what`` prefixes messages (e.g. ``MirrordWorkloadQueueRegistry shop/reg queue 'q'``)."""
    what = what or f"queue {queue_id!r}"
    if (source.env_var is None) == (source.regex_pattern is None):
        raise EnvReadingError(f"{what}: nameSource needs exactly one of envVar and regexPattern")
    if source.env_var is not None:
        entry = env.entries.get(source.env_var)
        if entry is None and source.fallback_name is not None:
            found = _found(
                env,
                source.env_var,
                source.fallback_name,
                ValueOrigin(FALLBACK_NAME),
                source.names_from_json_map,
                f"{what}: fallbackName (for absent {env.where(source.env_var)})",
            )
            return FoundQueue(queue_id, (found,))
        if entry is None:
            raise EnvReadingError(
                f"{what}: {env.where(source.env_var)} is not set{_maybe_from(env)}; add it to "
                "the container, or set fallbackName in the registry's queue"
            )
        return FoundQueue(queue_id, (_read_entry(env, entry, source.names_from_json_map, what),))
    assert source.regex_pattern is not None
    try:
        pattern = regex.compile(source.regex_pattern)
    except regex.error as e:
        raise EnvReadingError(
            f"{what}: nameSource.regexPattern {source.regex_pattern!r} does not compile: {e}; "
            "fix the regular expression"
        ) from e
    matching = [e for var, e in env.entries.items() if pattern.search(var)]
    if not matching:
        hint = (
            "; fallbackName applies only with nameSource.envVar"
            if source.fallback_name is not None
            else ""
        )
        raise EnvReadingError(
            f"{what}: no env var of container {env.container} of {env.workload} matches "
            f"nameSource.regexPattern {source.regex_pattern!r}{_maybe_from(env)}{hint}; fix the "
            "pattern or add the env vars"
        )
    return FoundQueue(
        queue_id, tuple(_read_entry(env, e, source.names_from_json_map, what) for e in matching)
    )


def find_topic(
    topic: TopicSources,
    envs: Mapping[str, ContainerEnv],
    *,
    what: str = "",
) -> FoundTopic:
    """The topic and group id of ``topic`` from the containers' environments (container
    name -> env); every source of the topic (and of the group id) must agree."""
    what = what or f"topic {topic.topic_id!r}"
    names = tuple(_read_ref(ref, envs, what, "nameSources") for ref in topic.name_sources)
    groups = tuple(_read_ref(ref, envs, what, "groupIdSources") for ref in topic.group_id_sources)
    return FoundTopic(
        topic.topic_id,
        _agreed(names, what, "topic name"),
        _agreed(groups, what, "group id"),
        names,
        groups,
    )


def _read_ref(ref: EnvVarRef, envs: Mapping[str, ContainerEnv], what: str, key: str) -> FoundVar:
    env = envs.get(ref.container)
    if env is None:
        raise EnvReadingError(
            f"{what}: {key} names container {ref.container!r}, which the workload does not "
            f"have (its containers: {', '.join(envs)}); fix directEnvVar.container"
        )
    entry = env.entries.get(ref.variable)
    if entry is None and ref.fallback is not None:
        return _found(
            env, ref.variable, ref.fallback, ValueOrigin(FALLBACK_NAME), False, f"{what}: fallback"
        )
    if entry is None:
        raise EnvReadingError(
            f"{what}: {key}: {env.where(ref.variable)} is not set{_maybe_from(env)}; add it to "
            "the container or fix directEnvVar.variable"
        )
    return _read_entry(env, entry, False, f"{what}: {key}")


def _agreed(found: Sequence[FoundVar], what: str, thing: str) -> str:
    values = list(dict.fromkeys(v.value for v in found))
    if len(values) > 1:
        listing = "; ".join(f"{v.variable} of container {v.container} = {v.value!r}" for v in found)
        raise EnvReadingError(
            f"{what}: its sources disagree on the {thing} ({listing}); every source of one "
            "topic must hold the same value: fix the env vars or split the topic id"
        )
    return values[0]


def _maybe_from(env: ContainerEnv) -> str:
    if not env.unreadable_env_from:
        return ""
    return " (it may come from " + "; ".join(env.unreadable_env_from) + ")"


def _read_entry(env: ContainerEnv, entry: EnvEntry, json_map: bool, what: str) -> FoundVar:
    if entry.value is None or entry.origin is None:
        raise EnvReadingError(f"{what}: {env.where(entry.variable)} {entry.problem}")
    return _found(env, entry.variable, entry.value, entry.origin, json_map, what)


def _found(
    env: ContainerEnv, var: str, value: str, origin: ValueOrigin, json_map: bool, what: str
) -> FoundVar:
    where = env.where(var)
    if json_map:
        names = _json_names(value, f"{what}: {where}")
    elif not value.strip():
        raise EnvReadingError(f"{what}: {where} is empty; set it to the queue name or URL")
    else:
        names = (QueueName(value),)
    return FoundVar(env.container, var, value, origin, names)


def _json_names(value: str, where: str) -> tuple[QueueName, ...]:
    fix = 'namesFromJsonMap wants a JSON object of queue names, e.g. {"orders": "orders-q"}'
    try:
        parsed = json.loads(value)
    except ValueError as e:
        raise EnvReadingError(f"{where} is not JSON ({e}); {fix}") from e
    if not isinstance(parsed, dict):
        raise EnvReadingError(f"{where} is JSON but not an object; {fix}")
    bad = [k for k, v in parsed.items() if not isinstance(v, str) or not v]
    if bad:
        raise EnvReadingError(
            f"{where}: the JSON map's values under {', '.join(map(repr, bad))} are not "
            f"non-empty strings; {fix}"
        )
    if not parsed:
        raise EnvReadingError(f"{where} is an empty JSON object; {fix}")
    return tuple(QueueName(v, json_key=k) for k, v in parsed.items())
