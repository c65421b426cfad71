"""pymirror.operator.planning on the real test API server: sessions planned, or refused.

The meme app of mirrord's documentation (examples/meme-app/ and
examples/pymirror/split-session.yaml, applied unchanged but for the target's apiVersion,
which is the stand-in Deployment kind here) is planned as the operator will provision it:
its SQS queue from the queue registry, its Kafka topic and group id from the topics
consumer. A session planned while an earlier one's splits patched the workload reads the
originals from before the patch (and so names the same splits). Each way a session can be
wrong is refused with its exact message, naming the field and the fix, and nothing is
written to the API server.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import yaml

from pymirror.operator.planning import (
    PlannedQueue,
    SessionInvalid,
    SessionPlan,
    plan_session,
    split_name,
)
from pymirror.operator.settings import OperatorSettings
from registry.env_patch import ORIGINAL_ENV_ANNOTATION, patch_env
from registry.models import API_VERSION as MODELS_API_VERSION
from registry.models import (
    MirrordKafkaClientConfig,
    MirrordKafkaTopicsConsumer,
    MirrordWorkloadQueueRegistry,
)
from registry.objects import Kube
from registry.resources import Resource
from registry.session_models import QueueSplit, SplitSession, parse_pymirror_object
from registry.workloads import WorkloadRef, get_workload
from tests.fixtures.kube import STAND_INS
from tests.servers.process import REPO

pytestmark = pytest.mark.integration

Obj = dict[str, Any]
EXAMPLES = REPO / "examples"
STAND_IN = "apps.pymirror.test/v1"
CONFIG_MAPS = Resource(*STAND_INS["ConfigMap"])
DEPLOYMENTS = Resource(*STAND_INS["Deployment"])
BOOTSTRAP = {"name": "bootstrap.servers", "value": "kafka:9092"}
MEME_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/IncomingMemeQueue"


def settings(namespace: str, **overrides: Any) -> OperatorSettings:
    """The operator's settings with the test server's stand-in kinds."""
    return OperatorSettings(
        namespace=namespace,
        workload_kinds={k: "/".join(STAND_INS[k][:2]) for k in ("Deployment", "StatefulSet")},
        config_kinds={k: "/".join(STAND_INS[k][:2]) for k in ("ConfigMap", "Secret")},
        **overrides,
    )


def example(path: str) -> Obj:
    doc: Obj = yaml.safe_load((EXAMPLES / path).read_text())
    return doc


def meme_app() -> Obj:
    """The meme app's Deployment: queue names in container main, the topic in consumer."""
    main = {
        "name": "main",
        "image": "meme-app:1",
        "env": [
            {"name": "INCOMING_MEME_QUEUE_NAME", "value": MEME_URL},
            {
                "name": "AD_QUEUE_NAME",
                "valueFrom": {"configMapKeyRef": {"name": "meme-queues", "key": "ads"}},
            },
        ],
    }
    consumer = {
        "name": "consumer",
        "image": "meme-consumer:1",
        "env": [
            {"name": "KAFKA_TOPIC_NAME", "value": "views"},
            {"name": "KAFKA_GROUP_ID", "value": "meme-app-views"},
        ],
    }
    return {
        "apiVersion": STAND_IN,
        "kind": "Deployment",
        "metadata": {"name": "meme-app"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "meme-app"}},
            "template": {
                "metadata": {"labels": {"app": "meme-app"}},
                "spec": {"containers": [main, consumer]},
            },
        },
    }


async def setup_meme_app(kube: Kube, namespace: str) -> None:
    """The meme app, its ConfigMap, queue registry and topics consumer, as documented."""
    await kube.objects(CONFIG_MAPS, namespace).create(
        {
            "apiVersion": CONFIG_MAPS.api_version,
            "kind": "ConfigMap",
            "metadata": {"name": "meme-queues"},
            "data": {"ads": "AdQueue"},
        }
    )
    await kube.objects(DEPLOYMENTS, namespace).create(meme_app())
    for name in ("base-config", "views-config"):  # the operator namespace is the test's
        await create_client_config(kube, namespace, name, BOOTSTRAP)
    for path, model in (
        ("meme-app/queue-registry.yaml", MirrordWorkloadQueueRegistry),
        ("meme-app/kafka-topics-consumer.yaml", MirrordKafkaTopicsConsumer),
    ):
        await kube.objects(model.RESOURCE, namespace).create(example(path))


