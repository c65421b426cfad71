"""Temporary queue/topic names (splitter/naming.py): every rule on name formats."""

from __future__ import annotations

import re

import pytest

from splitter.errors import NameFormatError
from splitter.naming import (
    DEFAULT_KAFKA_TOPIC_FORMAT,
    DEFAULT_SQS_QUEUE_FORMAT,
    Broker,
    NameFormat,
)

pytestmark = pytest.mark.unit

DIGITS = "0123456789"
ORIGINAL = {"sqs": "ORIGINAL_QUEUE", "kafka": "ORIGINAL_TOPIC"}
LIMIT = {"sqs": 80, "kafka": 249}
DEFAULTS = {"sqs": DEFAULT_SQS_QUEUE_FORMAT, "kafka": DEFAULT_KAFKA_TOPIC_FORMAT}
BROKERS: list[Broker] = ["sqs", "kafka"]


@pytest.mark.parametrize(
    ("broker", "original", "fallback", "name"),
    [
        ("sqs", "orders", True, "mirrord-tmp-0123456789-fallback-orders"),
        ("sqs", "orders", False, "mirrord-tmp-0123456789-orders"),
        ("sqs", "orders.fifo", True, "mirrord-tmp-0123456789-fallback-orders.fifo"),
        ("sqs", "orders.fifo", False, "mirrord-tmp-0123456789-orders.fifo"),
        ("kafka", "views", True, "mirrord-tmp-0123456789-fallback-views"),
        ("kafka", "views", False, "mirrord-tmp-0123456789-views"),
        ("kafka", "app.views_v2", False, "mirrord-tmp-0123456789-app.views_v2"),
    ],
)
def test_default_formats_render_fallback_and_session_names(
    broker: Broker, original: str, fallback: bool, name: str
) -> None:
    fmt = NameFormat(DEFAULTS[broker], broker)
    assert fmt.render(original, fallback=fallback, random_digits=DIGITS) == name


def test_variables_may_appear_anywhere_in_the_format() -> None:
    fmt = NameFormat("{{ORIGINAL_TOPIC}}.copy{{FALLBACK}}{{RANDOM}}", "kafka")
    assert fmt.render("t", fallback=True, random_digits=DIGITS) == "t.copy-fallback-0123456789"
    assert fmt.render("t", fallback=False, random_digits=DIGITS) == "t.copy-0123456789"


@pytest.mark.parametrize("broker", BROKERS)
@pytest.mark.parametrize("missing", ["RANDOM", "FALLBACK", "ORIGINAL"])
def test_a_format_missing_a_variable_is_rejected_naming_it(broker: Broker, missing: str) -> None:
    variable = ORIGINAL[broker] if missing == "ORIGINAL" else missing
    template = DEFAULTS[broker].replace("{{" + variable + "}}", "")
    with pytest.raises(NameFormatError, match=re.escape("lacks {{" + variable + "}}")):
        NameFormat(template, broker)


@pytest.mark.parametrize(
    ("template", "broker", "named"),
    [
        ("tmp-{{RANDOM}}{{FALLBACK}}{{ORIGINAL_TOPIC}}", "sqs", "{{ORIGINAL_TOPIC}}"),
        ("tmp-{{RANDOM}}{{FALLBACK}}{{ORIGINAL_QUEUE}}", "kafka", "{{ORIGINAL_QUEUE}}"),
        ("tmp-{{RANDOM}}{{FALLBACK}}{{ORIGINAL_QUEUE}}{{USER}}", "sqs", "{{USER}}"),
        ("tmp-{{random}}{{RANDOM}}{{FALLBACK}}{{ORIGINAL_QUEUE}}", "sqs", "{{random}}"),
        ("tmp-{{ RANDOM }}{{RANDOM}}{{FALLBACK}}{{ORIGINAL_QUEUE}}", "sqs", "{{ RANDOM }}"),
    ],
)
def test_an_unknown_variable_is_rejected_naming_it(
    template: str, broker: Broker, named: str
) -> None:
    with pytest.raises(NameFormatError, match=re.escape(named)):
        NameFormat(template, broker)


