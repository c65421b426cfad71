"""registry/permissions.py: every adapter method is mapped to its verbs, requests are
classified as RBAC sees them, and the operator's code goes through the adapter only."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from registry.objects import Objects
from registry.permissions import (
    METHOD_VERBS,
    OPERATOR,
    PYMIRROR,
    QUEUES,
    WORKER,
    Access,
    access_of,
    allowed,
    merged,
)

pytestmark = [pytest.mark.unit]

REPO = Path(__file__).resolve().parents[3]


def adapter_methods() -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(Objects, inspect.isfunction)
        if not name.startswith("_")
    }


def test_every_public_adapter_method_is_mapped_to_its_verbs() -> None:
    unmapped = adapter_methods() - set(METHOD_VERBS)
    assert not unmapped, f"add {sorted(unmapped)} to registry.permissions.METHOD_VERBS"
    assert not set(METHOD_VERBS) - adapter_methods(), "METHOD_VERBS names a method gone"


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        (
            "GET",
            "/apis/pymirror.dev/v1alpha1/namespaces/shop/splitsessions/a",
            [],
            Access("pymirror.dev", "splitsessions", "get", "shop"),
        ),
        (
            "GET",
            "/apis/pymirror.dev/v1alpha1/splitsessions",
            [("limit", "500")],
            Access("pymirror.dev", "splitsessions", "list", None),
        ),
        (
            "GET",
            "/apis/pymirror.dev/v1alpha1/splitsessions",
            [("watch", "1")],
            Access("pymirror.dev", "splitsessions", "watch", None),
        ),
        (
            "PATCH",
            "/apis/pymirror.dev/v1alpha1/namespaces/ops/queuesplits/s/status",
            [],
            Access("pymirror.dev", "queuesplits/status", "patch", "ops"),
        ),
        (
            "PUT",
            "/apis/apps/v1/namespaces/ops/deployments/w",
            [],
            Access("apps", "deployments", "update", "ops"),
        ),
        (
            "POST",
            "/apis/apps/v1/namespaces/ops/deployments",
            [],
            Access("apps", "deployments", "create", "ops"),
        ),
        (
            "DELETE",
            "/apis/pymirror.dev/v1alpha1/namespaces/shop/splitsessions",
            [],
            Access("pymirror.dev", "splitsessions", "deletecollection", "shop"),
        ),
        ("DELETE", "/api/v1/namespaces/ops/secrets/s", [], Access("", "secrets", "delete", "ops")),
        (
            "GET",
            "/api/v1/namespaces/shop/configmaps/c",
            [],
            Access("", "configmaps", "get", "shop"),
        ),
    ],
)
def test_a_request_is_classified_as_rbac_sees_it(
    method: str, path: str, query: list[tuple[str, str]], expected: Access
) -> None:
    assert access_of(method, path, query) == expected


@pytest.mark.parametrize("path", ["/version", "/apis", "/apis/apps/v1/namespaces/x/a/b/c/d"])
def test_a_path_that_is_no_resource_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="not a resource path"):
        access_of("GET", path)


def test_release_rules_grant_only_in_the_release_namespace() -> None:
    split = Access("pymirror.dev", "queuesplits", "create", "ops")
    assert allowed(OPERATOR, split, "ops")
    assert not allowed(OPERATOR, split, "other")
    assert not allowed(OPERATOR, Access("", "secrets", "get", "shop"), "ops")
    assert allowed(OPERATOR, Access("", "configmaps", "get", "shop"), "ops")
    assert not allowed(OPERATOR, Access("", "configmaps", "list", "shop"), "ops")


def test_the_operator_code_calls_the_api_only_through_the_adapter() -> None:
    """No module of pymirror/operator/ sends a request itself (``transport.request`` /
    ``.stream``): every call goes through an ``Objects`` method, which METHOD_VERBS maps."""
    offenders = []
    for path in sorted((REPO / "pymirror" / "operator").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("request", "stream", "call_api")
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "transport"
            ):
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, offenders


def _objects_calls(path: Path) -> list[ast.Call]:
    """Calls of ``<x>.objects.<method>(...)`` in a module."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr == "objects"
        ):
            calls.append(node)
    return calls


def test_the_split_workers_calls_are_granted_by_the_worker_rules() -> None:
    """The worker reaches the API only through its QueueSplit's ``Objects``
    (pymirror/worker/split_source.py); each method it calls needs only verbs WORKER grants
    on queuesplits, and its patches go to the status subresource."""
    granted = merged(WORKER, "release")
    path = REPO / "pymirror" / "worker" / "split_source.py"
    calls = _objects_calls(path)
    assert calls, "split_source.py no longer calls self.objects: update this test"
    for call in calls:
        assert isinstance(call.func, ast.Attribute)
        method = call.func.attr
        resource = "queuesplits"
        if method == "patch_status" or (
            method == "patch"
            and any(
                k.arg == "subresource"
                and isinstance(k.value, ast.Constant)
                and k.value.value == "status"
                for k in call.keywords
            )
        ):
            resource = "queuesplits/status"
        verbs = set(METHOD_VERBS[method])
        have = granted.get((PYMIRROR, resource), set())
        assert verbs <= have, f"split_source.py:{call.lineno} {method} needs {verbs} on {resource}"
    others = [
        p.name
        for p in (REPO / "pymirror" / "worker").glob("*.py")
        if p.name != "split_source.py" and ".objects(" in p.read_text()
    ]
    assert not others, f"more worker modules call the API: {others}; check them against WORKER"


def test_a_worker_that_resolves_a_kafka_client_config_may_read_it_and_its_secret() -> None:
    """``registry.kafka_client_configs.load_client_config`` gets the config, its parents
    and its ``loadFromSecret`` Secret; a worker module calling it needs those rules."""
    resolving = [
        p.name
        for p in (REPO / "pymirror" / "worker").glob("*.py")
        if "load_client_config(" in p.read_text()
    ]
    granted = merged(WORKER, "release")
    if resolving:
        assert "get" in granted.get((QUEUES, "mirrordkafkaclientconfigs"), set()), resolving
        assert "get" in granted.get(("", "secrets"), set()), resolving
    else:
        assert (QUEUES, "mirrordkafkaclientconfigs") not in granted, "WORKER grants unused rules"