async def create_client_config(
    kube: Kube, namespace: str, name: str, *properties: Obj, **spec: Any
) -> None:
    body = {
        "apiVersion": MODELS_API_VERSION,
        "kind": "MirrordKafkaClientConfig",
        "metadata": {"name": name},
        "spec": {"properties": list(properties), **spec},
    }
    await kube.objects(MirrordKafkaClientConfig.RESOURCE, namespace).create(body)


async def create_session(
    kube: Kube,
    namespace: str,
    queues: list[Obj] | None = None,
    *,
    session: str = "alice-meme-app",
    **target: Any,
) -> SplitSession:
    """examples/pymirror/split-session.yaml (its queues or ``queues``) on the stand-in kind."""
    body = example("pymirror/split-session.yaml")
    body["metadata"]["name"] = session
    body["spec"]["target"]["apiVersion"] = STAND_IN
    body["spec"]["target"].update(target)
    if queues is not None:
        body["spec"]["queues"] = queues
    created = parse_pymirror_object(
        await kube.objects(SplitSession.RESOURCE, namespace).create(body)
    )
    assert isinstance(created, SplitSession)
    return created


def sqs(queue_id: str, **fields: Any) -> Obj:
    return {"id": queue_id, "kind": "SQS", "messageFilter": {"author": "^alice$"}, **fields}


def kafka(queue_id: str, **fields: Any) -> Obj:
    return {"id": queue_id, "kind": "Kafka", "messageFilter": {"source": "^alice$"}, **fields}


def ref(namespace: str) -> WorkloadRef:
    return WorkloadRef("Deployment", namespace, "meme-app")


# --- planned ----------------------------------------------------------------------------------


async def test_the_meme_app_example_session_is_planned_from_its_registries(
    kube: Kube, unique_name: str
) -> None:
    ns = unique_name
    await setup_meme_app(kube, ns)
    session = await create_session(kube, ns)
    before = await kube.objects(DEPLOYMENTS, ns).get("meme-app")

    plan = await plan_session(kube, session, settings=settings(ns))

    assert (plan.namespace, plan.name, plan.session_ref) == (
        ns,
        "alice-meme-app",
        f"{ns}/alice-meme-app",
    )
    assert plan.workload.ref == ref(ns)
    assert plan.kinds.deployment == DEPLOYMENTS
    assert plan.queues == [
        PlannedQueue(
            id="meme-queue",
            kind="SQS",
            split=split_name(ref(ns), "meme-queue"),
            original=MEME_URL,  # a URL stays a URL
            env_var="INCOMING_MEME_QUEUE_NAME",
            container="main",
            message_filter={"author": "^alice$", "level": "^(beginner|intermediate)$"},
            jq_filter=None,
            mode="steal",
            group_id=None,
            group_id_env_var=None,
            client_config=None,
            tags={"tool": "mirrord"},
        ),
        PlannedQueue(
            id="views-topic",
            kind="Kafka",
            split=split_name(ref(ns), "views-topic", "Kafka"),
            original="views",
            env_var="KAFKA_TOPIC_NAME",
            container="consumer",
            message_filter=None,
            jq_filter='.views > 1000 and .source == "alice"',
            mode="mirror",
            group_id="meme-app-views",
            group_id_env_var="KAFKA_GROUP_ID",
            client_config="base-config",
        ),
    ]
    assert plan.queues[0].split.startswith("meme-app-meme-queue-")
    # Nothing was written: the workload is unchanged and no QueueSplit exists.
    after = await kube.objects(DEPLOYMENTS, ns).get("meme-app")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert (await kube.objects(QueueSplit.RESOURCE, ns).list()).items == []