def test_a_variable_used_twice_is_rejected() -> None:
    with pytest.raises(NameFormatError, match="ORIGINAL_QUEUE more than once"):
        NameFormat("{{ORIGINAL_QUEUE}}-{{RANDOM}}{{FALLBACK}}{{ORIGINAL_QUEUE}}", "sqs")


@pytest.mark.parametrize(
    ("literal", "broker"),
    [
        ("tmp.", "sqs"),
        ("tmp/", "sqs"),
        ("tmp/", "kafka"),
        ("tmp ", "kafka"),
        ("tmp:", "kafka"),
        ("tmp{", "kafka"),
        ("tmp}", "sqs"),
        ("tmpé", "sqs"),
        ("tmpé", "kafka"),
    ],
)
def test_illegal_characters_in_the_format_are_rejected(literal: str, broker: Broker) -> None:
    with pytest.raises(NameFormatError, match="cannot hold"):
        NameFormat(literal + "{{RANDOM}}{{FALLBACK}}{{" + ORIGINAL[broker] + "}}", broker)


@pytest.mark.parametrize("literal", ["tmp_", "TMP-", "t.m.p", "x_Y-0."])
def test_kafka_formats_may_hold_dots_underscores_and_dashes(literal: str) -> None:
    NameFormat(literal + "{{RANDOM}}{{FALLBACK}}{{ORIGINAL_TOPIC}}", "kafka")


@pytest.mark.parametrize(
    ("broker", "original", "legal"),
    [
        ("sqs", "my.queue", "my-queue"),
        ("sqs", "my queue/é", "my-queue--"),
        ("sqs", "my.queue.fifo", "my-queue.fifo"),
        ("sqs", "Orders_V2-x", "Orders_V2-x"),
        ("kafka", "my.topic_v2-x", "my.topic_v2-x"),
        ("kafka", "my topic/é:1", "my-topic---1"),
        ("kafka", "orders.fifo", "orders.fifo"),
    ],
)
def test_rendered_names_are_made_legal_for_the_broker(
    broker: Broker, original: str, legal: str
) -> None:
    name = NameFormat(DEFAULTS[broker], broker).render(
        original, fallback=False, random_digits=DIGITS
    )
    assert name == f"mirrord-tmp-{DIGITS}-{legal}"


@pytest.mark.parametrize("broker", BROKERS)
@pytest.mark.parametrize("fallback", [True, False])
@pytest.mark.parametrize("length", [1, 40, 62, 63, 64, 80, 200, 239, 240, 249, 250, 1000])
def test_long_originals_are_cut_from_their_end_never_the_random_part(
    broker: Broker, fallback: bool, length: int
) -> None:
    original = "".join(chr(ord("a") + i % 26) for i in range(length))
    name = NameFormat(DEFAULTS[broker], broker).render(
        original, fallback=fallback, random_digits=DIGITS
    )
    prefix = f"mirrord-tmp-{DIGITS}{'-fallback-' if fallback else '-'}"
    assert name.startswith(prefix)
    kept = name.removeprefix(prefix)
    assert original.startswith(kept)
    assert len(name) == min(LIMIT[broker], len(prefix) + length)


@pytest.mark.parametrize("fallback", [True, False])
@pytest.mark.parametrize("length", [10, 43, 48, 100])
def test_sqs_fifo_names_keep_their_suffix_within_80_characters(fallback: bool, length: int) -> None:
    original = "q" * length + ".fifo"
    name = NameFormat(DEFAULT_SQS_QUEUE_FORMAT, "sqs").render(
        original, fallback=fallback, random_digits=DIGITS
    )
    assert name.endswith("q.fifo")
    assert DIGITS in name
    assert len(name) <= 80
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.fifo", name)


