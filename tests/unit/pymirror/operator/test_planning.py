"""pymirror.operator.planning: QueueSplit names (split_name), SessionInvalid's shape, and
the pod template as it was before pymirror's env patches (unpatched_template).

Planning itself reads the API server: tests/integration/operator/test_planning.py.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from typing import Any

import pytest

from pymirror.errors import PymirrorError
from pymirror.operator.planning import SessionInvalid, split_name, unpatched_template
from registry.env_patch import ORIGINAL_ENV_ANNOTATION, patched, restored
from registry.errors import EnvAnnotationError
from registry.workloads import Workload, WorkloadRef

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


# --- unpatched_template -----------------------------------------------------------------------


def deployment(containers: list[dict[str, Any]], originals: Any = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "meme-app", "namespace": "shop"}
    if originals is not None:
        text = originals if isinstance(originals, str) else json.dumps(originals)
        meta["annotations"] = {ORIGINAL_ENV_ANNOTATION: text}
    return {
        "kind": "Deployment",
        "metadata": meta,
        "spec": {"template": {"metadata": {}, "spec": {"containers": containers}}},
    }


def workload_of(obj: dict[str, Any]) -> Workload:
    return Workload(MEME_APP, obj, obj["spec"]["template"], MEME_APP, obj)


def with_change(obj: dict[str, Any], change: Any) -> dict[str, Any]:
    """``obj`` with an ``env_patch`` change applied (what its JSON patch writes)."""
    out = copy.deepcopy(obj)
    for index, env in change.envs.items():
        container = out["spec"]["template"]["spec"]["containers"][index]
        if env is None:
            container.pop("env", None)
        else:
            container["env"] = env
    if change.originals:
        out["metadata"].setdefault("annotations", {})[ORIGINAL_ENV_ANNOTATION] = json.dumps(
            change.originals
        )
    else:
        out["metadata"].get("annotations", {}).pop(ORIGINAL_ENV_ANNOTATION, None)
    return out


ORIGINAL_CONTAINERS: list[dict[str, Any]] = [
    {
        "name": "main",
        "env": [
            {"name": "BEFORE", "value": "1"},
            {"name": "MEMES", "value": "Memes"},
            {"name": "ADS", "valueFrom": {"configMapKeyRef": {"name": "queues", "key": "ads"}}},
            {"name": "AFTER", "value": "2"},
        ],
    },
    {"name": "sidecar", "env": [{"name": "TOPIC", "value": "views"}]},
    {"name": "bare"},
]


def test_an_unpatched_workload_is_its_template_unchanged() -> None:
    obj = deployment(copy.deepcopy(ORIGINAL_CONTAINERS))
    assert unpatched_template(workload_of(obj)) == obj["spec"]["template"]


def test_the_env_of_several_owners_patches_is_put_back_exactly_as_restore_would() -> None:
    obj = deployment(copy.deepcopy(ORIGINAL_CONTAINERS))
    label = "Deployment shop/meme-app"
    steps = [
        ("main", {"MEMES": "fallback-1", "ADDED": "x"}, "split-a"),
        ("main", {"ADS": "fallback-2", "MEMES": "fallback-3"}, "split-b"),
        ("sidecar", {"TOPIC": "fallback-4"}, "split-c"),
    ]
    for container, values, owner in steps:
        obj = with_change(obj, patched(obj, container, values, owner, label))
    env = obj["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env] == ["BEFORE", "MEMES", "ADS", "AFTER", "ADDED"]
    assert env[2] == {"name": "ADS", "value": "fallback-2"}

    template = unpatched_template(workload_of(obj))

    assert template == {"metadata": {}, "spec": {"containers": ORIGINAL_CONTAINERS}}
    restored_obj = obj
    for owner in ("split-b", "split-a", "split-c"):
        change = restored(restored_obj, owner, label)
        assert change is not None
        restored_obj = with_change(restored_obj, change)
    assert restored_obj["spec"]["template"] == template  # what the last restore leaves
    assert obj["spec"]["template"]["spec"]["containers"][0]["env"] == env  # obj untouched


def test_a_var_the_patch_added_goes_and_a_container_missing_now_is_skipped() -> None:
    originals = {"split-a": {"main": {"ADDED": None}, "gone": {"X": {"value": "1"}}}}
    obj = deployment([{"name": "main", "env": [{"name": "ADDED", "value": "x"}]}], originals)

    template = unpatched_template(workload_of(obj))

    assert template["spec"]["containers"] == [{"name": "main", "env": []}]


def test_an_annotation_in_another_format_is_an_env_annotation_error() -> None:
    obj = deployment(copy.deepcopy(ORIGINAL_CONTAINERS), "not json")
    with pytest.raises(EnvAnnotationError, match="remove the annotation"):
        unpatched_template(workload_of(obj))
