"""What the local runtime reads from a workload object (pymirror.sandbox.workloads, pure)."""

from __future__ import annotations

from typing import Any

import pytest

from pymirror.sandbox.workloads import (
    DEFAULT_GRACE_SECONDS,
    STAND_IN_KINDS,
    desired_state,
    expand,
    workload_ref,
)
from registry.errors import WorkloadError
from registry.workloads import WorkloadKinds

pytestmark = pytest.mark.unit


def workload(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "w", "namespace": "ns", "generation": 4},
        "spec": {"template": {"spec": {"containers": [container]}}, **spec},
    }


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("$(A)-$(B)", {"A": "1", "B": "2"}, "1-2"),
        ("$(MISSING)", {}, "$(MISSING)"),
        ("$$(A)", {"A": "1"}, "$(A)"),
        ("$A ${A}", {"A": "1"}, "$A ${A}"),
    ],
)
def test_var_references_expand_like_kubernetes(
    text: str, env: dict[str, str], expected: str
) -> None:
    assert expand(text, env) == expected


def test_command_args_and_value_env_become_the_process() -> None:
    container = {
        "name": "main",
        "command": ["prog", "--queue=$(QUEUE)"],
        "args": ["$(GREETING)"],
        "env": [
            {"name": "QUEUE", "value": "q1"},
            {"name": "GREETING", "value": "hi $(QUEUE)"},
        ],
    }
    d = desired_state("Deployment", workload(container))
    [c] = d.containers
    assert c.argv == ("prog", "--queue=q1", "hi q1")
    assert c.env == (("QUEUE", "q1"), ("GREETING", "hi q1"))
    assert (d.replicas, d.generation, d.grace_seconds) == (1, 4, DEFAULT_GRACE_SECONDS)
    assert d.surge
    assert d.unsupported == ()


def test_value_from_env_from_and_a_missing_command_are_reported_unsupported() -> None:
    container = {
        "name": "main",
        "env": [{"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        "envFrom": [{"configMapRef": {"name": "cm"}}],
    }
    d = desired_state("Deployment", workload(container))
    [c] = d.containers
    assert c.argv == ()
    assert c.env == ()
    assert len(d.unsupported) == 3
    assert "env SECRET: valueFrom is not supported" in d.unsupported[0]
    assert "envFrom is not supported" in d.unsupported[1]
    assert "no command" in d.unsupported[2]


def test_a_template_change_changes_the_hash_and_replicas_do_not() -> None:
    container = {"name": "main", "command": ["x"], "env": [{"name": "A", "value": "1"}]}
    one = desired_state("Deployment", workload(container, replicas=2))
    scaled = desired_state("Deployment", workload(container, replicas=5))
    container["env"][0]["value"] = "2"
    changed = desired_state("Deployment", workload(container, replicas=2))
    assert one.template_hash == scaled.template_hash != changed.template_hash
    assert (one.replicas, scaled.replicas) == (2, 5)


@pytest.mark.parametrize(
    ("kind", "spec", "surge"),
    [
        ("Deployment", {}, True),
        ("Deployment", {"strategy": {"type": "Recreate"}}, False),
        ("StatefulSet", {}, False),
        ("Rollout", {}, True),
    ],
)
def test_which_kinds_start_the_new_process_first(
    kind: Any, spec: dict[str, Any], surge: bool
) -> None:
    assert desired_state(kind, workload({"name": "m", "command": ["x"]}, **spec)).surge is surge


def test_kinds_default_to_the_real_groups_and_can_be_moved() -> None:
    assert WorkloadKinds().resource("Deployment").api_version == "apps/v1"
    moved = WorkloadKinds().with_api_versions(Deployment="apps.example/v2", Rollout=None)
    assert moved.resource("Deployment").api_version == "apps.example/v2"
    assert moved.resource("Deployment").plural == "deployments"
    assert moved.resource("Rollout").api_version == "argoproj.io/v1alpha1"
    assert STAND_IN_KINDS.resource("StatefulSet").group == "apps.pymirror.test"
    with pytest.raises(WorkloadError, match="GROUP/VERSION"):
        WorkloadKinds().with_api_versions(Deployment="v1")
    with pytest.raises(WorkloadError, match="unknown workload kind"):
        WorkloadKinds().with_api_versions(Job="batch/v1")


def rollout_with_ref(name: str = "w-template", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "w", "namespace": "ns", "generation": 2},
        "spec": {"replicas": 2, "workloadRef": {"kind": "Deployment", "name": name}, **spec},
    }


def test_a_rollout_with_a_workload_ref_runs_the_referenced_deployments_template() -> None:
    container = {"name": "main", "command": ["prog"], "env": [{"name": "Q", "value": "a"}]}
    deployment = workload(container, replicas=0)
    deployment["metadata"]["generation"] = 7
    rollout = rollout_with_ref()

    assert workload_ref("Rollout", rollout) == "w-template"
    d = desired_state("Rollout", rollout, deployment)
    assert [c.env for c in d.containers] == [(("Q", "a"),)]
    assert (d.replicas, d.generation, d.workload_generation) == (2, 2, 7)
    assert d.template_hash == desired_state("Deployment", deployment).template_hash

    changed = workload({**container, "env": [{"name": "Q", "value": "b"}]}, replicas=0)
    assert desired_state("Rollout", rollout, changed).template_hash != d.template_hash


def test_a_rollout_whose_deployment_was_not_seen_runs_nothing_yet() -> None:
    d = desired_state("Rollout", rollout_with_ref())
    assert (d.replicas, d.containers, d.workload_generation) == (0, (), None)


@pytest.mark.parametrize(
    ("kind", "obj"),
    [
        ("Rollout", workload({"name": "main"})),  # its own template
        ("Deployment", rollout_with_ref()),  # only a Rollout follows a workloadRef
        ("Rollout", {"spec": {"workloadRef": {"kind": "StatefulSet", "name": "s"}}}),
        ("Rollout", {"spec": {"workloadRef": {"kind": "Deployment"}}}),  # no name
    ],
)
def test_no_workload_ref_is_followed_unless_a_rollout_names_a_deployment(
    kind: Any, obj: dict[str, Any]
) -> None:
    assert workload_ref(kind, obj) is None
