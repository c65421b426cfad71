"""``pymirror exec``'s config: every form mirrord accepts, and every error named with its fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pymirror.client.config import (
    QueueRequest,
    TargetSpec,
    find_config_file,
    load_config,
    parse_config,
    parse_split_queues,
    parse_target,
    parse_target_path,
)
from pymirror.errors import ConfigError

pytestmark = pytest.mark.unit

SQS = {"queue_type": "SQS", "message_filter": {"author": "^me$"}}


def config(**top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"target": "deployment/meme-app", "feature": {"split_queues": {"q": SQS}}}
    doc.update(top)
    return doc


def error_of(doc: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, "cfg.json")
    assert info.value.exit_code == 2
    return str(info.value)


# --- the design's example, in every file format ---------------------------------------------

DESIGN_EXAMPLE = {
    "target": {"path": "deployment/meme-app/container/main", "namespace": "default"},
    "feature": {
        "split_queues": {
            "meme-queue": {
                "queue_type": "SQS",
                "message_filter": {"author": "^me$", "level": "^(beginner|intermediate)$"},
            },
            "ad-queue": {"queue_type": "SQS", "message_filter": {}},
            "views-topic": {"queue_type": "Kafka", "message_filter": {"source": "^my-session-"}},
        }
    },
}
EXPECTED_QUEUES = (
    QueueRequest("meme-queue", "SQS", {"author": "^me$", "level": "^(beginner|intermediate)$"}),
    QueueRequest("ad-queue", "SQS", {}),
    QueueRequest("views-topic", "Kafka", {"source": "^my-session-"}),
)

YAML_EXAMPLE = """
target:
  path: deployment/meme-app/container/main
  namespace: default
feature:
  split_queues:
    meme-queue:
      queue_type: SQS
      message_filter: {author: "^me$", level: "^(beginner|intermediate)$"}
    ad-queue: {queue_type: SQS, message_filter: {}}
    views-topic: {queue_type: Kafka, message_filter: {source: "^my-session-"}}
"""

TOML_EXAMPLE = """
[target]
path = "deployment/meme-app/container/main"
namespace = "default"

[feature.split_queues.meme-queue]
queue_type = "SQS"
message_filter = { author = "^me$", level = "^(beginner|intermediate)$" }

[feature.split_queues.ad-queue]
queue_type = "SQS"
message_filter = {}