async def test_a_kafka_consumer_gives_the_topic_group_id_and_client_config(
    kube: Kube, unique_name: str
) -> None:
    ns = unique_name
    await setup_meme_app(kube, ns)
    consumer = example("kafka/topics-consumer.yaml")  # two topics, one with a fallback
    consumer["spec"].update(consumerKind="Deployment", consumerName="meme-app")
    consumer["spec"]["topics"][1]["groupIdSources"][0]["directEnvVar"]["variable"] = "CLICKS_GROUP"
    await kube.objects(MirrordKafkaTopicsConsumer.RESOURCE, ns).create(consumer)
    await kube.objects(CONFIG_MAPS, ns).merge_patch(
        "meme-queues", {"data": {"clicks-group": "clicks-group"}}
    )
    containers = [meme_app()["spec"]["template"]["spec"]["containers"][0], consumer_with_clicks()]
    await kube.objects(DEPLOYMENTS, ns).merge_patch(
        "meme-app", {"spec": {"template": {"spec": {"containers": containers}}}}
    )
    session = await create_session(kube, ns, [kafka("clicks-topic", mode="mirror")])

    plan = await plan_session(kube, session, settings=settings(ns))

    (clicks,) = plan.queues
    assert clicks == PlannedQueue(
        id="clicks-topic",
        kind="Kafka",
        split=split_name(ref(ns), "clicks-topic", "Kafka"),
        original="clicks",  # the directEnvVar's fallback: the variable is not in the pod spec
        env_var="CLICKS_TOPIC",
        container="consumer",
        message_filter={"source": "^alice$"},
        jq_filter=None,
        mode="mirror",
        group_id="clicks-group",
        group_id_env_var="CLICKS_GROUP",
        client_config="views-config",
        restart_timeout=120.0,
    )
    # views-topic is now a topic of both consumers of the target: which one is meant?
    session = await create_session(kube, ns, [kafka("views-topic")], session="bob")
    with pytest.raises(SessionInvalid) as raised:
        await plan_session(kube, session, settings=settings(ns))
    assert str(raised.value) == (
        "spec.queues[0].id: topic 'views-topic' is defined by 2 MirrordKafkaTopicsConsumers "
        f"of the target ({ns}/meme-app-topics-consumer, {ns}/views-consumer); keep it in one "
        "of them"
    )


def consumer_with_clicks() -> Obj:
    """The consumer container with a group id for clicks from a ConfigMap, no CLICKS_TOPIC."""
    return {
        "name": "consumer",
        "image": "meme-consumer:1",
        "env": [
            {"name": "KAFKA_TOPIC_NAME", "value": "views"},
            {"name": "KAFKA_GROUP_ID", "value": "meme-app-views"},
            {
                "name": "CLICKS_GROUP",
                "valueFrom": {"configMapKeyRef": {"name": "meme-queues", "key": "clicks-group"}},
            },
        ],
    }


async def test_star_is_every_queue_of_its_kind_in_the_registry(
    kube: Kube, unique_name: str
) -> None:
    ns = unique_name
    await setup_meme_app(kube, ns)
    registries = kube.objects(MirrordWorkloadQueueRegistry.RESOURCE, ns)
    await registries.merge_patch(
        "meme-app-q-registry",
        {"spec": {"queues": {"rabbit": {"queueType": "RMQ", "nameSource": {"envVar": "R"}}}}},
    )
    session = await create_session(kube, ns, [sqs("*"), kafka("*", jqFilter=".big")])

    plan = await plan_session(kube, session, settings=settings(ns))

    got = [(q.kind, q.id, q.original, q.env_var, q.container, q.split) for q in plan.queues]
    assert got == [  # SQS ids in sorted order (a map has none); the RMQ queue is left out
        ("SQS", "ad-queue", "AdQueue", "AD_QUEUE_NAME", "main", got[0][5]),
        ("SQS", "meme-queue", MEME_URL, "INCOMING_MEME_QUEUE_NAME", "main", got[1][5]),
        ("Kafka", "views-topic", "views", "KAFKA_TOPIC_NAME", "consumer", got[2][5]),
    ]
    assert [q.split for q in plan.queues] == [
        split_name(ref(ns), "ad-queue"),
        split_name(ref(ns), "meme-queue"),
        split_name(ref(ns), "views-topic", "Kafka"),
    ]
    assert all(q.message_filter == {"author": "^alice$"} for q in plan.queues[:2])
    assert plan.queues[2].jq_filter == ".big"


