"""registry.env_patch's pure core: the annotation format, computing a patch or a restore,
the JSON patch written, and the rollout status of each workload kind."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from registry.env_patch import (
    ORIGINAL_ENV_ANNOTATION,
    EnvChange,
    encode_originals,
    env_owners,
    json_ops,
    patched,
    read_originals,
    restored,
    status_of,
)
from registry.errors import EnvAnnotationError, WorkloadError

pytestmark = pytest.mark.unit

LABEL = "Deployment shop/app"


def workload(env: list[dict[str, Any]] | None, annotations: dict[str, str] | None = None) -> Any:
    main: dict[str, Any] = {"name": "main", "image": "a:1"}
    if env is not None:
        main["env"] = env
    meta: dict[str, Any] = {"name": "app", "namespace": "shop", "resourceVersion": "7"}
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "kind": "Deployment",
        "metadata": meta,
        "spec": {"template": {"spec": {"containers": [{"name": "side"}, main]}}},
    }


def apply_ops(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 test/add/remove, as the API server applies them, on a copy of ``doc``."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = (
            p.replace("~1", "/").replace("~0", "~") for p in op["path"][1:].split("/")
        )
        target = doc
        for p in parents:
            target = target[int(p)] if isinstance(target, list) else target[p]
        key: Any = int(last) if isinstance(target, list) and last != "-" else last
        if op["op"] == "test":
            assert target[key] == op["value"]
        elif op["op"] == "add" and isinstance(target, list):
            target.insert(len(target) if key == "-" else key, op["value"])
        elif op["op"] == "add":
            target[key] = copy.deepcopy(op["value"])
        else:
            assert op["op"] == "remove"
            del target[key]
    return doc


def apply(obj: Any, change: EnvChange | None) -> Any:
    """``obj`` after the JSON patch of ``change``, with a new resourceVersion."""
    assert change is not None
    result = apply_ops(obj, json_ops(obj, change))
    result["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
    return result


def test_the_annotation_is_compact_sorted_json_keyed_by_owner_container_and_var() -> None:
    obj = workload([{"name": "Q", "value": "orders"}, {"name": "B", "value": "1"}])
    out = apply(obj, patched(obj, "main", {"Q": "f", "NEW": "n"}, "split-a", LABEL))
    assert out["metadata"]["annotations"] == {
        ORIGINAL_ENV_ANNOTATION: '{"split-a":{"main":{"NEW":null,"Q":{"value":"orders"}}}}'
    }
    assert env_owners(out) == {"split-a"}
    assert (
        encode_originals(read_originals(out, LABEL))
        == (out["metadata"]["annotations"][ORIGINAL_ENV_ANNOTATION])
    )


def test_the_annotation_key_is_escaped_in_the_patch_path_and_other_annotations_stay() -> None:
    obj = workload([], {"team": "shop"})
    ops = json_ops(obj, EnvChange({}, {"o": {"main": {"Q": None}}}))
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    assert ops[1]["path"] == "/metadata/annotations/pymirror.dev~1original-env"
    out = apply(obj, EnvChange({}, {"o": {"main": {"Q": None}}}))
    assert out["metadata"]["annotations"]["team"] == "shop"
    cleared = apply(out, EnvChange({}, {}))
    assert cleared["metadata"]["annotations"] == {"team": "shop"}


def test_a_duplicated_var_patches_and_restores_the_item_that_wins() -> None:
    env = [{"name": "Q", "value": "shadowed"}, {"name": "Q", "value": "wins"}]
    obj = workload(copy.deepcopy(env))
    out = apply(obj, patched(obj, "main", {"Q": "f"}, "o", LABEL))
    assert out["spec"]["template"]["spec"]["containers"][1]["env"] == [
        {"name": "Q", "value": "shadowed"},
        {"name": "Q", "value": "f"},
    ]
    back = apply(out, restored(out, "o", LABEL))
    assert back["spec"]["template"]["spec"]["containers"][1]["env"] == env


def test_nothing_to_change_is_none() -> None:
    obj = workload([{"name": "Q", "value": "orders"}])
    assert patched(obj, "main", {}, "o", LABEL) is None
    assert restored(obj, "o", LABEL) is None
    out = apply(obj, patched(obj, "main", {"Q": "f"}, "o", LABEL))
    assert patched(out, "main", {"Q": "f"}, "o", LABEL) is None


def test_an_env_list_emptied_by_a_restore_is_removed_and_a_removed_container_skipped() -> None:
    obj = workload([])  # an explicit env: [] comes back unset, as Kubernetes would show it
    out = apply(obj, patched(obj, "main", {"Q": "f"}, "o", LABEL))
    back = apply(out, restored(out, "o", LABEL))
    assert "env" not in back["spec"]["template"]["spec"]["containers"][1]

    gone = copy.deepcopy(out)
    del gone["spec"]["template"]["spec"]["containers"][1]
    change = restored(gone, "o", LABEL)
    assert change == EnvChange({}, {})
    assert "annotations" not in apply(gone, change)["metadata"]


def test_a_missing_container_is_an_error_listing_the_containers() -> None:
    with pytest.raises(WorkloadError, match=re.escape("has no container 'web' (its containers")):
        patched(workload([]), "web", {"Q": "f"}, "o", LABEL)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "is not JSON"),
        ("[]", "is not a JSON object"),
        ('{"o": 1}', "'o': not an object of containers"),
        ('{"o": {"main": []}}', "'o'.'main': not an object of vars"),
        ('{"o": {"main": {"Q": "x"}}}', "'o'.'main'.'Q': not an env item or null"),
    ],
)
def test_an_annotation_in_another_format_is_an_error_naming_the_problem(
    text: str, problem: str
) -> None:
    obj = workload([], {ORIGINAL_ENV_ANNOTATION: text})
    with pytest.raises(EnvAnnotationError, match=re.escape(f"{LABEL}: annotation")) as raised:
        read_originals(obj, LABEL)
    assert problem in str(raised.value)
    with pytest.raises(EnvAnnotationError):
        env_owners(obj)


# --- rollout status ------------------------------------------------------------------------


def obj_with(
    spec: dict[str, Any], status: dict[str, Any] | None, generation: int = 2
) -> dict[str, Any]:
    return {"metadata": {"name": "app", "generation": generation}, "spec": spec, "status": status}


READY = {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}


@pytest.mark.parametrize(
    ("kind", "spec", "status", "done", "message"),
    [
        ("Deployment", {}, None, False, "has not observed generation 2 yet (observed: none)"),
        ("Deployment", {}, {"observedGeneration": 1, **READY}, False, "(observed: 1)"),
        ("Deployment", {}, {"observedGeneration": 2, **READY}, True, "1 of 1 updated replicas"),
        ("Deployment", {"replicas": 0}, {"observedGeneration": 2}, True, "0 of 0 updated"),
        (
            "Deployment",
            {"paused": True},
            {"observedGeneration": 2, **READY},
            False,
            "paused (spec.paused is true)",
        ),
        (
            "StatefulSet",
            {},
            {"observedGeneration": 2, **READY, "availableReplicas": 0},
            True,
            "1 of 1 updated replicas ready",
        ),
        (
            "StatefulSet",
            {},
            {"observedGeneration": 2, **READY, "currentRevision": "a", "updateRevision": "b"},
            False,
            "the pods have not all moved to revision b yet (at: a)",
        ),
        (
            "Deployment",
            {},
            {"observedGeneration": 2, **READY, "terminatingReplicas": 2},
            False,
            "2 replicas still terminating",
        ),
        ("Deployment", {}, {"observedGeneration": 2, **READY, "terminatingReplicas": 0}, True, ""),
        ("Rollout", {}, {"observedGeneration": "2", **READY}, True, "1 of 1 updated replicas"),
        ("Rollout", {}, {"observedGeneration": "a1b2c3", **READY}, False, "(observed: a1b2c3)"),
        (
            "Rollout",
            {"replicas": 3},
            {"observedGeneration": "2", "replicas": 3, "updatedReplicas": 1, "phase": "Degraded"},
            False,
            "1 of 3 replicas updated; the Rollout is Degraded",
        ),
    ],
)
def test_rollout_status_per_kind(
    kind: str, spec: dict[str, Any], status: dict[str, Any] | None, done: bool, message: str
) -> None:
    result = status_of(kind, obj_with(spec, status))
    assert (result.done, message in result.message) == (done, True), result.message


def test_a_workload_ref_rollout_waits_for_the_deployments_generation() -> None:
    rollout = obj_with({}, {"observedGeneration": "2", **READY, "workloadObservedGeneration": "4"})
    assert status_of("Rollout", rollout, obj_with({}, None, generation=4)).done
    late = status_of("Rollout", rollout, obj_with({}, None, generation=5))
    assert not late.done
    assert "generation 5 of Deployment app (spec.workloadRef) yet (observed: 4)" in late.message
