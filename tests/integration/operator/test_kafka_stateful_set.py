"""A Kafka split whose target is a StatefulSet (mirrord's e2e splits Kafka on one).

The app is the idle StatefulSet ``app`` reading the topic named in its env with its group
(``support.kafka_app(kind="StatefulSet")``), run by the local runtime (a StatefulSet stops
its old pod before the new one starts). One session, ``alice``: Ready once the
StatefulSet rolled out with its topic env var on the fallback (nothing else changed);
alice's records reach her topic, the others the fallback, each exactly once; deleting the
session hands the topic back: the template exactly as before, the annotation gone, no
temporary topic left. Runs on Tansu (the broker that expires dead group members; the
operator's path is the same on noida, which the Deployment tests cover).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pymirror.operator.kafka_splits import is_temporary_topic
from pymirror.sandbox.runtime import LocalRuntime
from registry.env_patch import ORIGINAL_ENV_ANNOTATION
from tests.integration.kafka.support import list_topics, make_records, produce, read_all
from tests.integration.operator.support import (
    KAFKA_TOPIC_ID,
    KAFKA_TOPIC_VAR,
    STATEFUL_SETS,
    Cluster,
    bounded,
    gone,
    kafka_app,
    phase_is,
    session_body,
    wait_empty,
    watch_session,
)
from tests.servers.kafka import KafkaBroker

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),
    pytest.mark.parametrize("kafka_broker", ["tansu"], indirect=True),
]

PARTITIONS = 2


async def test_a_stateful_set_reads_the_fallback_topic_and_is_restored_exactly(
    cluster: Cluster, kafka_broker: KafkaBroker, local_runtime: LocalRuntime, tmp_path: Path
) -> None:
    c = cluster
    original = f"{c.namespace}.views"
    before = await kafka_app(
        c.kube,
        kafka_broker,
        (c.namespace, c.operator_namespace),
        original=original,
        group="views-group",
        partitions=PARTITIONS,
        kind="StatefulSet",
    )
    sets = c.kube.objects(STATEFUL_SETS, c.namespace)
    base = c.operator_settings()
    worker_env = {**base.operator.worker_env, "PYMIRROR_KAFKA__DRAIN_TIMEOUT": "0"}
    operator = base.operator.model_copy(
        update={"worker_state_dir": str(tmp_path), "worker_env": worker_env}
    )
    async with c.operating(base.model_copy(update={"operator": operator})):
        body = session_body(
            "alice",
            KAFKA_TOPIC_ID,
            target="app",
            kind="Kafka",
            workload_kind="StatefulSet",
            message_filter={"user": "^alice$"},
        )
        await c.sessions.create(body)
        obj = await watch_session(c.sessions, "alice", phase_is("Ready", "Failed"))
        assert obj is not None
        assert obj["status"]["phase"] == "Ready", obj["status"]
        (queue,) = obj["status"]["queues"]
        mine = str(queue["temporary"])

        patched = await sets.get("app")
        [fallback] = [
            e["value"]
            for e in patched["spec"]["template"]["spec"]["containers"][0]["env"]
            if e["name"] == KAFKA_TOPIC_VAR
        ]
        assert fallback != original
        assert fallback.startswith("mirrord-tmp-")
        expected = copy.deepcopy(before["spec"]["template"])
        for e in expected["spec"]["containers"][0]["env"]:
            if e["name"] == KAFKA_TOPIC_VAR:
                e["value"] = fallback
        assert patched["spec"]["template"] == expected  # only the topic's env var changed
        assert ORIGINAL_ENV_ANNOTATION in patched["metadata"]["annotations"]

        records = make_records(8, PARTITIONS, ["alice", "bob"])
        await produce(kafka_broker, original, records)
        alices = sorted(r.id for r in records if dict(r.headers)["user"] == b"alice")
        others = sorted(r.id for r in records if r.id not in alices)
        got_mine = await read_all(kafka_broker, mine, PARTITIONS, expect=len(alices))
        got_fallback = await read_all(kafka_broker, fallback, PARTITIONS, expect=len(others))
        assert sorted(dict(g.headers)["id"].decode() for g in got_mine) == alices
        assert sorted(dict(g.headers)["id"].decode() for g in got_fallback) == others

        await c.sessions.delete("alice")
        assert await watch_session(c.sessions, "alice", gone) is None
        await bounded(wait_empty(c.splits))
    after = await sets.get("app")
    assert after["spec"]["template"] == before["spec"]["template"]
    assert ORIGINAL_ENV_ANNOTATION not in (after["metadata"].get("annotations") or {})
    name_format = base.kafka.name_format
    left = [
        t
        for t in await list_topics(kafka_broker)
        if t.endswith(original) and is_temporary_topic(t, name_format)
    ]
    assert left == []