@pytest.mark.parametrize("broker", BROKERS)
def test_random_parts_are_ten_fresh_digits(broker: Broker) -> None:
    fmt = NameFormat("{{RANDOM}}{{FALLBACK}}{{" + ORIGINAL[broker] + "}}", broker)
    parts = {fmt.render("x", fallback=False)[:10] for _ in range(50)}
    assert all(re.fullmatch(r"[0-9]{10}", part) for part in parts)
    assert len(parts) > 45
    name = fmt.render("x", fallback=True)
    assert re.fullmatch(r"[0-9]{10}-fallback-x", name)


@pytest.mark.parametrize(
    "digits", ["123", "01234567890", "012345678x", "\uff10" * 10, "\u00b2" * 10]
)
def test_a_given_random_part_must_be_ten_ascii_digits(digits: str) -> None:
    with pytest.raises(NameFormatError, match="10 digits"):
        NameFormat(DEFAULT_KAFKA_TOPIC_FORMAT, "kafka").render(
            "t", fallback=False, random_digits=digits
        )


@pytest.mark.parametrize(
    ("template", "broker", "original"),
    [
        # 59 fixed characters + 10 digits + "-fallback-" = 79: one left, not enough for ".fifo".
        ("x" * 59 + "{{RANDOM}}{{FALLBACK}}{{ORIGINAL_QUEUE}}", "sqs", "q.fifo"),
        ("x" * 55 + "{{RANDOM}}{{FALLBACK}}{{ORIGINAL_QUEUE}}", "sqs", "q.fifo"),
    ],
)
def test_an_original_that_cannot_fit_raises_from_check_before_anything(
    template: str, broker: Broker, original: str
) -> None:
    fmt = NameFormat(template, broker)
    with pytest.raises(NameFormatError, match=f"cannot fit {LIMIT[broker]} characters"):
        fmt.check(original)
    with pytest.raises(NameFormatError, match="cannot fit"):
        fmt.render(original, fallback=False, random_digits=DIGITS)


@pytest.mark.parametrize("broker", BROKERS)
def test_a_format_that_leaves_no_room_for_the_original_is_rejected_when_built(
    broker: Broker,
) -> None:
    fixed = LIMIT[broker] - 20  # + 10 digits + "-fallback-" = the whole limit
    with pytest.raises(NameFormatError, match="cannot fit"):
        NameFormat("x" * fixed + "{{RANDOM}}{{FALLBACK}}{{" + ORIGINAL[broker] + "}}", broker)
    NameFormat("x" * (fixed - 1) + "{{RANDOM}}{{FALLBACK}}{{" + ORIGINAL[broker] + "}}", broker)


def test_a_tight_format_still_renders_a_one_character_original() -> None:
    fmt = NameFormat("x" * 228 + "{{RANDOM}}{{FALLBACK}}{{ORIGINAL_TOPIC}}", "kafka")
    fmt.check("abc")
    name = fmt.render("abc", fallback=True, random_digits=DIGITS)
    assert name == "x" * 228 + DIGITS + "-fallback-" + "a"
    assert len(name) == 249
    assert fmt.render("abc", fallback=False, random_digits=DIGITS).endswith("-abc")


@pytest.mark.parametrize(("broker", "original"), [("sqs", ""), ("sqs", ".fifo"), ("kafka", "")])
def test_an_empty_original_name_is_rejected(broker: Broker, original: str) -> None:
    fmt = NameFormat(DEFAULTS[broker], broker)
    with pytest.raises(NameFormatError, match="empty"):
        fmt.check(original)


def test_an_unknown_broker_is_rejected() -> None:
    with pytest.raises(NameFormatError, match="'rabbitmq'"):
        NameFormat(DEFAULT_SQS_QUEUE_FORMAT, "rabbitmq")  # type: ignore[arg-type]
