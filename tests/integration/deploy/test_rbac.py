"""The chart's RBAC: no wildcards, Secrets only in the release namespace, and exactly the
rules of registry/permissions.py (which test_operator_from_chart.py checks against what
the operator really sends)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from registry.permissions import OPERATOR, USER, WORKER, Rule, merged
from tests.integration.deploy.chart import NAMESPACE, Doc, Helm, of_kind, one

pytestmark = [pytest.mark.integration]

ROLE_KINDS = ("ClusterRole", "Role")
ALL_ON = {
    "operator": {"sqsSplitting": True, "kafkaSplitting": True},
    "metrics": {"service": True, "serviceMonitor": {"enabled": True}},
    "podDisruptionBudget": {"enabled": True},
    "rbac": {"secretNamespaces": ["kafka-auth"]},
}


@pytest.fixture
def helm(helm_bin: Path, tmp_path: Path) -> Helm:
    return Helm(helm_bin, tmp_path)


def rules_of(doc: Doc) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in doc.get("rules") or []:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def bound_to(docs: Sequence[Doc], role: Doc, account: str) -> bool:
    binding_kind = "ClusterRoleBinding" if role["kind"] == "ClusterRole" else "RoleBinding"
    for binding in of_kind(docs, binding_kind):
        ref = binding["roleRef"]
        if (ref["kind"], ref["name"]) != (role["kind"], role["metadata"]["name"]):
            continue
        if binding["metadata"].get("namespace") != role["metadata"].get("namespace"):
            continue
        subjects = [(s["kind"], s["name"], s["namespace"]) for s in binding["subjects"]]
        if ("ServiceAccount", account, NAMESPACE) in subjects:
            return True
    return False


@pytest.mark.parametrize("values", [{}, ALL_ON], ids=["defaults", "everything-on"])
def test_no_rule_uses_a_wildcard(helm: Helm, values: dict[str, Any]) -> None:
    docs = helm.render(values)
    roles = [d for d in docs if d.get("kind") in ROLE_KINDS]
    assert len(roles) >= 4  # operator (cluster + release), worker, user
    for role in roles:
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], (role["metadata"]["name"], rule)
            assert not rule.get("nonResourceURLs"), role["metadata"]["name"]
            assert not rule.get("resourceNames")


@pytest.mark.parametrize("values", [{}, ALL_ON], ids=["defaults", "everything-on"])
def test_secrets_are_granted_only_in_the_release_namespace_or_those_named(
    helm: Helm, values: dict[str, Any]
) -> None:
    docs = helm.render(values)
    allowed = {NAMESPACE, *values.get("rbac", {}).get("secretNamespaces", [])}
    granted = set()
    for role in (d for d in docs if d.get("kind") in ROLE_KINDS):
        if ("", "secrets") not in rules_of(role):
            continue
        assert role["kind"] == "Role", f"ClusterRole {role['metadata']['name']} grants Secrets"
        assert rules_of(role)[("", "secrets")] == {"get"}
        granted.add(role["metadata"]["namespace"])
    assert granted == allowed


def test_the_operators_rules_are_registry_permissions_operator(helm: Helm) -> None:
    docs = helm.render(ALL_ON)
    cluster = one(docs, "ClusterRole", "pymirror-operator")
    role = one(docs, "Role", "pymirror-operator")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert rules_of(cluster) == merged(OPERATOR, "cluster")
    assert rules_of(role) == merged(OPERATOR, "release")
    assert bound_to(docs, cluster, "pymirror-operator")
    assert bound_to(docs, role, "pymirror-operator")
    extra = one(docs, "Role", "pymirror-operator-secrets")
    assert extra["metadata"]["namespace"] == "kafka-auth"
    assert rules_of(extra) == {("", "secrets"): {"get"}}
    binding = one(docs, "RoleBinding", "pymirror-operator-secrets")
    accounts = {(s["name"], s["namespace"]) for s in binding["subjects"]}
    assert accounts == {("pymirror-operator", NAMESPACE), ("pymirror-worker", NAMESPACE)}


def test_the_workers_rules_are_registry_permissions_worker(helm: Helm) -> None:
    docs = helm.render()
    role = one(docs, "Role", "pymirror-worker")
    assert rules_of(role) == merged(WORKER, "release")
    assert merged(WORKER, "cluster") == {}
    assert bound_to(docs, role, "pymirror-worker")
    assert not [
        d
        for d in of_kind(docs, "ClusterRoleBinding")
        if any(s["name"] == "pymirror-worker" for s in d["subjects"])
    ]


def test_the_developers_cluster_role_is_registry_permissions_user(helm: Helm) -> None:
    role = one(helm.render(), "ClusterRole", "pymirror-user")
    assert rules_of(role) == merged(USER, "cluster")
    # developers never touch Secrets, workloads' env or the operator's QueueSplits
    verbs = rules_of(role)
    assert ("", "secrets") not in verbs
    assert verbs[("pymirror.dev", "queuesplits")] <= {"get", "list", "watch"}
    assert verbs[("apps", "deployments")] == {"get"}


def test_the_rules_do_not_change_with_the_feature_flags(helm: Helm) -> None:
    """The operator's code makes the same calls whichever broker is on (a session naming a
    switched-off broker fails after the lookup), so the rules are the same."""

    def roles(values: dict[str, Any]) -> list[tuple[str, str, dict[tuple[str, str], set[str]]]]:
        docs = helm.render(values)
        return sorted(
            (
                (d["kind"], d["metadata"]["name"], rules_of(d))
                for d in docs
                if d.get("kind") in ROLE_KINDS
            ),
            key=lambda r: (r[0], r[1]),
        )

    base = roles({})
    for sqs in (False, True):
        for kafka in (False, True):
            assert roles({"operator": {"sqsSplitting": sqs, "kafkaSplitting": kafka}}) == base


def test_every_rule_says_why() -> None:
    rules: list[Rule] = [*OPERATOR, *WORKER, *USER]
    for rule in rules:
        assert rule.why
        assert rule.verbs
        assert rule.resources
        assert "*" not in (*rule.verbs, *rule.resources, rule.group)
