"""pymirror's own kinds (crds/splitsessions.yaml, crds/queuesplits.yaml) on the real API server.

A valid SplitSession and QueueSplit are accepted with their defaults filled in,
status is written through the status subresource only, and each deliberately
invalid object is rejected (422) with the offending field named.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client as k8s

pytestmark = pytest.mark.integration

GROUP = ("pymirror.dev", "v1alpha1")

SESSION: dict[str, Any] = {
    "apiVersion": "pymirror.dev/v1alpha1",
    "kind": "SplitSession",
    "metadata": {"name": "alice-meme"},
    "spec": {
        "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "meme-app"},
        "owner": {"username": "alice", "hostname": "laptop", "k8sUsername": "alice@corp"},
        "queues": [
            {"id": "meme-queue", "kind": "SQS", "messageFilter": {"author": "^alice$"}},
            {"id": "views-topic", "kind": "Kafka", "jqFilter": ".total > 100", "mode": "mirror"},
        ],
    },
}

SPLIT: dict[str, Any] = {
    "apiVersion": "pymirror.dev/v1alpha1",
    "kind": "QueueSplit",
    "metadata": {"name": "meme-app-meme-queue"},
    "spec": {
        "kind": "SQS",
        "original": "https://sqs.us-east-1.amazonaws.com/123456789012/memes",
        "target": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "meme-app",
            "namespace": "default",
        },
        "routes": [
            {
                "session": "default/alice-meme",
                "sequence": 1,
                "destination": "mirrord-tmp-0123456789-memes",
                "messageFilter": {"author": "^alice$"},
            }
        ],
    },
}


def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``body`` with the dotted ``path`` (list indexes as numbers) set to ``value``."""
    changed = copy.deepcopy(body)
    *parents, last = path.split(".")
    node: Any = changed
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return changed


_DELETE = object()


def test_a_valid_session_is_accepted_with_defaults_and_status_goes_through_its_subresource(
    kube_client: k8s.ApiClient, kube_crds: list[str], unique_name: str
) -> None:
    api = k8s.CustomObjectsApi(kube_client)
    created = api.create_namespaced_custom_object(*GROUP, unique_name, "splitsessions", SESSION)
    assert created["spec"]["leaseSeconds"] == 30
    assert [q.get("mode") for q in created["spec"]["queues"]] == ["steal", "mirror"]
    # status in a main-resource write is ignored; the status subresource sets it.
    created["status"] = {"phase": "Ready"}
    updated = api.replace_namespaced_custom_object(
        *GROUP, unique_name, "splitsessions", "alice-meme", created
    )
    assert "status" not in updated
    status = {"status": {"phase": "Pending", "sequence": 1, "message": "provisioning"}}
    patched = api.patch_namespaced_custom_object_status(
        *GROUP, unique_name, "splitsessions", "alice-meme", status
    )
    assert patched["status"]["phase"] == "Pending"
    assert patched["status"]["sequence"] == 1


def test_a_valid_queue_split_is_accepted(
    kube_client: k8s.ApiClient, kube_crds: list[str], unique_name: str
) -> None:
    api = k8s.CustomObjectsApi(kube_client)
    created = api.create_namespaced_custom_object(*GROUP, unique_name, "queuesplits", SPLIT)
    assert created["spec"]["handBack"] is False
    assert created["spec"]["routes"][0]["mode"] == "steal"


@pytest.mark.parametrize(
    ("plural", "body", "field"),
    [
        ("splitsessions", _with(SESSION, "spec.leaseSeconds", 3), "spec.leaseSeconds"),
        ("splitsessions", _with(SESSION, "spec.target.kind", "Job"), "spec.target.kind"),
        ("splitsessions", _with(SESSION, "spec.queues", []), "spec.queues"),
        ("splitsessions", _with(SESSION, "spec.queues.0.kind", "RabbitMQ"), "spec.queues[0].kind"),
        ("splitsessions", _with(SESSION, "spec.queues.1.mode", "copy"), "spec.queues[1].mode"),
        ("splitsessions", _with(SESSION, "spec.owner", _DELETE), "spec.owner"),
        (
            "splitsessions",
            _with(SESSION, "spec.queues.0.messageFilter", {"author": 1}),
            "spec.queues[0].messageFilter.author",
        ),
        ("queuesplits", _with(SPLIT, "spec.kind", "sqs"), "spec.kind"),
        ("queuesplits", _with(SPLIT, "spec.routes.0.sequence", 0), "spec.routes[0].sequence"),
        ("queuesplits", _with(SPLIT, "spec.target", _DELETE), "spec.target"),
    ],
    ids=lambda v: v if isinstance(v, str) and "." in v else None,
)
def test_invalid_objects_are_rejected_with_422_naming_the_field(
    kube_client: k8s.ApiClient,
    kube_crds: list[str],
    unique_name: str,
    plural: str,
    body: dict[str, Any],
    field: str,
) -> None:
    with pytest.raises(k8s.ApiException) as rejected:
        k8s.CustomObjectsApi(kube_client).create_namespaced_custom_object(
            *GROUP, unique_name, plural, body
        )
    assert rejected.value.status == 422
    assert field in str(rejected.value.body)
