"""pymirror.operator.planning: QueueSplit names (split_name) and SessionInvalid's shape.

Planning itself reads the API server: tests/integration/operator/test_planning.py.
"""

from __future__ import annotations

import itertools
import re

import pytest

from pymirror.errors import PymirrorError
from pymirror.operator.planning import SessionInvalid, split_name
from registry.workloads import WorkloadRef

pytestmark = pytest.mark.unit

LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MEME_APP = WorkloadRef("Deployment", "shop", "meme-app")


def test_a_split_name_is_the_target_and_queue_id_with_a_hash_suffix() -> None:
    name = split_name(MEME_APP, "meme-queue")

    assert re.fullmatch(r"meme-app-meme-queue-[0-9a-f]{10}", name)
    assert split_name(MEME_APP, "meme-queue") == name  # deterministic
    assert split_name(WorkloadRef("Deployment", "shop", "meme-app"), "meme-queue") == name


@pytest.mark.parametrize(
    ("target", "queue_id"),
    [
        (WorkloadRef("Deployment", "shop", "a" * 253), "q"),
        (WorkloadRef("StatefulSet", "shop", "app.v2.example"), "Orders_Queue.fifo"),
        (WorkloadRef("Rollout", "shop", "app"), "*weird*//ID with spaces and ünïcode"),
        (WorkloadRef("Deployment", "shop", "app"), "---"),
        (WorkloadRef("Deployment", "shop", "app"), "x" * 500),
        (WorkloadRef("Deployment", "shop", "app"), "orders::https://sqs.local/0/Orders"),
    ],
)
def test_every_split_name_is_a_dns_1123_label(target: WorkloadRef, queue_id: str) -> None:
    name = split_name(target, queue_id)

    assert len(name) <= 63
    assert LABEL.fullmatch(name), name
    assert name == name.lower()
    assert re.search(r"-?[0-9a-f]{10}$", name)


def test_a_long_name_is_truncated_and_keeps_its_hash() -> None:
    long = WorkloadRef("Deployment", "shop", "checkout-service-" + "x" * 80)

    name = split_name(long, "orders")

    assert len(name) == 63
    assert name.startswith("checkout-service-xxxx")
    assert not name[:52].endswith("-")
    # Two targets that differ only past the truncation point still get different names.
    other = split_name(WorkloadRef("Deployment", "shop", long.name + "y"), "orders")
    assert other != name
    assert other[:52] == name[:52]


def test_pairs_whose_readable_parts_agree_never_collide() -> None:
    pairs = [
        (WorkloadRef("Deployment", "shop", "a-b"), "c"),
        (WorkloadRef("Deployment", "shop", "a"), "b-c"),
        (WorkloadRef("Deployment", "staging", "a"), "b-c"),  # another namespace
        (WorkloadRef("StatefulSet", "shop", "a"), "b-c"),  # another kind
        (WorkloadRef("Deployment", "shop", "a"), "B-C"),  # ids are case-sensitive
        (WorkloadRef("Deployment", "shop", "a"), "b_c"),
        (WorkloadRef("Deployment", "shop", "a"), "b.c"),
    ]
    names = [split_name(t, q) for t, q in pairs]

    assert len({n.rsplit("-", 1)[0] for n in names}) == 1  # all read "a-b-c"
    assert len(set(names)) == len(names)


def test_an_sqs_queue_and_a_kafka_topic_with_the_same_id_get_two_splits() -> None:
    sqs = split_name(MEME_APP, "views")
    kafka = split_name(MEME_APP, "views", "Kafka")

    assert sqs != kafka
    assert split_name(MEME_APP, "views", "SQS") == sqs


def test_many_queue_ids_of_one_target_get_distinct_names() -> None:
    ids = ["".join(p) for p in itertools.product("ab-_.A", repeat=4)]

    names = {split_name(MEME_APP, i) for i in ids}

    assert len(names) == len(ids)


def test_session_invalid_names_the_field_first() -> None:
    error = SessionInvalid("spec.queues[1].id", "'orders' is not a queue; use one of them")

    assert str(error) == "spec.queues[1].id: 'orders' is not a queue; use one of them"
    assert (error.field, error.problem) == (
        "spec.queues[1].id",
        "'orders' is not a queue; use one of them",
    )
    assert isinstance(error, PymirrorError)
    assert not error.retriable