[feature.split_queues.views-topic]
queue_type = "Kafka"
message_filter = { source = "^my-session-" }
"""


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("mirrord.json", json.dumps(DESIGN_EXAMPLE)),
        ("mirrord.yaml", YAML_EXAMPLE),
        ("mirrord.yml", YAML_EXAMPLE),
        ("mirrord.toml", TOML_EXAMPLE),
    ],
)
def test_the_designs_example_reads_the_same_from_json_yaml_and_toml(
    tmp_path: Path, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    parsed = load_config(path)
    assert parsed.target == TargetSpec("Deployment", "meme-app", "main", "default")
    assert parsed.queues == EXPECTED_QUEUES
    assert parsed.ignored == ()
    assert parsed.source == str(path)


@pytest.mark.parametrize(
    ("name", "text"), [("bad.json", "{"), ("bad.yaml", "a: [b"), ("bad.toml", "a = ")]
)
def test_a_malformed_file_names_its_format(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"not valid (JSON|YAML|TOML)"):
        load_config(path)


# --- where the file comes from --------------------------------------------------------------


def test_dash_f_wins_over_the_environment_and_the_folder(tmp_path: Path) -> None:
    (tmp_path / ".mirrord").mkdir()
    (tmp_path / ".mirrord" / "a.json").write_text("{}")
    explicit, from_env = tmp_path / "x.yaml", tmp_path / "y.toml"
    explicit.write_text("")
    from_env.write_text("")
    env = {"MIRRORD_CONFIG_FILE": str(from_env)}
    assert find_config_file(str(explicit), env, tmp_path) == explicit
    assert find_config_file(None, env, tmp_path) == from_env
    assert find_config_file(None, {}, tmp_path) == tmp_path / ".mirrord" / "a.json"


def test_the_folder_gives_the_lexicographically_first_config(tmp_path: Path) -> None:
    folder = tmp_path / ".mirrord"
    folder.mkdir()
    for name in ("mirrord.yaml", "b.toml", "mirrord.json", "notes.txt"):
        (folder / name).write_text("")
    assert find_config_file(None, {}, tmp_path) == folder / "b.toml"


def test_no_file_anywhere_says_where_to_put_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pass -f FILE, set MIRRORD_CONFIG_FILE"):
        find_config_file(None, {}, tmp_path)


@pytest.mark.parametrize("origin", ["-f", "MIRRORD_CONFIG_FILE"])
def test_a_named_file_that_is_missing_is_an_error(tmp_path: Path, origin: str) -> None:
    missing = str(tmp_path / "nope.json")
    explicit = missing if origin == "-f" else None
    with pytest.raises(ConfigError, match=rf"{origin}: config file .*nope.json does not exist"):
        find_config_file(explicit, {"MIRRORD_CONFIG_FILE": missing}, tmp_path)


# --- target ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("deployment/meme-app", TargetSpec("Deployment", "meme-app")),
        ("deploy/meme-app", TargetSpec("Deployment", "meme-app")),
        ("deploy/meme-app/container/c", TargetSpec("Deployment", "meme-app", "c")),
        ("statefulset/db/container/main", TargetSpec("StatefulSet", "db", "main")),
        ("sts/db", TargetSpec("StatefulSet", "db")),
        ("rollout/web", TargetSpec("Rollout", "web")),
        ("Deployment/web", TargetSpec("Deployment", "web")),
    ],
)
def test_target_paths(path: str, expected: TargetSpec) -> None:
    assert parse_target_path(path) == expected
    assert parse_target(path) == expected


def test_target_object_carries_its_namespace() -> None:
    parsed = parse_target({"path": "deploy/a/container/b", "namespace": "shop"})
    assert parsed == TargetSpec("Deployment", "a", "b", "shop")
    assert parsed.path == "deployment/a/container/b"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("pod/meme-app-123", "needs a deployment, statefulset or rollout target, not a pod"),
        ("targetless", "not a targetless"),
        ("daemonset/x", "unknown target kind 'daemonset'"),
        ("deployment", "is not a target path"),
        ("deployment/a/b", "is not a target path"),
        ("deployment/a/pod/b", "is not a target path"),
        ("deployment//container/c", "is not a target path"),
        (7, "target must be a path string"),
        ({"namespace": "x"}, "target.path is missing"),
        ({"path": "deploy/a", "ns": "x"}, r"target.ns: unknown key"),
        ({"path": "deploy/a", "namespace": ""}, "target.namespace must be a non-empty string"),
        ([], 'target must be a path string (e.g. "deployment/meme-app") or an object'),
        ({"path": 3}, "target.path must be a target path string"),
    ],
)
def test_bad_targets(target: Any, message: str) -> None:
    assert message in error_of(config(target=target))


def test_a_target_is_optional_in_the_file() -> None:
    doc = config()
    del doc["target"]
    assert parse_config(doc).target is None


# --- split_queues ---------------------------------------------------------------------------


def test_list_form_allows_one_id_for_a_queue_and_a_topic() -> None:
    queues = parse_split_queues(
        [
            {"queue_id": "events", "queue_type": "SQS", "message_filter": {"a": "b"}},
            {
                "queue_id": "events",
                "queue_type": "Kafka",
                "jq_filter": ".total > 100",
                "queue_mode": "mirror",
            },
        ]
    )
    assert queues == (
        QueueRequest("events", "SQS", {"a": "b"}),
        QueueRequest("events", "Kafka", {}, ".total > 100", "mirror"),
    )


def test_wildcard_id_and_the_wire_form() -> None:
    (queue,) = parse_split_queues(
        {"*": {"queue_type": "SQS", "message_filter": {"x": "1"}, "jq_filter": ".a"}}
    )
    assert queue.id == "*"
    assert queue.to_spec() == {
        "id": "*",
        "kind": "SQS",
        "messageFilter": {"x": "1"},
        "jqFilter": ".a",
        "mode": "steal",
    }


def test_an_entry_without_filters_is_a_match_nothing_filter() -> None:
    (queue,) = parse_split_queues({"q": {"queue_type": "SQS"}})
    assert queue.to_spec() == {"id": "q", "kind": "SQS", "messageFilter": {}, "mode": "steal"}


def test_lookaround_regexes_are_accepted() -> None:
    (queue,) = parse_split_queues(
        {"q": {"queue_type": "SQS", "message_filter": {"a": "^(?!bot-).*(?<=x)$"}}}
    )
    assert queue.message_filter == {"a": "^(?!bot-).*(?<=x)$"}


BAD_QUEUES: list[tuple[Any, str]] = [
    (None, "feature.split_queues is missing"),
    ({}, "feature.split_queues is empty"),
    ([], "feature.split_queues is empty"),
    ("q", "must be a map from queue id to its filter, or a list"),
    (
        {"q": {"queue_type": "RabbitMQ"}},
        "feature.split_queues.q.queue_type: 'RabbitMQ': unknown queue type; use SQS or Kafka",
    ),
    ({"q": {"queue_type": "RMQ"}}, "RMQ queues are not split by pymirror; use SQS or Kafka"),
    ({"q": {"message_filter": {}}}, "feature.split_queues.q.queue_type is missing"),
    (
        {"q": {"queue_type": "SQS", "message_filter": {"author": "^(me"}}},
        "feature.split_queues.q.message_filter.author: '^(me' is not a valid regex",
    ),
    (
        {"q": {"queue_type": "Kafka", "jq_filter": "idk | whatever"}},
        "feature.split_queues.q: jq_filter 'idk | whatever' does not compile",
    ),
    ({"q": {"queue_type": "SQS", "jq_filter": 3}}, "jq_filter must be a jq program"),
    ({"q": {"queue_type": "SQS", "message_filter": ["a"]}}, "must be a map of attribute name"),
    (
        {"q": {"queue_type": "SQS", "message_filter": {"a": 1}}},
        "message_filter.a: the filter must be a regex string",
    ),
    (
        {"q": {"queue_type": "SQS", "message_filter": {"A": "x", "a": "y"}}},
        "the attribute is named twice",
    ),
    (
        {"q": {"queue_type": "SQS", "queue_mode": "copy"}},
        "queue_mode: 'copy' is not steal or mirror",
    ),
    (
        {"q": {"queue_type": "Kafka", "unknown": True}},
        "feature.split_queues.q: unknown field(s) unknown",
    ),
    (
        {"q": {"queue_type": "Kafka", "payload_protobuf": {"message_type": "x"}}},
        "unknown field(s) payload_protobuf",
    ),
    ({"q": "SQS"}, "feature.split_queues.q must be an object"),
    ({"": {"queue_type": "SQS"}}, "a queue id must be a non-empty string"),
    ([{"queue_type": "SQS"}], "feature.split_queues[0].queue_id is missing"),
    (
        [{"queue_id": 5, "queue_type": "SQS"}],
        "feature.split_queues[0].queue_id is missing or not a string",
    ),
    (
        [{"queue_id": "a", "queue_type": "SQS"}, {"queue_id": "a", "queue_type": "SQS"}],
        "a (SQS) listed twice; merge the entries",
    ),
]


@pytest.mark.parametrize(("queues", "message"), BAD_QUEUES)
def test_bad_split_queues(queues: Any, message: str) -> None:
    doc = config()
    if queues is None:
        del doc["feature"]["split_queues"]
    else:
        doc["feature"]["split_queues"] = queues
    text = error_of(doc)
    assert text.startswith("cfg.json: ")
    assert message in text


# --- the rest of a mirrord config -----------------------------------------------------------


def test_other_mirrord_keys_are_ignored_and_named() -> None:
    doc = config(
        agent={"ttl": 30},
        accept_invalid_certificates=True,
        operator=True,
        kubeconfig="/k",
        kube_context="ctx",
    )
    doc["feature"].update({"network": {"incoming": "steal"}, "fs": "local", "env": {}})
    parsed = parse_config(doc)
    assert parsed.ignored == (
        "accept_invalid_certificates",
        "agent",
        "feature.env",
        "feature.fs",
        "feature.network",
    )
    assert (parsed.kubeconfig, parsed.kube_context) == ("/k", "ctx")


def test_env_overrides_are_kept_for_the_split_check() -> None:
    doc = config()
    doc["feature"]["env"] = {"override": {"QUEUE_NAME": "mine", "OTHER": "x"}}
    assert parse_config(doc).env_overrides == frozenset({"QUEUE_NAME", "OTHER"})


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (config(tarGET="x"), "unknown key(s) tarGET: neither pymirror nor mirrord knows them"),
        (
            config(feature={"split_queues": {"q": SQS}, "netwrok": {}}),
            "unknown key(s) feature.netwrok",
        ),
        (config(operator=False), "operator: false, but queue splitting needs the operator"),
        (config(kubeconfig=""), "kubeconfig must be a non-empty string"),
        (config(feature=[]), "feature must be an object"),
        ([], "the config file must be an object"),
        (
            config(feature={"split_queues": {"q": SQS}, "env": {"override": ["A"]}}),
            "feature.env.override must be an object",
        ),
    ],
)
def test_bad_top_level(doc: Any, message: str) -> None:
    assert message in error_of(doc)
