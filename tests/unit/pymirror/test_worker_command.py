"""``pymirror worker kafka`` input parsing: properties, the sessions file, the topic format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pymirror.commands.worker import parse_properties
from pymirror.errors import ConfigError, UsageError
from pymirror.settings import load_settings
from pymirror.worker.sources import load_routes as load_session_routes
from splitter.errors import FilterError
from splitter.naming import DEFAULT_KAFKA_TOPIC_FORMAT
from splitter.routing import SessionRoute

pytestmark = pytest.mark.unit


def load_routes(path: Path) -> list[SessionRoute]:
    """The sessions file as ``pymirror worker kafka`` reads it (destinations under "topic")."""
    return load_session_routes(path, "topic")


def write(tmp_path: Path, entries: object) -> Path:
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps(entries))
    return path


def test_properties_split_at_the_first_equals_sign() -> None:
    assert parse_properties(["bootstrap.servers=a:1,b:2", "sasl.password=x=y"]) == {
        "bootstrap.servers": "a:1,b:2",
        "sasl.password": "x=y",
    }


@pytest.mark.parametrize("item", ["bootstrap.servers", "=value", " =x"])
def test_a_property_without_name_or_equals_sign_is_a_usage_error(item: str) -> None:
    with pytest.raises(UsageError, match="NAME=VALUE"):
        parse_properties([item])


def test_sessions_file_becomes_routes_with_compiled_filters(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            {"id": "bob", "sequence": 2, "topic": "t-bob", "message_filter": {"User": "^bob$"}},
            {
                "id": "eve",
                "sequence": 1,
                "topic": "t-eve",
                "message_filter": {},
                "jq_filter": ".n > 1",
                "queue_mode": "mirror",
            },
        ],
    )
    bob, eve = load_routes(path)
    assert (bob.session_id, bob.sequence, bob.destination) == ("bob", 2, "t-bob")
    assert bob.filter.names == frozenset({"user"})
    assert eve.filter.mode == "mirror"
    assert not eve.filter.empty


def test_an_empty_sessions_file_at_start_up_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    path.write_text("")
    with pytest.raises(UsageError, match=r"write \[\] for no sessions"):
        load_routes(path)


def test_an_empty_list_means_no_sessions(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    path.write_text("[]")
    assert load_routes(path) == []


def test_a_bad_regex_names_the_session_and_the_header(tmp_path: Path) -> None:
    path = write(
        tmp_path, [{"id": "bob", "sequence": 1, "topic": "t", "message_filter": {"user": "(x"}}]
    )
    with pytest.raises(FilterError, match=r"session 'bob' message_filter\.user: '\(x'"):
        load_routes(path)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"id": "x"}, "must hold a JSON list"),
        (["x"], "entry 0 must be a JSON object"),
        ([{"id": "x", "sequence": 1}], r"entry 0 lacks \['topic'\]"),
        ([{"id": "x", "sequence": 1, "topic": "t", "filter": {}}], r"unknown keys \['filter'\]"),
        ([{"id": "x", "sequence": "first", "topic": "t"}], "sequence must be an integer"),
    ],
)
def test_a_malformed_sessions_file_is_a_usage_error(
    tmp_path: Path, entries: object, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        load_routes(write(tmp_path, entries))


def test_a_missing_sessions_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read sessions file"):
        load_routes(tmp_path / "nope.json")


def test_the_default_topic_format_is_the_naming_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPERATOR_KAFKA_SPLITTING_TOPIC_FORMAT", raising=False)
    monkeypatch.delenv("PYMIRROR_KAFKA__TOPIC_FORMAT", raising=False)
    settings = load_settings()
    assert settings.kafka.topic_format == DEFAULT_KAFKA_TOPIC_FORMAT
    name = settings.kafka.name_format.render("views", fallback=True, random_digits="0123456789")
    assert name == "mirrord-tmp-0123456789-fallback-views"


def test_mirrords_env_name_sets_the_topic_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "OPERATOR_KAFKA_SPLITTING_TOPIC_FORMAT", "x-{{RANDOM}}{{FALLBACK}}{{ORIGINAL_TOPIC}}"
    )
    assert load_settings().kafka.topic_format == "x-{{RANDOM}}{{FALLBACK}}{{ORIGINAL_TOPIC}}"


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("OPERATOR_KAFKA_SPLITTING_TOPIC_FORMAT", "t-{{RANDOM}}-{{ORIGINAL_TOPIC}}", "lacks"),
        (
            "PYMIRROR_KAFKA__TOPIC_FORMAT",
            "t {{RANDOM}}{{FALLBACK}}{{ORIGINAL_TOPIC}}",
            "cannot hold",
        ),
        ("PYMIRROR_KAFKA__TOPIC_FORMAT", "{{RANDOM}}{{FALLBACK}}{{ORIGINAL_QUEUE}}", "unknown"),
    ],
)
def test_a_bad_topic_format_is_a_config_error_at_start_up(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings()
    assert (env if env.startswith("OPERATOR") else "kafka.topic_format") in str(info.value)
