"""The pieces of ``pymirror status`` and ``session kill`` that need no server: records,
tables, the RBAC message, the kill patch, the command line."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from pymirror.cli import build_parser
from pymirror.client.access import (
    AccessDeniedError,
    ClusterUnreachableError,
    CrdsMissingError,
    crds_missing_message,
    denied_message,
    guarded,
)
from pymirror.client.identity import Identity, owner_text
from pymirror.client.killing import KILL_BATCH_LABEL, kill_patch
from pymirror.client.overview import overview, session_record, split_record, worker_record
from pymirror.client.status_view import (
    age_text,
    filter_text,
    plain_table,
    render,
    session_table,
    split_table,
)
from registry.errors import ForbiddenError, NotFoundError, UnauthorizedError, UnavailableError
from registry.session_models import SplitSession

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
TARGET = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "meme-app", "container": "main"}


def session_obj(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "exec-alice-1",
            "namespace": "shop",
            "uid": "u-1",
            "creationTimestamp": "2026-01-02T03:01:00Z",
        },
        "spec": {
            "target": TARGET,
            "owner": {"username": "alice", "hostname": "laptop", "k8sUsername": "alice@corp"},
            "queues": [
                {"id": "meme-queue", "kind": "SQS", "messageFilter": {"author": "^alice$"}},
                {"id": "*", "kind": "Kafka", "jqFilter": ".x > 1", "mode": "mirror"},
            ],
            "leaseSeconds": 30,
            "renewTime": "2026-01-02T03:04:00.000000Z",
        },
        "status": status,
    }


READY = {
    "phase": "Ready",
    "sequence": 4,
    "queues": [
        {
            "id": "meme-queue",
            "original": "memes",
            "kind": "SQS",
            "split": "meme-app-memes-1",
            "envVar": "MEMES",
            "temporary": "mirrord-tmp-1-memes",
            "value": "mirrord-tmp-1-memes",
        },
        {
            "id": "views",
            "original": "views",
            "kind": "Kafka",
            "split": "meme-app-views-2",
            "envVar": "VIEWS",
            "temporary": "mirrord-tmp-2-views",
            "value": "mirrord-tmp-2-views",
        },
    ],
}


def test_a_session_record_merges_spec_filters_into_the_status_queues() -> None:
    record = session_record(session_obj(**READY), NOW)
    assert record["user"] == "alice/alice@corp@laptop"
    assert record["targetPath"] == "deployment/meme-app/container/main"
    assert (record["phase"], record["sequence"], record["ageSeconds"]) == ("Ready", 4, 185)
    assert (record["endReason"], record["killedBy"], record["deleting"]) == (None, None, False)
    memes, views = record["queues"]
    assert memes == {
        "id": "meme-queue",
        "kind": "SQS",
        "mode": "steal",
        "messageFilter": {"author": "^alice$"},
        "jqFilter": None,
        "original": "memes",
        "temporary": "mirrord-tmp-1-memes",
        "envVar": "MEMES",
        "split": "meme-app-memes-1",
    }
    # "views" came from the Kafka "*" entry: its filter and mode
    assert (views["id"], views["jqFilter"], views["mode"]) == ("views", ".x > 1", "mirror")


def test_a_session_not_planned_yet_lists_its_spec_queues() -> None:
    record = session_record(session_obj(phase="Pending", message="planning"), NOW)
    assert [(q["id"], q["original"], q["temporary"]) for q in record["queues"]] == [
        ("meme-queue", None, None),
        ("*", None, None),
    ]
    assert record["message"] == "planning"


def test_a_killed_session_says_who_killed_it() -> None:
    obj = session_obj(phase="Ending", endReason="Killed", message="killed by bob/b@ops")
    obj["metadata"]["annotations"] = {"pymirror.dev/killed": "bob/b@ops"}
    obj["metadata"]["deletionTimestamp"] = "2026-01-02T03:04:04Z"
    record = session_record(obj, NOW)
    assert (record["killedBy"], record["deleting"], record["endReason"]) == (
        "bob/b@ops",
        True,
        "Killed",
    )
    (row,) = session_table(overview([record], [], namespace="shop", operator_namespace="o")).rows
    assert row[4] == "Ending (Killed)"
    assert row[8] == "killed by bob/b@ops"  # not said twice


SPLIT: dict[str, Any] = {
    "metadata": {
        "name": "meme-app-memes-1",
        "namespace": "ops",
        "creationTimestamp": "2026-01-02T03:00:05Z",
    },
    "spec": {
        "kind": "SQS",
        "queueId": "meme-queue",
        "original": "memes",
        "target": {**TARGET, "namespace": "shop", "envVar": "MEMES"},
        "fallback": "mirrord-tmp-0-fallback-memes",
        "routes": [
            {
                "session": "shop/b",
                "sequence": 7,
                "destination": "http://sqs:4566/1/q-b",
                "messageFilter": {"a": "b"},
            },
            {
                "session": "shop/a",
                "sequence": 4,
                "destination": "q-a",
                "jqFilter": ".x",
                "mode": "mirror",
            },
        ],
    },
    "status": {
        "activeSessions": 2,
        "workerDeployment": "pymirror-worker-meme-app-memes-1",
        "counters": {
            "read": 10,
            "fallback": 3,
            "unmatched": 3,
            "failed": 0,
            "forwarded": {"shop/a": 5, "shop/b": 2},
        },
        "temporaryResources": [
            {
                "name": "mirrord-tmp-0-fallback-memes",
                "role": "fallback",
                "created": True,
                "url": "u",
            }
        ],
    },
}


def test_a_split_record_orders_sessions_by_sequence_with_their_forwarded_counts() -> None:
    worker = worker_record("w", {"spec": {"replicas": 1}, "status": {"replicas": 1}}, None)
    record = split_record(SPLIT, worker, NOW)
    assert [(s["session"], s["sequence"], s["forwarded"]) for s in record["sessions"]] == [
        ("shop/a", 4, 5),
        ("shop/b", 7, 2),
    ]
    assert record["worker"] == {"name": "w", "replicas": 1, "readyReplicas": 0, "error": None}
    assert record["counters"] == {
        "read": 10,
        "unmatched": 3,
        "fallback": 3,
        "failed": 0,
        "lag": None,
        "forwarded": {"shop/a": 5, "shop/b": 2},
    }
    assert record["temporaryResources"] == [
        {
            "name": "mirrord-tmp-0-fallback-memes",
            "role": "fallback",
            "session": None,
            "created": True,
        }
    ]
    assert (record["handBack"], record["ageSeconds"]) == (False, 240)
    (row,) = split_table(overview([], [record], namespace="shop", operator_namespace="ops")).rows
    assert row[0] == "ops/meme-app-memes-1"
    assert row[1] == "shop/deployment/meme-app/container/main"
    assert row[5].splitlines() == [
        "4 shop/a -> q-a  [jq:.x (mirror)]",
        "7 shop/b -> q-b  [a=b]",
    ]
    assert row[6] == "w 0/1 ready"
    assert row[7].splitlines() == [
        "read 10 fallback 3 unmatched 3 failed 0",
        "shop/a: 5",
        "shop/b: 2",
    ]


def test_a_worker_that_cannot_be_read_is_said_so() -> None:
    record = split_record(SPLIT, worker_record("w", None, "RBAC refuses get"), NOW)
    (row,) = split_table(overview([], [record], namespace=None, operator_namespace=None)).rows
    assert row[6] == "w (RBAC refuses get)"


def test_handing_back_shows_its_phase() -> None:
    split = {**SPLIT, "spec": {**SPLIT["spec"], "handBack": True, "routes": []}}
    split["status"] = {**SPLIT["status"], "handBack": {"phase": "Draining", "remaining": 3}}
    record = split_record(split, worker_record(None, None, "no worker yet"), NOW)
    (row,) = split_table(overview([], [record], namespace="shop", operator_namespace="o")).rows
    assert row[4] == "HandBack Draining (3 left)"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0, "0s"), (59, "59s"), (61, "1m1s"), (600, "10m"), (3660, "1h1m"),
     (7200, "2h"), (90000, "1d1h"), (86400, "1d")],
)  # fmt: skip
def test_ages_read_like_kubectl(seconds: int | None, text: str) -> None:
    assert age_text(seconds) == text


def test_filters_are_one_line() -> None:
    assert filter_text({"b": "2", "a": "1"}, None, "steal") == "a=1, b=2"
    assert filter_text({}, ".x", "mirror") == "jq:.x (mirror)"
    assert filter_text({}, None, "steal") == "nothing (empty filter)"


def test_the_plain_table_continues_multi_line_cells_below() -> None:
    record = session_record(session_obj(**READY), NOW)
    text = plain_table(
        session_table(overview([record], [], namespace="shop", operator_namespace="o"))
    )
    lines = text.splitlines()
    assert lines[0] == "Sessions:"
    assert lines[1].startswith("SESSION   ")
    assert lines[2].split()[:3] == ["exec-alice-1", "shop", "deployment/meme-app/container/main"]
    assert "meme-queue (SQS): memes -> mirrord-tmp-1-memes  [author=^alice$]" in lines[2]
    queues_at = lines[1].index("QUEUES")
    assert lines[3][:queues_at].strip() == ""  # the continuation line
    assert lines[3][queues_at:].startswith("views (Kafka): views -> mirrord-tmp-2-views")


def test_empty_sections_say_so_and_json_yaml_are_the_document() -> None:
    doc = overview([], [], namespace="shop", operator_namespace="ops")
    out = io.StringIO()
    render(doc, "table", out)
    assert out.getvalue() == (
        "Sessions: No split sessions in namespace shop.\n\n"
        "Splits: No queue splits in operator namespace ops for targets in shop.\n"
    )
    record = session_record(session_obj(**READY), NOW)
    doc = overview([record], [], namespace=None, operator_namespace=None)
    as_json, as_yaml = io.StringIO(), io.StringIO()
    render(doc, "json", as_json)
    render(doc, "yaml", as_yaml)
    assert json.loads(as_json.getvalue()) == doc
    assert yaml.safe_load(as_yaml.getvalue()) == doc
    assert list(doc) == ["apiVersion", "kind", "scope", "sessions", "splits"]
    assert doc["scope"] == {"namespace": None, "allNamespaces": True, "operatorNamespace": None}


def test_sessions_sort_by_namespace_then_sequence() -> None:
    late, early = (
        session_record(session_obj(**READY), NOW),
        session_record(session_obj(**READY), NOW),
    )
    late["sequence"], late["name"] = 9, "late"
    new = {**early, "name": "new", "sequence": None}
    doc = overview([late, new, early], [], namespace="shop", operator_namespace="o")
    assert [s["name"] for s in doc["sessions"]] == ["exec-alice-1", "late", "new"]


def test_the_rbac_refusal_names_the_verb_the_resource_and_the_role() -> None:
    text = denied_message("deletecollection", SplitSession.RESOURCE, "shop", "403 Forbidden: no")
    assert text.startswith(
        "RBAC refuses verb 'deletecollection' on splitsessions.pymirror.dev in namespace shop; "
        "the ClusterRole pymirror-user (installed by the Helm chart) grants it"
    )
    assert "kubectl create rolebinding pymirror-user --clusterrole=pymirror-user" in text
    assert text.endswith("The API server said: 403 Forbidden: no")
    everywhere = denied_message("list", SplitSession.RESOURCE, None, "x")
    assert "across all namespaces" in everywhere
    assert "clusterrolebinding" in everywhere
    assert "kubectl apply -f crds/" in crds_missing_message(SplitSession.RESOURCE, "kubeconfig k")


def test_the_kill_patch_signs_with_the_identity() -> None:
    who = Identity("carol", "box", "carol@corp", None).display()
    assert who == "carol/carol@corp@box"
    assert owner_text({"username": "a"}) == "a/?@?"
    assert kill_patch(who) == {"metadata": {"annotations": {"pymirror.dev/killed": who}}}
    assert kill_patch(who, "t1")["metadata"]["labels"] == {KILL_BATCH_LABEL: "t1"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status"], {"namespace": None, "all_namespaces": False, "output": "table"}),
        (["status", "-A", "-o", "json"], {"all_namespaces": True, "output": "json"}),
        (["status", "-n", "shop", "-o", "yaml"], {"namespace": "shop", "output": "yaml"}),
        (["session", "kill", "--id", "shop/x"], {"session_id": "shop/x", "namespace": None}),
        (["session", "kill-all", "-A"], {"all_namespaces": True}),
    ],
)
def test_the_command_lines_parse(argv: list[str], expected: dict[str, Any]) -> None:
    args = build_parser(argv[0]).parse_args(argv)
    assert {k: getattr(args, k) for k in expected} == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "-n", "a", "-A"],
        ["status", "-o", "wide"],
        ["session", "kill"],
        ["session", "kill", "--id", "x", "-A"],
        ["session"],
    ],
)
def test_bad_command_lines_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser(argv[0]).parse_args(argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err


async def _raise(error: Exception) -> None:
    raise error


@pytest.mark.parametrize(
    ("error", "verb", "expected"),
    [
        (ForbiddenError("403"), "patch", AccessDeniedError),
        (NotFoundError("404"), "list", CrdsMissingError),
        (NotFoundError("404"), "deletecollection", CrdsMissingError),
        (NotFoundError("404"), "get", NotFoundError),  # a missing object, not a missing kind
        (UnavailableError("refused"), "list", ClusterUnreachableError),
        (UnauthorizedError("401"), "list", ClusterUnreachableError),
    ],
)
async def test_guarded_calls_become_the_clients_errors(
    error: Exception, verb: str, expected: type[Exception]
) -> None:
    with pytest.raises(expected):
        await guarded(_raise(error), verb, SplitSession.RESOURCE, "shop", "kubeconfig k")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_tables_are_rich_and_keep_brackets_as_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # wide enough for no cell to fold
    record = session_record(session_obj(**READY), NOW)
    split = split_record(SPLIT, worker_record("w", None, "not found"), NOW)
    out = Terminal()
    render(overview([record], [split], namespace="shop", operator_namespace="ops"), "table", out)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # the styles
    assert "┃ SESSION" in text  # a rich table's header
    assert "[author=^alice$]" in text  # not taken for rich markup
    assert "Splits" in text
