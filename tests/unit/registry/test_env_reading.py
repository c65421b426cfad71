"""registry.env_reading's pure core (with registry.container_envs and registry.env_refs):
queue names, topics and group ids from pod templates."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest

from registry.container_envs import ContainerEnv, config_map_names, container_env
from registry.env_reading import find_queue, find_topic
from registry.env_refs import (
    CONFIG_MAP_KEY_REF,
    ENV_FROM_CONFIG_MAP,
    FALLBACK_NAME,
    VALUE,
    EnvVarRef,
    NameSource,
    QueueName,
    TopicSources,
    ValueOrigin,
)
from registry.errors import EnvReadingError, WorkloadError
from registry.workloads import container_of

pytestmark = pytest.mark.unit

WORKLOAD = "Deployment shop/meme-app"
URL = "https://sqs.eu-west-1.amazonaws.com/000000000000/orders.fifo"
CONFIG_MAPS: dict[str, dict[str, str]] = {
    "queues": {"Q_NAME": "from-cm", "OTHER": "x"},
    "prefixed": {"NAME1": "pq1", "URL2": URL},
}


def resolve(name: str) -> Mapping[str, str] | None:
    return CONFIG_MAPS.get(name)


def env_of(
    env: list[dict[str, Any]] | None = None, env_from: list[dict[str, Any]] | None = None
) -> ContainerEnv:
    container: dict[str, Any] = {"name": "main", "env": env or []}
    if env_from is not None:
        container["envFrom"] = env_from
    return container_env(container, resolve, workload=WORKLOAD)


def direct(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def from_cm(name: str, cm: str, key: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"configMapKeyRef": {"name": cm, "key": key, **kw}}}


# --- found: every registry shape ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "env_from", "source", "expected"),
    [
        pytest.param(
            [direct("Q", "orders")],
            None,
            NameSource(env_var="Q"),
            [("Q", "orders", ValueOrigin(VALUE), [QueueName("orders")])],
            id="direct value, a queue name",
        ),
        pytest.param(
            [direct("Q", URL)],
            None,
            NameSource(env_var="Q"),
            [("Q", URL, ValueOrigin(VALUE), [QueueName(URL)])],
            id="direct value, a queue URL kept as a URL",
        ),
        pytest.param(
            [from_cm("Q", "queues", "Q_NAME")],
            None,
            NameSource(env_var="Q"),
            [
                (
                    "Q",
                    "from-cm",
                    ValueOrigin(CONFIG_MAP_KEY_REF, "queues", "Q_NAME"),
                    [QueueName("from-cm")],
                )
            ],
            id="valueFrom.configMapKeyRef",
        ),
        pytest.param(
            [],
            [{"configMapRef": {"name": "prefixed"}, "prefix": "SQS_"}],
            NameSource(env_var="SQS_URL2"),
            [
                (
                    "SQS_URL2",
                    URL,
                    ValueOrigin(ENV_FROM_CONFIG_MAP, "prefixed", "URL2", "SQS_"),
                    [QueueName(URL)],
                )
            ],
            id="envFrom.configMapRef with a prefix",
        ),
        pytest.param(
            [
                direct("SQS_TEST_Q_NAME1", "q1"),
                direct("OTHER", "no"),
                direct("SQS_TEST_Q2_URL", URL),
            ],
            None,
            NameSource(regex_pattern="SQS_TEST_Q.+"),
            [
                ("SQS_TEST_Q_NAME1", "q1", ValueOrigin(VALUE), [QueueName("q1")]),
                ("SQS_TEST_Q2_URL", URL, ValueOrigin(VALUE), [QueueName(URL)]),
            ],
            id="regexPattern: every matching var, in definition order",
        ),
        pytest.param(
            [direct("MY_ORDERS_QUEUE", "o"), direct("ORDERS", "no")],
            None,
            NameSource(regex_pattern="ORDERS_Q"),
            [("MY_ORDERS_QUEUE", "o", ValueOrigin(VALUE), [QueueName("o")])],
            id="regexPattern searches: it need not match the whole name",
        ),
        pytest.param(
            [direct("Q_A", "a"), direct("Q_B", "b"), direct("Q_B_OLD", "c")],
            None,
            NameSource(regex_pattern=r"^Q_(?!B_OLD)\w$"),
            [
                ("Q_A", "a", ValueOrigin(VALUE), [QueueName("a")]),
                ("Q_B", "b", ValueOrigin(VALUE), [QueueName("b")]),
            ],
            id="regexPattern: lookaround allowed (fancy regex)",
        ),
        pytest.param(
            [],
            [{"configMapRef": {"name": "prefixed"}, "prefix": "SQS_TEST_Q_"}],
            NameSource(regex_pattern="^SQS_TEST_Q_"),
            [
                (
                    "SQS_TEST_Q_NAME1",
                    "pq1",
                    ValueOrigin(ENV_FROM_CONFIG_MAP, "prefixed", "NAME1", "SQS_TEST_Q_"),
                    [QueueName("pq1")],
                ),
                (
                    "SQS_TEST_Q_URL2",
                    URL,
                    ValueOrigin(ENV_FROM_CONFIG_MAP, "prefixed", "URL2", "SQS_TEST_Q_"),
                    [QueueName(URL)],
                ),
            ],
            id="regexPattern over envFrom vars",
        ),
        pytest.param(
            [direct("SQS_TEST_Q_JSON", '{"queue1_name": "q1", "queue2_url": "' + URL + '"}')],
            None,
            NameSource(env_var="SQS_TEST_Q_JSON", names_from_json_map=True),
            [
                (
                    "SQS_TEST_Q_JSON",
                    '{"queue1_name": "q1", "queue2_url": "' + URL + '"}',
                    ValueOrigin(VALUE),
                    [QueueName("q1", "queue1_name"), QueueName(URL, "queue2_url")],
                )
            ],
            id="namesFromJsonMap: the map's values, keys kept",
        ),
        pytest.param(
            [direct("OTHER", "x")],
            None,
            NameSource(env_var="MEME_QUEUE_NAME", fallback_name="IncomingMemeQueue.fifo"),
            [
                (
                    "MEME_QUEUE_NAME",
                    "IncomingMemeQueue.fifo",
                    ValueOrigin(FALLBACK_NAME),
                    [QueueName("IncomingMemeQueue.fifo")],
                )
            ],
            id="fallbackName when the var is absent",
        ),
        pytest.param(
            [direct("MEME_QUEUE_NAME", "present")],
            None,
            NameSource(env_var="MEME_QUEUE_NAME", fallback_name="unused"),
            [("MEME_QUEUE_NAME", "present", ValueOrigin(VALUE), [QueueName("present")])],
            id="fallbackName unused when the var is present",
        ),
        pytest.param(
            [],
            None,
            NameSource(
                env_var="SQS_TEST_Q_JSON", fallback_name='{"a": "qa"}', names_from_json_map=True
            ),
            [
                (
                    "SQS_TEST_Q_JSON",
                    '{"a": "qa"}',
                    ValueOrigin(FALLBACK_NAME),
                    [QueueName("qa", "a")],
                )
            ],
            id="fallbackName holding a JSON map",
        ),
        pytest.param(
            [direct("Q", "from-env")],
            [{"configMapRef": {"name": "queues"}, "prefix": ""}],
            NameSource(env_var="Q"),
            [("Q", "from-env", ValueOrigin(VALUE), [QueueName("from-env")])],
            id="env overrides envFrom",
        ),
        pytest.param(
            [direct("Q", "first"), direct("Q", "second")],
            None,
            NameSource(env_var="Q"),
            [("Q", "second", ValueOrigin(VALUE), [QueueName("second")])],
            id="a later env entry overrides an earlier one",
        ),
        pytest.param(
            [direct("Q", "q"), from_cm("BROKEN", "absent", "k")],
            [{"secretRef": {"name": "creds"}}],
            NameSource(env_var="Q"),
            [("Q", "q", ValueOrigin(VALUE), [QueueName("q")])],
            id="unrelated unreadable vars do not matter",
        ),
    ],
)
def test_every_registry_shape_finds_the_vars_their_values_and_how(
    env: list[dict[str, Any]],
    env_from: list[dict[str, Any]] | None,
    source: NameSource,
    expected: list[tuple[str, str, ValueOrigin, list[QueueName]]],
) -> None:
    found = find_queue("q", source, env_of(env, env_from))
    assert found.queue_id == "q"
    assert [(v.variable, v.value, v.origin, list(v.names)) for v in found.vars] == expected
    assert {v.container for v in found.vars} == {"main"}


def test_only_a_fallback_name_says_the_patch_must_add_the_var() -> None:
    absent = find_queue("q", NameSource(env_var="Q", fallback_name="fb"), env_of([]))
    present = find_queue(
        "q", NameSource(env_var="Q", fallback_name="fb"), env_of([direct("Q", "v")])
    )
    assert [v.must_add for v in absent.vars] == [True]
    assert [v.must_add for v in present.vars] == [False]


def test_names_lists_each_queue_once_in_the_order_found() -> None:
    env = env_of([direct("A_Q", "one"), direct("B_Q", "two"), direct("C_Q", "one")])
    found = find_queue("q", NameSource(regex_pattern="_Q$"), env)
    assert found.names() == ["one", "two"]


def test_an_optional_config_map_ref_that_is_missing_leaves_the_var_unset() -> None:
    env = env_of(
        [from_cm("Q", "absent", "k", optional=True)],
        [{"configMapRef": {"name": "also-absent", "optional": True}}],
    )
    found = find_queue("q", NameSource(env_var="Q", fallback_name="fb"), env)
    assert [(v.value, v.origin.kind) for v in found.vars] == [("fb", FALLBACK_NAME)]


# --- errors: each names the env var, the container, the workload and the fix -------------------


@pytest.mark.parametrize(
    ("env", "env_from", "source", "message"),
    [
        pytest.param(
            [{"name": "Q", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            None,
            NameSource(env_var="Q"),
            "env var Q of container main of Deployment shop/meme-app comes from "
            "valueFrom.secretKeyRef; put the queue name in env[].value, "
            "env[].valueFrom.configMapKeyRef or envFrom[].configMapRef instead",
            id="secretKeyRef",
        ),
        pytest.param(
            [{"name": "Q", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            None,
            NameSource(env_var="Q"),
            "env var Q of container main of Deployment shop/meme-app comes from valueFrom.fieldRef",
            id="fieldRef",
        ),
        pytest.param(
            [{"name": "Q", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}],
            None,
            NameSource(env_var="Q"),
            "comes from valueFrom.resourceFieldRef",
            id="resourceFieldRef",
        ),
        pytest.param(
            [direct("OTHER", "x")],
            None,
            NameSource(env_var="Q"),
            "env var Q of container main of Deployment shop/meme-app is not set; add it to the "
            "container, or set fallbackName in the registry's queue",
            id="absent without fallbackName",
        ),
        pytest.param(
            [],
            [{"secretRef": {"name": "creds"}}],
            NameSource(env_var="Q"),
            "is not set (it may come from envFrom[0].secretRef: Secret creds (pymirror does not "
            "read queue names from Secrets))",
            id="absent, maybe from an envFrom Secret",
        ),
        pytest.param(
            [],
            [{"configMapRef": {"name": "absent"}}],
            NameSource(env_var="Q"),
            "envFrom[0].configMapRef: ConfigMap absent does not exist",
            id="absent, maybe from a missing envFrom ConfigMap",
        ),
        pytest.param(
            [from_cm("Q", "absent", "k")],
            None,
            NameSource(env_var="Q"),
            "env var Q of container main of Deployment shop/meme-app comes from "
            "valueFrom.configMapKeyRef, but ConfigMap absent does not exist",
            id="configMapKeyRef to a missing ConfigMap",
        ),
        pytest.param(
            [from_cm("Q", "queues", "NOPE")],
            None,
            NameSource(env_var="Q"),
            "but ConfigMap queues has no key 'NOPE'",
            id="configMapKeyRef to a missing key",
        ),
        pytest.param(
            [direct("Q", "")],
            None,
            NameSource(env_var="Q"),
            "env var Q of container main of Deployment shop/meme-app is empty",
            id="empty value",
        ),
        pytest.param(
            [direct("Q", "{not json")],
            None,
            NameSource(env_var="Q", names_from_json_map=True),
            "env var Q of container main of Deployment shop/meme-app is not JSON",
            id="JSON map that does not parse",
        ),
        pytest.param(
            [direct("Q", '["a", "b"]')],
            None,
            NameSource(env_var="Q", names_from_json_map=True),
            "is JSON but not an object; namesFromJsonMap wants a JSON object of queue names",
            id="JSON that is not an object",
        ),
        pytest.param(
            [direct("Q", '{"a": 1, "b": "ok", "c": ""}')],
            None,
            NameSource(env_var="Q", names_from_json_map=True),
            "the JSON map's values under 'a', 'c' are not non-empty strings",
            id="JSON map with non-string values",
        ),
        pytest.param(
            [direct("Q", "{}")],
            None,
            NameSource(env_var="Q", names_from_json_map=True),
            "is an empty JSON object",
            id="empty JSON map",
        ),
        pytest.param(
            [],
            None,
            NameSource(env_var="Q", fallback_name="not json", names_from_json_map=True),
            "fallbackName (for absent env var Q of container main of Deployment shop/meme-app)",
            id="fallbackName that is not a JSON map",
        ),
        pytest.param(
            [direct("A", "x")],
            None,
            NameSource(regex_pattern="^SQS_"),
            "no env var of container main of Deployment shop/meme-app matches "
            "nameSource.regexPattern '^SQS_'; fix the pattern or add the env vars",
            id="regexPattern matching nothing",
        ),
        pytest.param(
            [],
            None,
            NameSource(regex_pattern="^SQS_", fallback_name="fb"),
            "fallbackName applies only with nameSource.envVar",
            id="regexPattern matching nothing, with a fallbackName",
        ),
        pytest.param(
            [{"name": "SQS_Q", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            None,
            NameSource(regex_pattern="^SQS_"),
            "env var SQS_Q of container main of Deployment shop/meme-app comes from "
            "valueFrom.secretKeyRef",
            id="regexPattern matching a secret var",
        ),
        pytest.param(
            [],
            None,
            NameSource(regex_pattern="(unclosed"),
            "nameSource.regexPattern '(unclosed' does not compile",
            id="regexPattern that does not compile",
        ),
        pytest.param(
            [],
            None,
            NameSource(),
            "nameSource needs exactly one of envVar and regexPattern",
            id="no name source",
        ),
    ],
)
def test_unreadable_sources_are_errors_naming_the_var_the_container_and_the_fix(
    env: list[dict[str, Any]],
    env_from: list[dict[str, Any]] | None,
    source: NameSource,
    message: str,
) -> None:
    with pytest.raises(EnvReadingError, match=re.escape(message)) as raised:
        find_queue("meme-queue", source, env_of(env, env_from))
    assert str(raised.value).startswith("queue 'meme-queue': ")


# --- the wire shapes of a registry queue -----------------------------------------------------


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ({"queueType": "SQS", "nameSource": {"envVar": "Q"}}, NameSource(env_var="Q")),
        (
            {"queueType": "SQS", "nameSource": {"regexPattern": "^Q"}, "fallbackName": "f"},
            NameSource(regex_pattern="^Q", fallback_name="f"),
        ),
        (
            {"queueType": "SQS", "nameSource": {"envVar": "J"}, "namesFromJsonMap": True},
            NameSource(env_var="J", names_from_json_map=True),
        ),
    ],
)
def test_registry_queue_details_become_name_sources(
    details: dict[str, Any], expected: NameSource
) -> None:
    assert NameSource.from_wire(details, "queue 'q'") == expected


@pytest.mark.parametrize(
    ("details", "message"),
    [
        ({"queueType": "SQS"}, "queue 'q': nameSource is missing"),
        (
            {"queueType": "SQS", "nameSource": {"envVar": "A", "regexPattern": "B"}},
            "exactly one of envVar and regexPattern",
        ),
        (
            {"queueType": "SQS", "nameSource": {"envVar": "A"}, "namesFromJsonMap": "yes"},
            "namesFromJsonMap must be true or false",
        ),
    ],
)
def test_bad_registry_queue_details_are_named(details: dict[str, Any], message: str) -> None:
    with pytest.raises(EnvReadingError, match=re.escape(message)):
        NameSource.from_wire(details, "queue 'q'")


# --- Kafka: topic names and group ids -------------------------------------------------------


def kafka_envs(*containers: tuple[str, list[dict[str, Any]]]) -> dict[str, ContainerEnv]:
    return {
        name: container_env({"name": name, "env": env}, resolve, workload=WORKLOAD)
        for name, env in containers
    }


def topic(names: list[EnvVarRef], groups: list[EnvVarRef]) -> TopicSources:
    return TopicSources("views", tuple(names), tuple(groups))


def test_a_topic_and_its_group_id_are_read_from_their_containers() -> None:
    envs = kafka_envs(
        ("consumer", [direct("KAFKA_TOPIC_NAME", "views"), direct("KAFKA_GROUP_ID", "g1")]),
        ("sidecar", [direct("TOPIC", "views")]),
    )
    found = find_topic(
        topic(
            [EnvVarRef("consumer", "KAFKA_TOPIC_NAME"), EnvVarRef("sidecar", "TOPIC")],
            [EnvVarRef("consumer", "KAFKA_GROUP_ID")],
        ),
        envs,
    )
    assert (found.topic_id, found.topic, found.group_id) == ("views", "views", "g1")
    assert [(v.container, v.variable) for v in found.name_vars] == [
        ("consumer", "KAFKA_TOPIC_NAME"),
        ("sidecar", "TOPIC"),
    ]
    assert [(v.container, v.variable, v.must_add) for v in found.group_id_vars] == [
        ("consumer", "KAFKA_GROUP_ID", False)
    ]


def test_a_direct_env_var_fallback_is_used_when_the_var_is_absent() -> None:
    envs = kafka_envs(("c", [direct("T", "views")]))
    found = find_topic(topic([EnvVarRef("c", "T")], [EnvVarRef("c", "G", fallback="g-fb")]), envs)
    assert (found.group_id, [v.must_add for v in found.group_id_vars]) == ("g-fb", [True])


@pytest.mark.parametrize(
    ("containers", "names", "groups", "message"),
    [
        pytest.param(
            [("c", [direct("T", "views")])],
            [EnvVarRef("nope", "T")],
            [EnvVarRef("c", "G")],
            "topic 'views': nameSources names container 'nope', which the workload does not "
            "have (its containers: c); fix directEnvVar.container",
            id="unknown container",
        ),
        pytest.param(
            [("c", [direct("T", "views")])],
            [EnvVarRef("c", "T")],
            [EnvVarRef("c", "G")],
            "groupIdSources: env var G of container c of Deployment shop/meme-app is not set; add "
            "it to the container or fix directEnvVar.variable",
            id="absent group id var",
        ),
        pytest.param(
            [("c", [direct("T", "views"), direct("T2", "clicks"), direct("G", "g")])],
            [EnvVarRef("c", "T"), EnvVarRef("c", "T2")],
            [EnvVarRef("c", "G")],
            "its sources disagree on the topic name (T of container c = 'views'; T2 of container "
            "c = 'clicks')",
            id="name sources disagree",
        ),
        pytest.param(
            [("c", [direct("T", "views"), {"name": "G", "valueFrom": {"secretKeyRef": {}}}])],
            [EnvVarRef("c", "T")],
            [EnvVarRef("c", "G")],
            "env var G of container c of Deployment shop/meme-app comes from "
            "valueFrom.secretKeyRef",
            id="group id from a Secret",
        ),
    ],
)
def test_unreadable_kafka_sources_are_errors_naming_the_var_and_container(
    containers: list[tuple[str, list[dict[str, Any]]]],
    names: list[EnvVarRef],
    groups: list[EnvVarRef],
    message: str,
) -> None:
    with pytest.raises(EnvReadingError, match=re.escape(message)):
        find_topic(topic(names, groups), kafka_envs(*containers))


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (
            {"id": "t", "nameSources": [{"directEnvVar": {"container": "c", "variable": "T"}}]},
            "topic 't' needs at least one groupIdSources entry",
        ),
        (
            {
                "id": "t",
                "nameSources": [{"directEnvVar": {"container": "c", "variable": "T"}}],
                "applicationIdSources": [{"directEnvVar": {"container": "c", "variable": "A"}}],
            },
            "topic 't' has applicationIdSources (a Kafka Streams consumer), which pymirror does "
            "not split; use groupIdSources",
        ),
        (
            {"id": "t", "nameSources": [{"envVarPattern": "T"}], "groupIdSources": []},
            "topic 't' nameSources[0] has no directEnvVar",
        ),
    ],
)
def test_bad_kafka_topic_entries_are_named(wire: dict[str, Any], message: str) -> None:
    with pytest.raises(EnvReadingError, match=re.escape(message)):
        TopicSources.from_wire(wire, "MirrordKafkaTopicsConsumer shop/c")


# --- helpers ----------------------------------------------------------------------------------


def test_config_map_names_lists_every_referenced_config_map_once() -> None:
    containers = [
        {
            "name": "a",
            "envFrom": [{"configMapRef": {"name": "m1"}}, {"secretRef": {"name": "s"}}],
            "env": [from_cm("X", "m2", "k"), from_cm("Y", "m1", "k"), direct("Z", "z")],
        },
        {"name": "b", "env": [from_cm("X", "m3", "k")]},
    ]
    assert config_map_names(containers) == ["m1", "m2", "m3"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [(None, "first"), ("second", "second")],
)
def test_the_container_is_the_named_one_or_the_first(name: str | None, expected: str) -> None:
    template = {"spec": {"containers": [{"name": "first"}, {"name": "second"}]}}
    assert container_of(template, name, WORKLOAD)["name"] == expected


@pytest.mark.parametrize(
    ("template", "name", "message"),
    [
        (
            {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}},
            "main",
            "Deployment shop/meme-app has no container 'main' (its containers: a, b); fix the "
            "container name in the registry or the target",
        ),
        ({"spec": {"containers": []}}, None, "the pod template has no spec.containers"),
    ],
)
def test_a_missing_container_is_an_error_listing_the_ones_there_are(
    template: dict[str, Any], name: str | None, message: str
) -> None:
    with pytest.raises(WorkloadError, match=re.escape(message)):
        container_of(template, name, WORKLOAD)
