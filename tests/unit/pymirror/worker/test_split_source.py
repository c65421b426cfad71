"""A QueueSplit's spec as routes (pymirror/worker/split_source.py, the pure part)."""

from __future__ import annotations

from typing import Any

import pytest

from pymirror.errors import UsageError
from pymirror.worker.split_source import QueueSplitError, Rejection, parse_split_ref, split_routes
from splitter.filters import MessageView

pytestmark = pytest.mark.unit


def route(session: str, sequence: int, **extra: Any) -> dict[str, Any]:
    user = session.rpartition("/")[2]
    return {
        "session": session,
        "sequence": sequence,
        "destination": f"tmp-{user}",
        "messageFilter": {"user": f"^{user}$"},
        **extra,
    }


def split(*routes: dict[str, Any], generation: int = 3, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "pymirror.dev/v1alpha1",
        "kind": "QueueSplit",
        "metadata": {"name": "orders", "namespace": "ops", "generation": generation},
        "spec": {
            "kind": "SQS",
            "original": "orders",
            "target": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "shop",
                "namespace": "shop",
            },
            "routes": list(routes),
            **spec,
        },
    }


def view(**attributes: str) -> MessageView:
    return MessageView({k: (v,) for k, v in attributes.items()}, "{}")


def test_routes_come_in_sequence_order_with_compiled_filters() -> None:
    obj = split(route("dev/carol", 9), route("dev/alice", 2), route("dev/bob", 5, mode="mirror"))
    read = split_routes(obj)
    assert read.generation == 3
    assert not read.hand_back
    assert read.rejected == []
    assert [(r.session_id, r.sequence, r.destination) for r in read.routes] == [
        ("dev/alice", 2, "tmp-alice"),
        ("dev/bob", 5, "tmp-bob"),
        ("dev/carol", 9, "tmp-carol"),
    ]
    alice, bob, _ = read.routes
    assert alice.filter.matches(view(user="ALICE"))  # case-insensitive, as mirrord
    assert not alice.filter.matches(view(user="bob"))
    assert (alice.filter.mode, bob.filter.mode) == ("steal", "mirror")


def test_a_jq_filter_is_compiled_too() -> None:
    obj = split(route("dev/alice", 1, jqFilter=".user == 1"))
    (only,) = split_routes(obj).routes
    assert only.filter.spec.jq_filter == ".user == 1"


def test_hand_back_means_no_sessions() -> None:
    obj = split(route("dev/alice", 1), handBack=True)
    read = split_routes(obj)
    assert (read.routes, read.rejected, read.hand_back) == ([], [], True)


def test_no_routes_means_no_sessions() -> None:
    obj = split()
    del obj["spec"]["routes"]
    assert split_routes(obj).routes == []


def test_a_bad_regex_rejects_that_route_only() -> None:
    obj = split(
        route("dev/alice", 1),
        route("dev/bob", 2, messageFilter={"user": "^(bob$"}),
        route("dev/carol", 3),
    )
    read = split_routes(obj)
    assert [r.session_id for r in read.routes] == ["dev/alice", "dev/carol"]
    (rejection,) = read.rejected
    assert isinstance(rejection, Rejection)
    assert rejection.session == "dev/bob"
    assert "dev/bob" in rejection.error
    assert "QueueSplit ops/orders" in rejection.error


def test_a_bad_jq_program_rejects_that_route_only() -> None:
    obj = split(route("dev/alice", 1, jqFilter=".user ==="), route("dev/bob", 2))
    read = split_routes(obj)
    assert [r.session_id for r in read.routes] == ["dev/bob"]
    assert [r.session for r in read.rejected] == ["dev/alice"]


def test_a_repeated_sequence_rejects_the_later_route() -> None:
    obj = split(route("dev/bob", 4), route("dev/alice", 4))
    read = split_routes(obj)
    assert [r.session_id for r in read.routes] == ["dev/alice"]
    (rejection,) = read.rejected
    assert rejection.session == "dev/bob"
    assert "shares sequence 4" in rejection.error


def test_an_invalid_object_is_an_error_naming_it() -> None:
    obj = split(route("dev/alice", 1))
    del obj["spec"]["target"]["namespace"]
    with pytest.raises(QueueSplitError, match=r"QueueSplit ops/orders is not a valid QueueSplit"):
        split_routes(obj)


def test_a_split_is_named_namespace_slash_name() -> None:
    assert parse_split_ref("ops/orders") == ("ops", "orders")
    for bad in ("orders", "/orders", "ops/", "ops/orders/x"):
        with pytest.raises(UsageError, match="NAMESPACE/NAME"):
            parse_split_ref(bad)
