"""Session filters (splitter/filters.py): every matching rule of docs/how-it-works.md, as tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import regex
from structlog.testing import capture_logs

from splitter.errors import FilterError
from splitter.filters import (
    NAMES_REMEMBERED,
    FilterSpec,
    KafkaHeaders,
    MessageView,
    compile_filter,
    exact_literals,
    literal_prefix,
)
from splitter.jq_programs import shared_evaluator

pytestmark = pytest.mark.unit


def sqs_view(body: str | None = None, **attributes: tuple[str, str]) -> MessageView:
    """An SQS message; each attribute is ``(DataType, value)`` as botocore returns it."""
    raw: dict[str, Any] = {}
    for name, (data_type, value) in attributes.items():
        if data_type.startswith("Binary"):
            raw[name] = {"DataType": data_type, "BinaryValue": value.encode()}
        else:
            raw[name] = {"DataType": data_type, "StringValue": value}
    return MessageView.from_sqs(raw, body)


def text_view(attributes: Mapping[str, str], body: str | None = None) -> MessageView:
    return sqs_view(body, **{name: ("String", value) for name, value in attributes.items()})


def matches(
    message_filter: Mapping[str, str], view: MessageView, jq_filter: str | None = None
) -> bool:
    return compile_filter(FilterSpec(message_filter=message_filter, jq_filter=jq_filter)).matches(
        view
    )


# --- name -> regex pairs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message_filter", "attributes", "expected"),
    [
        ({"author": "^me$"}, {"author": "me"}, True),
        ({"author": "^me$", "level": "^(beginner|intermediate)$"}, {"author": "me"}, False),
        (
            {"author": "^me$", "level": "^(beginner|intermediate)$"},
            {"author": "me", "level": "beginner"},
            True,
        ),
        (
            {"author": "^me$", "level": "^(beginner|intermediate)$"},
            {"author": "me", "level": "expert"},
            False,
        ),
        (
            {"author": "^me$", "level": "^(beginner|intermediate)$"},
            {"author": "you", "level": "beginner"},
            False,
        ),
        ({"author": "^me$"}, {"other": "me"}, False),
        ({"author": "^me$"}, {}, False),
        ({"author": "^me$"}, {"author": "me", "extra": "ignored"}, True),
    ],
    ids=[
        "one-pair",
        "second-attribute-missing",
        "both-pairs",
        "second-pair-fails",
        "first-pair-fails",
        "other-attribute",
        "no-attributes",
        "extra-attributes-ignored",
    ],
)
def test_every_pair_must_match_and_the_attribute_must_be_present(
    message_filter: dict[str, str], attributes: dict[str, str], expected: bool
) -> None:
    assert matches(message_filter, text_view(attributes)) is expected


@pytest.mark.parametrize("filter_name", ["author", "AUTHOR", "Author", "aUtHoR"])
@pytest.mark.parametrize("message_name", ["author", "AUTHOR", "Author"])
def test_attribute_and_header_names_are_compared_case_insensitively(
    filter_name: str, message_name: str
) -> None:
    assert matches({filter_name: "^me$"}, text_view({message_name: "me"}))
    assert matches({filter_name: "^me$"}, MessageView.from_kafka([(message_name, b"me")], None))


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("^a$", "A", True),  # mirrord's operator end-to-end test: ^a$ matches A
        ("^me$", "ME", True),
        ("^ME$", "me", True),
        ("^(alice|bob)$", "Bob", True),
        ("^my-session-", "MY-SESSION-1", True),
        ("ali", "xALIx", True),
        ("^(?!kube-probe)", "KUBE-PROBE/1.29", False),
        ("^k$", "\u212a", True),  # KELVIN SIGN is a k, case-insensitively
        ("^\u00e9t\u00e9$", "\u00c9T\u00c9", True),
        ("(?-i)^me$", "ME", False),
        ("(?-i)^me$", "me", True),
        ("(?-i)^(alice|bob)$", "Bob", False),
        ("(?-i)^my-", "MY-1", False),
        ("(?-i)^my-", "my-1", True),
        ("(?-i)ali", "xALIx", False),
        ("(?i)^me$", "ME", True),
    ],
)
def test_regex_values_are_compared_case_insensitively_unless_the_pattern_says_otherwise(
    pattern: str, value: str, expected: bool
) -> None:
    assert matches({"author": pattern}, text_view({"author": value})) is expected
    kafka_view = MessageView.from_kafka([("author", value.encode())], None)
    assert matches({"author": pattern}, kafka_view) is expected


def test_names_stay_case_insensitive_when_the_value_regex_is_case_sensitive() -> None:
    assert matches({"AUTHOR": "(?-i)^me$"}, text_view({"Author": "me"}))
    assert not matches({"AUTHOR": "(?-i)^me$"}, text_view({"Author": "Me"}))


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("me", "it is me, hello", True),
        ("^my-session-", "my-session-42", True),
        ("^my-session-", "not-my-session-42", False),
        ("42$", "my-session-42", True),
        ("42$", "42-my-session", False),
        ("^me$", "me\n", True),  # ``$`` matches before a final newline, as in every regex
        ("^me$", "me\n\n", False),
        ("^me$", "mine", False),
        ("", "anything", True),
        ("", "", True),
        ("^$", "", True),
        ("^$", "x", False),
    ],
)
def test_regex_searches_the_value_instead_of_matching_all_of_it(
    pattern: str, value: str, expected: bool
) -> None:
    assert matches({"a": pattern}, text_view({"a": value})) is expected
    assert matches({"a": pattern}, MessageView.from_kafka([("a", value.encode())], None)) is (
        expected
    )


@pytest.mark.parametrize(
    ("data_type", "value", "pattern"),
    [
        ("String", "me", "^me$"),
        ("String.custom", "me", "^me$"),
        ("Number", "42", r"^\d+$"),
        ("Number", "-3.5e2", r"^-3\.5e2$"),
        ("Number.float", "3.14", r"^3\.14$"),
        ("Number", "0042", "^0042$"),  # the text as sent, not a parsed number
    ],
)
def test_string_and_number_attributes_are_matched_as_text(
    data_type: str, value: str, pattern: str
) -> None:
    assert matches({"attr": pattern}, sqs_view(attr=(data_type, value)))


@pytest.mark.parametrize("data_type", ["Binary", "Binary.png"])
@pytest.mark.parametrize("pattern", ["", ".*", "^me$", "me"])
def test_binary_attributes_never_match(data_type: str, pattern: str) -> None:
    assert not matches({"attr": pattern}, sqs_view(attr=(data_type, "me")))


def test_binary_attribute_with_a_string_value_key_still_never_matches() -> None:
    raw = {"attr": {"DataType": "Binary", "StringValue": "me", "BinaryValue": b"me"}}
    assert not matches({"attr": "me"}, MessageView.from_sqs(raw, None))


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"me\x80", b"\xc3(", None])
@pytest.mark.parametrize("pattern", ["", ".*", "me"])
def test_kafka_header_values_that_are_not_utf8_never_match(raw: bytes | None, pattern: str) -> None:
    assert not matches({"h": pattern}, MessageView.from_kafka([("h", raw)], None))


def test_utf8_kafka_header_values_are_decoded_before_matching() -> None:
    view = MessageView.from_kafka([("who", "Zoë 🙂".encode())], None)
    assert matches({"who": "^Zoë 🙂$"}, view)
    assert matches({"who": r"\p{So}"}, view)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("tag", b"a"), ("tag", b"b")], True),
        ([("tag", b"b"), ("tag", b"a")], True),
        ([("Tag", b"b"), ("TAG", b"a")], True),
        ([("tag", b"\xff"), ("tag", b"a")], True),
        ([("tag", b"b"), ("tag", b"c")], False),
        ([("tag", b"b")], False),
    ],
)
def test_a_repeated_kafka_header_matches_when_any_of_its_values_does(
    headers: list[tuple[str, bytes]], expected: bool
) -> None:
    view = MessageView.from_kafka(headers, None)
    assert matches({"tag": "^a$"}, view) is expected
    assert matches({"tag": "a"}, view) is expected


def test_kafka_headers_decode_only_the_wanted_names_whatever_their_case_record_after_record() -> (
    None
):
    headers = KafkaHeaders(frozenset({"user", "tag"}))
    first = [("USER", b"a"), ("trace", b"\xff"), ("Tag", b"x"), ("tag", b"y"), ("tag", None)]
    for _ in range(2):  # the second record finds every name remembered
        view = headers.view(first, b"v")
        assert view.attributes == {"user": ("a",), "tag": ("x", "y")}
        assert view.body == b"v"
    assert headers.view([("user", b"\xff"), ("other", b"o")], None).attributes == {}
    everything = KafkaHeaders().view([("Trace", b"t"), ("USER", b"a")], None)
    assert everything.attributes == {"trace": ("t",), "user": ("a",)}


def test_kafka_headers_past_the_names_remembered_are_still_decoded() -> None:
    headers = KafkaHeaders(frozenset({"user"}))
    for i in range(NAMES_REMEMBERED + 10):
        headers.view([(f"h{i}", b"-")], None)  # a producer writing a new name per record
    assert len(headers._keys) == NAMES_REMEMBERED  # bounded
    assert headers.view([("h1", b"-"), ("User", b"late")], None).attributes == {"user": ("late",)}
    assert headers.view([("USER", b"again")], None).attributes == {"user": ("again",)}


def test_sqs_attributes_whose_names_differ_only_in_case_are_all_matched() -> None:
    view = sqs_view(Author=("String", "you"), author=("String", "me"))
    assert matches({"author": "^me$"}, view)
    assert matches({"AUTHOR": "^you$"}, view)


@pytest.mark.parametrize(
    "view",
    [
        text_view({}),
        text_view({"author": "me"}, body='{"a": 1}'),
        MessageView.from_kafka([("author", b"me")], b"true"),
    ],
)
@pytest.mark.parametrize("mode", ["steal", "mirror"])
def test_an_empty_filter_without_jq_matches_nothing(view: MessageView, mode: Any) -> None:
    flt = compile_filter(FilterSpec(message_filter={}, mode=mode))
    assert flt.empty
    assert not flt.matches(view)
    assert not compile_filter(FilterSpec()).matches(view)


# --- jq_filter ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "body", "expected"),
    [
        (".vip", '{"vip": true}', True),
        (".vip", '{"vip": false}', False),
        (".vip", '{"vip": null}', False),
        (".vip", "{}", False),  # missing key -> null
        (".n", '{"n": 0}', True),  # jq truthiness: only false and null are falsy
        (".s", '{"s": ""}', True),
        (".l", '{"l": []}', True),
        (".o", '{"o": {}}', True),
        (".n > 2", '{"n": 3}', True),
        (".n > 2", '{"n": 1}', False),
        ('.user | test("^ali")', '{"user": "alice"}', True),
        ("empty", '{"a": 1}', False),
        ('select(.kind == "order")', '{"kind": "order"}', True),
        ('select(.kind == "order")', '{"kind": "refund"}', False),
        (".[] | select(. == 2)", "[1, 2, 3]", True),
        (".", "true", True),
        (".", "false", False),
        (".", "null", False),
        (".", "0", True),
        ("false, true", "{}", False),  # the first result decides
        ("true, false", "{}", True),
        ('true, error("later")', "{}", True),  # results after the first are never run
        ("repeat(true)", "{}", True),  # an endless stream is not collected
        ("range(1e12) | true", "{}", True),
    ],
)
def test_jq_filter_matches_when_its_first_result_is_truthy(
    program: str, body: str, expected: bool
) -> None:
    assert matches({}, text_view({}, body=body), jq_filter=program) is expected
    assert matches({}, MessageView.from_kafka([], body.encode()), jq_filter=program) is expected


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "{",
        "",
        "{'single': 'quotes'}",
        '{"a": 1} {"a": 2}',
        None,
        "[" * 100_000 + "]" * 100_000,  # nesting deeper than the parser's recursion limit
    ],
    ids=["text", "truncated", "empty", "single-quotes", "two-documents", "no-body", "too-deep"],
)
def test_a_body_that_is_not_json_never_matches_a_jq_filter(body: str | None) -> None:
    assert not matches({}, text_view({}, body=body), jq_filter="true")
    raw = body.encode() if body is not None else None
    assert not matches({}, MessageView.from_kafka([], raw), jq_filter="true")


def test_a_kafka_body_that_is_not_utf8_never_matches_a_jq_filter() -> None:
    assert not matches({}, MessageView.from_kafka([], b'{"a": "\xff"}'), jq_filter="true")


@pytest.mark.parametrize(
    ("program", "body"),
    [
        ('.user | test("a")', '{"user": 5}'),
        (".a.b", '{"a": 5}'),
        (".[0]", '{"a": 1}'),
        ('error("boom")', "{}"),
        ("1 / 0", "{}"),
        (".n | tonumber > 0", '{"n": "x"}'),
    ],
)
def test_a_jq_runtime_error_means_no_match(program: str, body: str) -> None:
    assert not matches({}, text_view({}, body=body), jq_filter=program)


@pytest.mark.parametrize(
    ("attributes", "body", "expected"),
    [
        ({"author": "me"}, '{"vip": true}', True),
        ({"author": "me"}, '{"vip": false}', False),
        ({"author": "you"}, '{"vip": true}', False),
        ({}, '{"vip": true}', False),
        ({"author": "me"}, "not json", False),
        ({"author": "me"}, '{"vip": "yes"}', True),
    ],
)
def test_with_both_message_filter_and_jq_filter_both_must_match(
    attributes: dict[str, str], body: str, expected: bool
) -> None:
    assert matches({"author": "^me$"}, text_view(attributes, body=body), jq_filter=".vip") is (
        expected
    )


def test_the_body_is_parsed_once_per_message_whatever_the_number_of_jq_filters() -> None:
    view = text_view({}, body='{"n": 3}')
    first = view.json_body()
    assert matches({}, view, jq_filter=".n > 2")
    assert matches({}, view, jq_filter=".n < 4")
    assert view.json_body() is first


def test_a_jq_program_cannot_read_the_workers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    view = text_view({}, body='{"n": 1}')
    assert not matches({}, view, jq_filter='$ENV.AWS_SECRET_ACCESS_KEY == "s3cr3t"')
    assert not matches({}, view, jq_filter='env.AWS_SECRET_ACCESS_KEY == "s3cr3t"')
    # The program did run (an error would also mean no match): it sees an empty environment.
    assert matches({}, view, jq_filter="($ENV | length) == 0 and (env | length) == 0")


def test_a_jq_program_that_imports_a_module_is_refused_when_compiled() -> None:
    for program in ('import "secrets" as $s; .', '# note\n include "x"; .', "module {}; ."):
        with pytest.raises(FilterError, match="jq modules"):
            compile_filter(FilterSpec(jq_filter=program))
    assert matches({}, text_view({}, body='{"import": true}'), jq_filter=".import")


def test_a_jq_program_over_its_budget_counts_as_no_match_and_is_logged_once_per_filter() -> None:
    evaluator = shared_evaluator()
    endless = "last(range(1e12))"
    s1 = compile_filter(FilterSpec(jq_filter=endless), where="session 's1'", jq_budget=0.05)
    s2 = compile_filter(FilterSpec(jq_filter=endless), where="session 's2'", jq_budget=0.05)
    quick = compile_filter(FilterSpec(jq_filter=".n == 1"), where="session 'q'")
    starts = evaluator.starts
    with capture_logs() as logs:
        for _ in range(2):
            assert not s1.matches(text_view({}, body='{"n": 1}'))
            assert not s2.matches(text_view({}, body='{"n": 1}'))
            # The killed helper is replaced: the next program runs as usual.
            assert quick.matches(text_view({}, body='{"n": 1}'))
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [w["filter"] for w in warnings] == ["session 's1'", "session 's2'"]
    assert all("budget" in w["event"] for w in warnings)
    assert evaluator.starts >= starts + 4  # each timeout killed the helper


def test_one_body_sent_to_the_jq_helper_serves_every_program_of_that_message() -> None:
    first = text_view({}, body='{"n": 3}')
    second = text_view({}, body='{"n": 5}')
    assert matches({}, first, jq_filter=".n == 3")
    assert matches({}, first, jq_filter=".n < 4")
    assert matches({}, second, jq_filter=".n == 5")  # a new body is sent, not the cached one
    assert not matches({}, second, jq_filter=".n == 3")
    assert matches({}, MessageView.from_kafka([], b'{"n": 3}'), jq_filter=".n == 3")


# --- fancy regexes and the time budget ----------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("^(?!kube-probe)", "kube-probe/1.29", False),
        ("^(?!kube-probe)", "curl/8.5", True),
        ("^(?!kube-probe)", "", True),
        ("^(?=.*session)(?=.*42)", "session-42", True),
        ("^(?=.*session)(?=.*42)", "session-41", False),
        ("(?<=user-)alice", "user-alice", True),
        ("(?<=user-)alice", "admin-alice", False),
        ("(?<!admin-)alice$", "user-alice", True),
        ("(?<!admin-)alice$", "admin-alice", False),
        (r"(?<=id=\d+-)x", "id=12345-x", True),  # variable-length lookbehind
        (r"^(\w+)-\1$", "ab-ab", True),
        (r"^(\w+)-\1$", "ab-cd", False),
        (r"^(?P<w>\w+)=(?P=w)$", "k=k", True),
        (r"^a++b", "aaab", True),  # possessive
        (r"^(?>a+)ab", "aaab", False),  # atomic group
        (r"^\p{Lu}", "Émile", True),
    ],
)
def test_fancy_regexes_work(pattern: str, value: str, expected: bool) -> None:
    assert matches({"a": pattern}, text_view({"a": value})) is expected


PATHOLOGICAL = "^(a|aa)+$"
EVIL_VALUE = "a" * 60 + "b"


def test_a_pathological_regex_hits_the_time_budget_and_counts_as_no_match() -> None:
    flt = compile_filter(FilterSpec(message_filter={"a": PATHOLOGICAL}), budget=0.01)
    with capture_logs():
        assert not flt.matches(text_view({"a": EVIL_VALUE}))
        # The same filter still matches a harmless value afterwards.
        assert flt.matches(text_view({"a": "aaaa"}))


def test_a_regex_over_its_budget_is_logged_once_per_filter() -> None:
    slow = compile_filter(
        FilterSpec(message_filter={"a": PATHOLOGICAL}), where="session 's1'", budget=0.01
    )
    other = compile_filter(
        FilterSpec(message_filter={"a": PATHOLOGICAL}), where="session 's2'", budget=0.01
    )
    view = text_view({"a": EVIL_VALUE})
    with capture_logs() as logs:
        for _ in range(3):
            assert not slow.matches(view)
        assert not other.matches(view)
        assert not other.matches(view)
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [entry["filter"] for entry in warnings] == ["session 's1'", "session 's2'"]
    assert all("budget" in entry["event"] for entry in warnings)


# --- exact literals (the routing index's shortcut) ----------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "literals"),
    [
        ("^x$", {"x"}),
        ("^alice$", {"alice"}),
        ("^my session-1_2/3$", {"my session-1_2/3"}),
        ("^$", {""}),
        ("^(a|b)$", {"a", "b"}),
        ("^(?:a|b|c)$", {"a", "b", "c"}),
        ("^(beginner|intermediate)$", {"beginner", "intermediate"}),
        ("^(a|)$", {"a", ""}),
        ("^x", None),
        ("x$", None),
        ("x", None),
        ("^a.b$", None),
        ("^a\\.b$", None),
        (r"^\d$", None),
        ("^a|b$", None),
        ("^(a|b)c$", None),
        ("^(a)(b)$", None),
        ("^(a|(b))$", None),
        ("^(?i)a$", None),
        ("^(?i:a|b)$", None),
        ("^(?P<n>a)$", None),
        ("^a+$", None),
        ("^[ab]$", None),
        ("^a{2}$", None),
    ],
)
def test_exact_literals_are_recognized_only_for_plain_anchored_alternatives(
    pattern: str, literals: set[str] | None
) -> None:
    found = exact_literals(pattern)
    assert (None if found is None else set(found)) == literals


SHORTCUT_VALUES = ["\u212a", "\u017f", "\u212a\n", "K", "S", "s\n", "\u00e9", "\u00c9"]


@pytest.mark.parametrize("pattern", ["^x$", "^(x|y)$", "^$", "^(|x)$", "^(k|s)$", "^\u00e9$"])
@pytest.mark.parametrize(
    "value", ["x", "x\n", "x\n\n", "\nx", "xx", "", "\n", "y", "X", "X\n", *SHORTCUT_VALUES]
)
@pytest.mark.parametrize("sensitive", [False, True])
def test_exact_literal_shortcut_agrees_with_the_regex(
    pattern: str, value: str, sensitive: bool
) -> None:
    assert exact_literals(pattern) is not None
    flags = 0 if sensitive else regex.IGNORECASE
    expected = regex.search(pattern, value, flags) is not None
    written = "(?-i)" + pattern if sensitive else pattern
    assert matches({"a": written}, text_view({"a": value})) is expected


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("^my-session-", "my-session-"),
        ("^a", "a"),
        ("^", None),
        ("my-session-", None),
        ("^a.b", None),
        ("^a$", None),
        ("^(?i)a", None),
        ("^a\\-", None),
    ],
)
def test_literal_prefixes_are_recognized_only_without_metacharacters(
    pattern: str, prefix: str | None
) -> None:
    assert literal_prefix(pattern) == prefix


@pytest.mark.parametrize("pattern", ["^my-", "^x", "^ks", "^\u00e9"])
@pytest.mark.parametrize(
    "value",
    [
        "my-1",
        "my-",
        "xmy-",
        "\nmy-",
        "x",
        "",
        "MY-1",
        "y\nx",
        "KS",
        "\u212a\u017f",
        *SHORTCUT_VALUES,
    ],
)
@pytest.mark.parametrize("sensitive", [False, True])
def test_literal_prefix_shortcut_agrees_with_the_regex(
    pattern: str, value: str, sensitive: bool
) -> None:
    assert literal_prefix(pattern) is not None
    flags = 0 if sensitive else regex.IGNORECASE
    expected = regex.search(pattern, value, flags) is not None
    written = "(?-i)" + pattern if sensitive else pattern
    assert matches({"a": written}, text_view({"a": value})) is expected


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        (FilterSpec(message_filter={"author": "^(me"}), ["split.author", "'^(me'", "regex"]),
        (FilterSpec(message_filter={"author": "[z-a]"}), ["split.author", "regex"]),
        (FilterSpec(message_filter={"author": "a{99999999999}"}), ["split.author", "regex"]),
        (FilterSpec(message_filter={"ok": "^x$", "level": "*"}), ["split.level", "regex"]),
        (FilterSpec(jq_filter=".a |"), ["split", "jq_filter", "'.a |'"]),
        (FilterSpec(jq_filter="foo(1)"), ["jq_filter"]),
        (FilterSpec(jq_filter=""), ["jq_filter"]),
        (FilterSpec(jq_filter="   "), ["jq_filter"]),
        (FilterSpec(message_filter={"a": "x"}, mode="copy"), ["split", "queue_mode", "'copy'"]),  # type: ignore[arg-type]
        (FilterSpec(message_filter={"a": "x"}, mode="Mirror"), ["queue_mode"]),  # type: ignore[arg-type]
        (
            FilterSpec(message_filter={"author": "^me$", "Author": "^you$"}),
            ["split.Author", "case-insensitive"],
        ),
        (FilterSpec(message_filter={"level": 3}), ["split.level", "regex string", "int"]),  # type: ignore[dict-item]
        (FilterSpec(message_filter={"level": None}), ["split.level", "NoneType"]),  # type: ignore[dict-item]
        (FilterSpec(message_filter={"": "x"}), ["split", "non-empty"]),
        (FilterSpec(message_filter={3: "x"}), ["split", "non-empty"]),  # type: ignore[dict-item]
        (FilterSpec(message_filter=["^me$"]), ["split", "map"]),  # type: ignore[arg-type]
        (FilterSpec(jq_filter=3), ["split", "jq_filter", "int"]),  # type: ignore[arg-type]
    ],
)
def test_bad_filters_are_rejected_with_an_error_naming_the_field(
    spec: FilterSpec, fragments: list[str]
) -> None:
    with pytest.raises(FilterError) as excinfo:
        compile_filter(spec, where="split")
    for fragment in fragments:
        assert fragment in str(excinfo.value)


def test_a_valid_filter_compiles_with_its_mode_and_lower_cased_names() -> None:
    flt = compile_filter(
        FilterSpec(message_filter={"Author": "^me$", "x-Id": "1"}, jq_filter=".a", mode="mirror")
    )
    assert flt.mode == "mirror"
    assert flt.names == {"author", "x-id"}
    assert not flt.empty


def test_messages_without_attributes_or_headers_can_match_only_a_jq_filter() -> None:
    for view in (MessageView.from_sqs(None, '{"vip": true}'), MessageView.from_kafka(None, b"1")):
        assert view.attributes == {}
        assert not matches({"a": ""}, view)
        assert matches({}, view, jq_filter=".")