async def setup_regex_and_json(kube: Kube, ns: str) -> None:
    """The meme app with a regexPattern id naming three vars (two queues) and a
    namesFromJsonMap id naming two queues in one JSON var."""
    await setup_meme_app(kube, ns)
    main, consumer = meme_app()["spec"]["template"]["spec"]["containers"]
    main["env"] += [
        {"name": "AD_QUEUE_BACKUP", "value": "AdQueue"},  # the same queue in a second var
        {"name": "QUEUES_JSON", "value": '{"memes": "JsonMemes", "ads": "JsonAds"}'},
    ]
    await kube.objects(DEPLOYMENTS, ns).merge_patch(
        "meme-app", {"spec": {"template": {"spec": {"containers": [main, consumer]}}}}
    )
    await kube.objects(MirrordWorkloadQueueRegistry.RESOURCE, ns).merge_patch(
        "meme-app-q-registry",
        {
            "spec": {
                "queues": {
                    "all-queues": {"queueType": "SQS", "nameSource": {"regexPattern": "_QUEUE_"}},
                    "json": {
                        "queueType": "SQS",
                        "nameSource": {"envVar": "QUEUES_JSON"},
                        "namesFromJsonMap": True,
                    },
                    "meme-queue": None,
                    "ad-queue": None,
                }
            }
        },
    )


async def test_a_regex_pattern_or_json_map_id_plans_one_split_per_queue_it_names(
    kube: Kube, unique_name: str
) -> None:
    ns = unique_name
    await setup_regex_and_json(kube, ns)
    session = await create_session(kube, ns, [sqs("all-queues"), sqs("json")])

    plan = await plan_session(kube, session, settings=settings(ns))

    got = [(q.id, q.original, q.env_var, q.json_key, q.also_env_vars) for q in plan.queues]
    assert got == [
        ("all-queues", MEME_URL, "INCOMING_MEME_QUEUE_NAME", None, ()),
        ("all-queues", "AdQueue", "AD_QUEUE_NAME", None, (("main", "AD_QUEUE_BACKUP"),)),
        ("json", "JsonMemes", "QUEUES_JSON", "memes", ()),
        ("json", "JsonAds", "QUEUES_JSON", "ads", ()),
    ]
    assert [q.split for q in plan.queues] == [
        split_name(ref(ns), f"all-queues::{MEME_URL}"),
        split_name(ref(ns), "all-queues::AdQueue"),
        split_name(ref(ns), "json::JsonMemes"),
        split_name(ref(ns), "json::JsonAds"),
    ]


async def patch_as_the_splits_do(kube: Kube, plan: SessionPlan) -> None:
    """Point every var of every planned queue at a fallback of its own, one owner (the
    QueueSplit) per queue, as ``Splits.join`` does: a JSON var gets only its key replaced."""
    for queue in plan.queues:
        workload = await get_workload(kube, plan.kinds, plan.namespace, "Deployment", "meme-app")
        fallback = f"mirrord-tmp-0000000000-fallback-{queue.split}"
        values = {var: fallback for _, var in queue.also_env_vars}
        if queue.json_key is not None:
            env = {e["name"]: e for e in workload.container(queue.container)["env"]}
            names = json.loads(env[queue.env_var]["value"])
            fallback = json.dumps({**names, queue.json_key: fallback})
        values[queue.env_var] = fallback
        await patch_env(kube, workload, queue.container, values, owner=queue.split)


async def test_a_second_session_plans_the_originals_from_before_any_patch(
    kube: Kube, unique_name: str
) -> None:
    ns = unique_name
    await setup_regex_and_json(kube, ns)
    queues = [sqs("all-queues"), sqs("json"), kafka("views-topic")]
    first = await plan_session(kube, await create_session(kube, ns, queues), settings=settings(ns))
    await patch_as_the_splits_do(kube, first)
    patched = await kube.objects(DEPLOYMENTS, ns).get("meme-app")
    env = {
        e["name"]: e for c in patched["spec"]["template"]["spec"]["containers"] for e in c["env"]
    }
    assert "fallback" in env["INCOMING_MEME_QUEUE_NAME"]["value"]
    assert "valueFrom" not in env["AD_QUEUE_NAME"]  # the ConfigMap reference was replaced
    assert "JsonMemes" not in env["QUEUES_JSON"]["value"]
    assert "JsonAds" not in env["QUEUES_JSON"]["value"]
    assert "fallback" in env["KAFKA_TOPIC_NAME"]["value"]

    second = await plan_session(
        kube, await create_session(kube, ns, queues, session="bob"), settings=settings(ns)
    )

    assert second.queues == first.queues  # the true originals, so the same splits
    assert [q.original for q in second.queues] == [
        MEME_URL,
        "AdQueue",  # from the ConfigMap, as the original env item referenced it
        "JsonMemes",
        "JsonAds",
        "views",
    ]
    again = await kube.objects(DEPLOYMENTS, ns).get("meme-app")  # planning wrote nothing
    assert again["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]


async def test_an_unreadable_original_env_annotation_is_refused_naming_the_fix(
    kube: Kube, unique_name: str
) -> None:
    ns = unique_name
    await setup_meme_app(kube, ns)
    await kube.objects(DEPLOYMENTS, ns).merge_patch(
        "meme-app", {"metadata": {"annotations": {ORIGINAL_ENV_ANNOTATION: '["edited"]'}}}
    )
    session = await create_session(kube, ns, [sqs("meme-queue")])
    with pytest.raises(SessionInvalid) as raised:
        await plan_session(kube, session, settings=settings(ns))
    assert str(raised.value) == (
        f"spec.queues[0]: Deployment {ns}/meme-app: annotation {ORIGINAL_ENV_ANNOTATION} is "
        "not a JSON object; it holds the original env values pymirror restores: put the env "
        "vars right by hand, then remove the annotation"
    )


# --- refused --------------------------------------------------------------------------------

INVALID_SESSIONS: list[tuple[str, list[Obj], dict[str, Any], dict[str, Any], str]] = [
    (
        "unknown queue id",
        [sqs("meme-queue"), sqs("orders")],
        {},
        {},
        "spec.queues[1].id: 'orders' is not a queue of MirrordWorkloadQueueRegistry "
        '{ns}/meme-app-q-registry (it has: ad-queue, meme-queue); use one of them or "*"',
    ),
    (
        "unknown topic id",
        [kafka("clicks")],
        {},
        {},
        "spec.queues[0].id: 'clicks' is not a topic of MirrordKafkaTopicsConsumer "
        '{ns}/meme-app-topics-consumer (it has: views-topic); use one of them or "*"',
    ),
    (
        "a queue twice after star",
        [sqs("*"), sqs("ad-queue", mode="mirror")],
        {},
        {},
        "spec.queues[1].id: SQS queue 'ad-queue' is already in the session as spec.queues[0] "
        '(id "*"); name each queue once: remove one of the two entries',
    ),
    (
        "target not found",
        [sqs("meme-queue")],
        {"name": "meme-ap"},
        {},
        "spec.target: Deployment {ns}/meme-ap not found (apps.pymirror.test/v1 deployments); "
        "create it or fix the workload name, kind or namespace",
    ),
    (
        "target apiVersion without a group",
        [sqs("meme-queue")],
        {"apiVersion": "v1"},
        {},
        "spec.target.apiVersion: Deployment: expected GROUP/VERSION, got 'v1'; use the "
        "workload's apiVersion, e.g. apps/v1",
    ),
    (
        "target container missing",
        [sqs("meme-queue")],
        {"container": "web"},
        {},
        "spec.target.container: Deployment {ns}/meme-app has no container 'web' (its "
        "containers: main, consumer); fix the container name in the registry or the target",
    ),
    (
        "no registry for the target's container",
        [sqs("meme-queue")],
        {"container": "consumer"},
        {},
        "spec.queues[0]: no MirrordWorkloadQueueRegistry in namespace {ns} has spec.consumer "
        "Deployment meme-app, container consumer (for other containers: meme-app-q-registry "
        "(container main)); create a registry for the workload, or fix spec.target (kind, "
        "name, container)",
    ),
    (
        "a target of another kind",
        [kafka("views-topic")],
        {"kind": "StatefulSet", "name": "meme-app"},
        {},
        "spec.target: StatefulSet {ns}/meme-app not found (apps.pymirror.test/v1 "
        "statefulsets); create it or fix the workload name, kind or namespace",
    ),
    (
        "SQS splitting off",
        [kafka("views-topic"), sqs("meme-queue")],
        {},
        {"sqs_splitting": False},
        "spec.queues[1].kind: SQS splitting is turned off in this operator "
        "(PYMIRROR_OPERATOR__SQS_SPLITTING=false); remove the queue from the session, or ask "
        "the cluster's admin to turn it on",
    ),
    (
        "Kafka splitting off",
        [kafka("views-topic")],
        {},
        {"kafka_splitting": False},
        "spec.queues[0].kind: Kafka splitting is turned off in this operator "
        "(PYMIRROR_OPERATOR__KAFKA_SPLITTING=false); remove the queue from the session, or "
        "ask the cluster's admin to turn it on",
    ),
    (
        "a bad regex",
        [sqs("meme-queue"), sqs("ad-queue", messageFilter={"author": "^alice$", "level": "("})],
        {},
        {},
        "spec.queues[1].messageFilter.level: '(' is not a valid regex (missing ) at position "
        "1); fix the pattern",
    ),
    (
        "a bad jq program",
        [kafka("views-topic", jqFilter=".views >")],
        {},
        {},
        "spec.queues[0].jqFilter: jq_filter '.views >' does not compile (jq: error: syntax "
        "error, unexpected end of file at <top-level>, line 1, column 8:); fix the program",
    ),
    (
        "a jq module import",
        [sqs("meme-queue", jqFilter='import "x" as x; .')],
        {},
        {},
        "spec.queues[0].jqFilter: jq_filter 'import \"x\" as x; .': jq modules "
        "(import/include/module) are not available to filters; remove it",
    ),
]


@pytest.mark.parametrize(
    ("queues", "target", "overrides", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in INVALID_SESSIONS],
)
async def test_an_invalid_session_is_refused_naming_the_field_and_the_fix(
    kube: Kube,
    unique_name: str,
    queues: list[Obj],
    target: dict[str, Any],
    overrides: dict[str, Any],
    message: str,
) -> None:
    ns = unique_name
    await setup_meme_app(kube, ns)
    session = await create_session(kube, ns, queues, **target)

    with pytest.raises(SessionInvalid) as raised:
        await plan_session(kube, session, settings=settings(ns, **overrides))

    assert str(raised.value) == message.format(ns=ns)
    assert str(raised.value).startswith(raised.value.field + ": ")
    assert (await kube.objects(QueueSplit.RESOURCE, ns).list()).items == []


async def test_registry_problems_are_refused_with_the_registrys_message(
    kube: Kube, unique_name: str
) -> None:
    ns = unique_name
    await setup_meme_app(kube, ns)
    registries = kube.objects(MirrordWorkloadQueueRegistry.RESOURCE, ns)
    await registries.merge_patch(
        "meme-app-q-registry",
        {
            "spec": {
                "queues": {
                    "missing": {"queueType": "SQS", "nameSource": {"envVar": "NOT_THERE"}},
                    "rabbit": {"queueType": "RMQ", "nameSource": {"envVar": "R"}},
                    "memes": {
                        "queueType": "SQS",
                        "nameSource": {"envVar": "INCOMING_MEME_QUEUE_NAME"},
                    },
                }
            }
        },
    )
    cases = [
        (
            [sqs("meme-queue"), sqs("memes")],
            f"spec.queues[1].id: SQS queue 'memes' is {MEME_URL!r}, which 'meme-queue' "
            "(spec.queues[0]) names too; a queue or topic is split once per session: keep one "
            "of the ids in the session, or fix the registry",
        ),
        (
            [sqs("meme-queue"), sqs("missing")],
            f"spec.queues[1]: MirrordWorkloadQueueRegistry {ns}/meme-app-q-registry queue "
            f"'missing': env var NOT_THERE of container main of Deployment {ns}/meme-app is "
            "not set; add it to the container, or set fallbackName in the registry's queue",
        ),
        (
            [sqs("rabbit")],
            f"spec.queues[0].id: queue 'rabbit' of MirrordWorkloadQueueRegistry "
            f"{ns}/meme-app-q-registry has queueType 'RMQ', which pymirror does not split "
            "(only SQS); remove it from the session",
        ),
    ]
    for queues, message in cases:
        session = await create_session(kube, ns, queues)
        with pytest.raises(SessionInvalid) as raised:
            await plan_session(kube, session, settings=settings(ns))
        assert str(raised.value) == message
        await kube.objects(SplitSession.RESOURCE, ns).delete(session.metadata.name or "")

    await registries.merge_patch(
        "meme-app-q-registry",
        {
            "spec": {
                "queues": {"meme-queue": None, "ad-queue": None, "missing": None, "memes": None}
            }
        },
    )
    session = await create_session(kube, ns, [sqs("*")])
    with pytest.raises(SessionInvalid) as raised:
        await plan_session(kube, session, settings=settings(ns))
    assert str(raised.value) == (
        f'spec.queues[0].id: "*" matches no SQS queue: MirrordWorkloadQueueRegistry '
        f"{ns}/meme-app-q-registry has none (its queues: rabbit); add an SQS queue to the "
        "registry or remove this entry"
    )
    await kube.objects(SplitSession.RESOURCE, ns).delete(session.metadata.name or "")

    second = copy.deepcopy(example("meme-app/queue-registry.yaml"))
    second["metadata"]["name"] = "meme-app-q-registry-2"
    await registries.create(second)
    session = await create_session(kube, ns, [sqs("meme-queue")])
    with pytest.raises(
        SessionInvalid,
        match=re.escape(
            f"spec.queues[0]: 2 MirrordWorkloadQueueRegistrys in namespace {ns} have "
            "spec.consumer Deployment meme-app, container main (meme-app-q-registry, "
            "meme-app-q-registry-2); keep one of them"
        ),
    ):
        await plan_session(kube, session, settings=settings(ns))


async def test_a_target_without_a_topics_consumer_is_refused(kube: Kube, unique_name: str) -> None:
    ns = unique_name
    await setup_meme_app(kube, ns)
    await kube.objects(MirrordKafkaTopicsConsumer.RESOURCE, ns).delete("meme-app-topics-consumer")
    session = await create_session(kube, ns, [sqs("meme-queue"), kafka("views-topic")])

    with pytest.raises(SessionInvalid) as raised:
        await plan_session(kube, session, settings=settings(ns))

    assert str(raised.value) == (
        f"spec.queues[1]: no MirrordKafkaTopicsConsumer in namespace {ns} has consumerKind "
        "Deployment and consumerName meme-app; create one for the workload, or fix "
        "spec.target (kind, name)"
    )


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        (
            {"base-config": {"parent": "other"}, "other": {"parent": "base-config"}},
            "spec.queues[0]: topic 'views-topic' of MirrordKafkaTopicsConsumer "
            "{ns}/meme-app-topics-consumer: clientConfig 'base-config': MirrordKafkaClientConfig "
            "parent cycle: base-config -> other -> base-config; remove one spec.parent",
        ),
        (
            {"base-config": {"loadFromSecret": "{ns}/kafka-auth"}},
            "spec.queues[0]: topic 'views-topic' of MirrordKafkaTopicsConsumer "
            "{ns}/meme-app-topics-consumer: clientConfig 'base-config': MirrordKafkaClientConfig "
            "base-config: spec.loadFromSecret {ns}/kafka-auth: Secret {ns}/kafka-auth not found; "
            "create it or fix the reference",
        ),
        (
            {"base-config": {"parent": "gone"}},
            "spec.queues[0]: topic 'views-topic' of MirrordKafkaTopicsConsumer "
            "{ns}/meme-app-topics-consumer: clientConfig 'base-config': MirrordKafkaClientConfig "
            "'gone' (parent of base-config) not found in the operator namespace; create it or "
            "fix the reference",
        ),
        (
            {"base-config": {"unset": True}},
            "spec.queues[0]: topic 'views-topic' of MirrordKafkaTopicsConsumer "
            "{ns}/meme-app-topics-consumer: clientConfig 'base-config' resolves to no "
            "bootstrap.servers; set it in MirrordKafkaClientConfig {ns}/base-config (or a parent)",
        ),
    ],
    ids=["parent-cycle", "missing-secret", "missing-parent", "no-bootstrap"],
)
async def test_a_client_config_that_does_not_resolve_is_refused_naming_it(
    kube: Kube, unique_name: str, configs: dict[str, dict[str, Any]], message: str
) -> None:
    """The topic's client config is resolved while planning (its parents, their Secrets),
    so no topic is created nor workload patched for a config that cannot work."""
    ns = unique_name
    await setup_meme_app(kube, ns)
    for name, change in configs.items():
        spec = {k: v.format(ns=ns) for k, v in change.items() if k != "unset"}
        properties = [{"name": "client.id", "value": "x"}] if "unset" in change else [BOOTSTRAP]
        if name == "base-config":
            body = {"spec": {"properties": properties, **spec}}
            await kube.objects(MirrordKafkaClientConfig.RESOURCE, ns).merge_patch(name, body)
        else:
            await create_client_config(kube, ns, name, *properties, **spec)
    session = await create_session(kube, ns, [kafka("views-topic")])

    with pytest.raises(SessionInvalid) as raised:
        await plan_session(kube, session, settings=settings(ns))

    assert str(raised.value) == message.format(ns=ns)
    assert (await kube.objects(QueueSplit.RESOURCE, ns).list()).items == []
