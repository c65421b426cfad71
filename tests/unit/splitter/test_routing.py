"""Routing (splitter/routing.py): session order, mirror copies, fallback, and the index.

The index is checked against a brute-force reference written here from the routing
rules (docs/how-it-works.md) alone: walk every session in sequence order and run each regex with
``regex.search`` (case-insensitive, as the rules say) on every decoded header value.
"""

from __future__ import annotations

import functools
import itertools
import json
import random
from collections.abc import Sequence
from typing import Any

import jq
import pytest
import regex
from structlog.testing import capture_logs

from splitter.errors import FilterError
from splitter.filters import FilterSpec, MessageView, compile_filter
from splitter.routing import Delivery, Router, SessionRoute

pytestmark = pytest.mark.unit

FALLBACK = "fallback-topic"


def session(
    session_id: str,
    sequence: int,
    message_filter: dict[str, str] | None = None,
    *,
    mode: Any = "steal",
    jq_filter: str | None = None,
) -> SessionRoute:
    spec = FilterSpec(message_filter=message_filter or {}, jq_filter=jq_filter, mode=mode)
    flt = compile_filter(spec, where=f"session {session_id!r}")
    return SessionRoute(session_id, sequence, flt, f"tmp-{session_id}")


def to(*session_ids: str | None) -> list[Delivery]:
    return [Delivery(FALLBACK, None) if s is None else Delivery(f"tmp-{s}", s) for s in session_ids]


def kafka(body: bytes | None = None, /, **headers: str) -> MessageView:
    return MessageView.from_kafka([(k, v.encode()) for k, v in headers.items()], body)


# --- order, mirror, fallback ------------------------------------------------------------------

ORDERED = [
    session("alice", 10, {"user": "^alice$"}),
    session("anyone", 20, {"user": "."}),
    session("bob", 30, {"user": "^bob$"}),
]


@pytest.mark.parametrize("routes", list(itertools.permutations(ORDERED)))
@pytest.mark.parametrize(
    ("user", "owner"),
    [("alice", "alice"), ("bob", "anyone"), ("carol", "anyone"), ("", None)],
)
def test_the_first_matching_session_in_sequence_order_wins_whatever_order_routes_are_given(
    routes: Sequence[SessionRoute], user: str, owner: str | None
) -> None:
    router = Router(routes, FALLBACK)
    assert [r.session_id for r in router.sessions] == ["alice", "anyone", "bob"]
    assert router.route(kafka(user=user)) == to(owner)


def test_sequence_numbers_order_sessions_not_their_ids_or_insertion() -> None:
    router = Router(
        [session("zed", 2, {"user": "x"}), session("amy", 1_000_000, {"user": "x"})], FALLBACK
    )
    assert router.route(kafka(user="x")) == to("zed")
    router = Router([session("zed", 2, {"user": "x"}), session("amy", -5, {"user": "x"})], FALLBACK)
    assert router.route(kafka(user="x")) == to("amy")


@pytest.mark.parametrize(
    ("routes", "headers", "expected"),
    [
        (
            [session("m", 1, {"user": "^a"}, mode="mirror"), session("s", 2, {"user": "^a"})],
            {"user": "alice"},
            to("m", "s"),
        ),
        (
            [session("m", 1, {"user": "^a"}, mode="mirror")],
            {"user": "alice"},
            to("m", None),
        ),
        (
            [session("s", 1, {"user": "^a"}), session("m", 2, {"user": "^a"}, mode="mirror")],
            {"user": "alice"},
            to("s"),
        ),
        (
            [
                session("m1", 1, {"user": "^alice$"}, mode="mirror"),
                session("m2", 2, {"user": "^a"}, mode="mirror"),
                session("s", 3, {"user": "^b"}),
            ],
            {"user": "alice"},
            to("m1", "m2", None),
        ),
        (
            [
                session("m1", 1, {"user": "^alice$"}, mode="mirror"),
                session("s1", 2, {"user": "^bob$"}),
                session("m2", 3, {"user": "^a"}, mode="mirror"),
                session("s2", 4, {"user": "e$"}),
                session("s3", 5, {"user": "."}),
            ],
            {"user": "alice"},
            to("m1", "m2", "s2"),
        ),
        (
            [session("m", 1, {"user": "^bob$"}, mode="mirror"), session("s", 2, {"user": "^a"})],
            {"user": "alice"},
            to("s"),
        ),
    ],
    ids=[
        "mirror-then-owner",
        "mirror-then-fallback",
        "mirror-after-owner-gets-nothing",
        "two-mirrors-then-fallback",
        "mirrors-interleaved",
        "unmatched-mirror-gets-nothing",
    ],
)
def test_mirror_sessions_get_a_copy_and_matching_continues(
    routes: list[SessionRoute], headers: dict[str, str], expected: list[Delivery]
) -> None:
    assert Router(routes, FALLBACK).route(kafka(**headers)) == expected


@pytest.mark.parametrize(
    "headers",
    [{}, {"user": "carol"}, {"other": "alice"}, {"user": "alice2"}, {"user": "xalice"}],
)
def test_a_message_no_session_matches_goes_to_the_fallback(headers: dict[str, str]) -> None:
    router = Router(
        [session("a", 1, {"user": "^alice$"}), session("b", 2, {"user": "^bob"})], FALLBACK
    )
    assert router.route(kafka(**headers)) == to(None)


def test_without_sessions_every_message_goes_to_the_fallback() -> None:
    router = Router([], FALLBACK)
    assert router.sessions == ()
    assert router.route(kafka(user="alice")) == to(None)


def test_a_session_with_an_empty_filter_never_gets_a_message() -> None:
    router = Router(
        [session("empty", 1, {}), session("empty-mirror", 2, {}, mode="mirror")], FALLBACK
    )
    assert router.route(kafka(b'{"a": 1}', user="alice")) == to(None)


def test_a_jq_only_session_is_considered_for_every_message() -> None:
    router = Router(
        [session("vip", 1, jq_filter=".vip"), session("alice", 2, {"user": "^alice$"})], FALLBACK
    )
    assert router.route(kafka(b'{"vip": true}')) == to("vip")
    assert router.route(kafka(b'{"vip": true}', user="alice")) == to("vip")
    assert router.route(kafka(b'{"vip": false}', user="alice")) == to("alice")
    assert router.route(kafka(b"not json", user="alice")) == to("alice")


def test_a_session_needing_a_header_and_a_jq_result_gets_only_messages_with_both() -> None:
    router = Router([session("s", 1, {"user": "^alice$"}, jq_filter=".vip")], FALLBACK)
    assert router.route(kafka(b'{"vip": true}', user="alice")) == to("s")
    assert router.route(kafka(b'{"vip": true}', user="bob")) == to(None)
    assert router.route(kafka(b'{"vip": false}', user="alice")) == to(None)


def test_sessions_sharing_a_literal_are_walked_in_sequence_order() -> None:
    router = Router(
        [
            session("late", 3, {"user": "^alice$"}),
            session("mirror", 1, {"user": "^(alice|bob)$"}, mode="mirror"),
            session("early", 2, {"user": "^alice$", "level": "^high$"}),
        ],
        FALLBACK,
    )
    assert router.route(kafka(user="alice", level="high")) == to("mirror", "early")
    assert router.route(kafka(user="alice", level="low")) == to("mirror", "late")
    assert router.route(kafka(user="bob")) == to("mirror", None)


def test_a_literal_filter_matches_a_value_with_a_trailing_newline_like_the_regex() -> None:
    router = Router(
        [session("a", 1, {"user": "^alice$"}), session("b", 2, {"u2": "^(x|y)$"})], FALLBACK
    )
    assert router.route(kafka(user="alice\n")) == to("a")
    assert router.route(kafka(u2="y\n")) == to("b")
    assert router.route(kafka(user="alice\n\n")) == to(None)


def test_literal_and_prefix_sessions_are_found_whatever_the_case_of_the_value() -> None:
    router = Router(
        [
            session("exact", 1, {"user": "^Alice$"}),
            session("either", 2, {"user": "^(bob|CAROL)$"}),
            session("prefix", 3, {"trace": "^My-Session-"}),
        ],
        FALLBACK,
    )
    assert router.route(kafka(user="aLiCe")) == to("exact")
    assert router.route(kafka(user="carol")) == to("either")
    assert router.route(kafka(user="BOB\n")) == to("either")
    assert router.route(kafka(trace="MY-SESSION-42")) == to("prefix")
    assert router.route(kafka(user="alicia", trace="my-sess")) == to(None)


def test_a_non_ascii_value_that_folds_to_a_literal_still_reaches_its_session() -> None:
    # KELVIN SIGN and LONG S fold to "k" and "s": str.lower() keeps them, the regex does not.
    router = Router(
        [session("kay", 1, {"user": "^k$"}), session("sk", 2, {"trace": "^sk"})], FALLBACK
    )
    assert router.route(kafka(user="\u212a")) == to("kay")
    assert router.route(kafka(trace="\u017f\u212a-1")) == to("sk")
    assert router.route(kafka(user="\u00e9")) == to(None)


def test_a_case_sensitive_pattern_is_indexed_as_written() -> None:
    router = Router(
        [
            session("upper", 1, {"user": "(?-i)^ALICE$"}),
            session("lower", 2, {"user": "(?-i)^(alice|bob)$"}),
            session("prefix", 3, {"trace": "(?-i)^My-"}),
        ],
        FALLBACK,
    )
    assert router.route(kafka(user="ALICE")) == to("upper")
    assert router.route(kafka(user="alice")) == to("lower")
    assert router.route(kafka(user="Alice")) == to(None)
    assert router.route(kafka(user="BOB")) == to(None)
    assert router.route(kafka(trace="My-1")) == to("prefix")
    assert router.route(kafka(trace="my-1")) == to(None)


def test_a_repeated_header_with_the_same_value_routes_one_copy() -> None:
    router = Router([session("m", 1, {"tag": "^a$"}, mode="mirror")], FALLBACK)
    view = MessageView.from_kafka([("tag", b"a"), ("TAG", b"a"), ("tag", b"a\n")], None)
    assert router.route(view) == to("m", None)


def test_duplicate_sequences_are_rejected_naming_both_sessions() -> None:
    with pytest.raises(FilterError, match=r"'a'.*'b'.*sequence 7"):
        Router(
            [session("a", 7, {"x": "1"}), session("c", 1, {"x": "1"}), session("b", 7, {"x": "1"})],
            FALLBACK,
        )


def test_changing_the_session_set_changes_routing_for_the_next_message() -> None:
    alice = session("alice", 1, {"user": "^alice$"})
    everyone = session("everyone", 2, {"user": "."})
    view = kafka(user="alice")
    assert Router([everyone], FALLBACK).route(view) == to("everyone")
    assert Router([everyone, alice], FALLBACK).route(view) == to("alice")
    assert Router([alice], FALLBACK).route(kafka(user="bob")) == to(None)


def test_a_returned_target_list_can_be_changed_without_changing_the_router() -> None:
    router = Router([session("a", 1, {"user": "^alice$"})], FALLBACK)
    router.route(kafka(user="bob")).append(Delivery("junk", "junk"))
    router.route(kafka(user="alice")).clear()
    assert router.route(kafka(user="bob")) == to(None)
    assert router.route(kafka(user="alice")) == to("a")


# --- the index against a brute-force walk ----------------------------------------------------

NAMES = ["user", "User", "LEVEL", "level", "source", "x-id", "tag"]
VALUES = [
    "alice",
    "bob",
    "a",
    "b",
    "x",
    "",
    "alice\n",
    "x\n",
    "a\n\n",
    "\nx",
    "a\nb",
    "kube-probe/1.29",
    "curl/8",
    "my-session-1",
    "my-session-22",
    "ab-ab",
    "ab-cd",
    "user-alice",
    "admin-alice",
    "ALICE",
    "a\r\n",
    "x\u2028",
    "alice\x85",
    "Alice",
    "BOB",
    "My-Session-1",
    "\u212a",  # KELVIN SIGN: case-insensitively a "k"
    "\u017f",  # LATIN SMALL LETTER LONG S: case-insensitively an "s"
    "\u212aube-probe",
    "\u017f\u212a",
    "\u00c9t\u00e9",
    "\u00e9t\u00e9",
]
LITERALS = [
    "alice",
    "bob",
    "a",
    "b",
    "x",
    "",
    "ab-ab",
    "my-session-1",
    "ALICE",
    "Bob",
    "k",
    "s",
    "sk",
]
FANCY = [
    "^(?!kube-probe)",
    "(?<=user-)alice",
    "(?<!admin-)alice$",
    r"^(\w+)-\1$",
    "^my-session-",
    "^my-",
    "^a",
    "b$",
    "alice",
    "^$",
    "$",
    "",
    r"^\w$",
    "(?i)^alice$",
    "^a.b$",
    "^(alice|bob)",
    "^(a|b)c$",
    r"^x\Z",
    "^K",
    "^kube-",
    "^My-",
    "(?-i)^My-",
    "(?-i)^alice$",
    "(?-i)^(ALICE|bob)$",
    "(?-i)alice",
    "^\u00e9t\u00e9$",
    "^\u00c9",
]
JQ = [".vip", ".n > 2", ".missing", '.user | test("a")', "empty", ".[0]", "true", "null"]
BODIES: list[bytes | None] = [
    b'{"vip": true, "n": 3, "user": "alice"}',
    b'{"vip": false, "n": 1, "user": "bob"}',
    b'{"user": 5}',
    b"[1, 2]",
    b"not json",
    b"null",
    b"",
    None,
]


def random_pattern(rng: random.Random) -> str:
    kind = rng.random()
    sensitive = "(?-i)" if rng.random() < 0.25 else ""
    if kind < 0.35:
        return f"{sensitive}^{rng.choice(LITERALS)}$"
    if kind < 0.6:
        alts = rng.sample(LITERALS, rng.randint(1, 4))
        exact = f"^({'|'.join(alts)})$" if rng.random() < 0.5 else f"^(?:{'|'.join(alts)})$"
        return sensitive + exact
    return rng.choice(FANCY)


def random_route(rng: random.Random, session_id: str, sequence: int) -> SessionRoute:
    kind = rng.random()
    message_filter: dict[str, str] = {}
    jq_filter = None
    if kind < 0.1:
        jq_filter = rng.choice(JQ)  # jq only
    elif kind < 0.15:
        pass  # empty: matches nothing
    else:
        lowered = rng.sample(sorted({n.lower() for n in NAMES}), rng.choice([1, 1, 1, 2, 2, 3]))
        for name in lowered:
            spelled = rng.choice([n for n in NAMES if n.lower() == name] + [name.upper()])
            message_filter[spelled] = random_pattern(rng)
        if rng.random() < 0.1:
            jq_filter = rng.choice(JQ)
    mode = "mirror" if rng.random() < 0.25 else "steal"
    return session(session_id, sequence, message_filter, mode=mode, jq_filter=jq_filter)


def random_headers(rng: random.Random) -> list[tuple[str, bytes | None]]:
    headers: list[tuple[str, bytes | None]] = []
    for _ in range(rng.randint(0, 5)):
        roll = rng.random()
        if roll < 0.08:
            raw: bytes | None = b"\xff" + rng.choice(VALUES).encode()
        elif roll < 0.1:
            raw = None
        else:
            raw = rng.choice(VALUES).encode()
        headers.append((rng.choice(NAMES), raw))
    return headers


@functools.cache
def jq_program(program: str) -> Any:
    return jq.compile(program)


def reference_route(
    routes: Sequence[SessionRoute], headers: list[tuple[str, bytes | None]], body: bytes | None
) -> list[Delivery]:
    """The routing rules read literally, with no index and no shortcut."""
    values: dict[str, list[str]] = {}
    for name, raw in headers:
        try:
            text = raw.decode("utf-8") if raw is not None else None
        except UnicodeDecodeError:
            text = None
        if text is not None:
            values.setdefault(name.lower(), []).append(text)

    def jq_ok(program: str) -> bool:
        try:
            document = json.loads(body) if body is not None else None
        except ValueError:
            return False
        if body is None:
            return False
        try:
            first = next(iter(jq_program(program).input_value(document)), None)
        except ValueError:
            return False
        return first is not None and first is not False

    targets = []
    for route in sorted(routes, key=lambda r: r.sequence):
        spec = route.filter.spec
        if not spec.message_filter and spec.jq_filter is None:
            continue
        ok = all(
            any(regex.search(pattern, v, regex.IGNORECASE) for v in values.get(name.lower(), []))
            for name, pattern in spec.message_filter.items()
        )
        if ok and spec.jq_filter is not None:
            ok = jq_ok(spec.jq_filter)
        if ok:
            targets.append(Delivery(route.destination, route.session_id))
            if spec.mode == "steal":
                return targets
    return [*targets, Delivery(FALLBACK, None)]


@pytest.mark.parametrize("seed", range(12))
def test_the_routing_index_gives_the_same_result_as_a_walk_over_every_session(seed: int) -> None:
    rng = random.Random(seed)
    hits = 0
    for _ in range(40):
        count = rng.choice([1, 2, 5, 10, 30])
        sequences = rng.sample(range(1000), count)
        routes = [random_route(rng, f"s{i}", seq) for i, seq in enumerate(sequences)]
        rng.shuffle(routes)
        router = Router(routes, FALLBACK)
        for _ in range(40):
            headers = random_headers(rng)
            body = rng.choice(BODIES)
            expected = reference_route(routes, headers, body)
            got = router.route(MessageView.from_kafka(headers, body))
            assert got == expected, (routes, headers, body)
            hits += expected[-1].session_id is not None or len(expected) > 1
    assert hits > 100  # the generator produces plenty of matches, not only fallbacks


def test_a_session_whose_regex_runs_over_budget_is_skipped_and_later_sessions_still_match() -> None:
    slow = SessionRoute(
        "slow",
        1,
        compile_filter(FilterSpec(message_filter={"user": "^(a|aa)+$"}), budget=0.01),
        "tmp-slow",
    )
    router = Router([slow, session("any", 2, {"user": "b$"})], FALLBACK)
    with capture_logs() as logs:
        assert router.route(kafka(user="a" * 60 + "b")) == to("any")
        assert router.route(kafka(user="a" * 60 + "b")) == to("any")
    assert len([entry for entry in logs if entry["log_level"] == "warning"]) == 1


def test_router_names_list_what_filters_read_and_limit_kafka_decoding() -> None:
    routes = [
        SessionRoute("a", 1, compile_filter(FilterSpec({"User": "^a$", "team": "x"})), "qa"),
        SessionRoute("b", 2, compile_filter(FilterSpec(jq_filter=".n")), "qb"),
    ]
    router = Router(routes, "fb")
    assert router.names == frozenset({"user", "team"})
    headers = [("USER", b"a"), ("team", b"x"), ("trace", b"t"), ("blob", b"\xff")]
    view = MessageView.from_kafka(headers, b"{}", router.names)
    assert view.attributes == {"user": ("a",), "team": ("x",)}
    assert router.route(view) == router.route(MessageView.from_kafka(headers, b"{}"))


def random_exact_route(
    rng: random.Random, session_id: str, sequence: int, name: str
) -> SessionRoute:
    """One exact-literal pair on ``name``: the sessions of the routing table's common case."""
    alts = rng.sample(LITERALS, rng.randint(1, 3))
    pattern = f"^{alts[0]}$" if len(alts) == 1 else f"^({'|'.join(alts)})$"
    mode = "mirror" if rng.random() < 0.25 else "steal"
    return session(session_id, sequence, {name: pattern}, mode=mode)


@pytest.mark.parametrize("sensitive", ["", "(?-i)"])
@pytest.mark.parametrize("seed", range(6))
def test_the_exact_table_of_the_common_case_routes_like_a_walk_over_every_session(
    seed: int, sensitive: str
) -> None:
    rng = random.Random(seed)
    hits = 0
    for _ in range(30):
        count = rng.choice([1, 2, 5, 10, 30])
        sequences = rng.sample(range(1000), count)
        routes = [
            random_exact_route(rng, f"s{i}", seq, rng.choice(["user", "User", "USER"]))
            for i, seq in enumerate(sequences)
        ]
        if sensitive:
            routes = [
                session(
                    r.session_id,
                    r.sequence,
                    {n: sensitive + p for n, p in r.filter.spec.message_filter.items()},
                    mode=r.filter.mode,
                )
                for r in routes
            ]
        if rng.random() < 0.2:
            routes.append(session("never", 2000))  # an empty filter stays out of the table
        router = Router(routes, FALLBACK)
        assert router._exact is not None  # the case under test
        for _ in range(60):
            headers = [(rng.choice(["user", "User", "x-id"]), rng.choice(VALUES).encode())]
            if rng.random() < 0.2:
                headers.append(("user", rng.choice(VALUES).encode()))  # repeated: the walk
            expected = reference_route(routes, headers, None)
            assert router.route(MessageView.from_kafka(headers, None)) == expected, (
                routes,
                headers,
            )
            hits += expected[-1].session_id is not None or len(expected) > 1
    assert hits > 100


@pytest.mark.parametrize(
    "routes",
    [
        [session("a", 1, {"user": "^a$"}), session("b", 2, {"team": "^b$"})],
        [session("a", 1, {"user": "^a$"}), session("b", 2, {"user": "(?-i)^b$"})],
        [session("a", 1, {"user": "^a$"}), session("b", 2, {"user": "^b"})],
        [session("a", 1, {"user": "^a$", "team": "^t$"})],
        [session("a", 1, {"user": "^a$"}, jq_filter=".vip")],
        [session("a", 1, {"user": "^a$"}), session("j", 2, jq_filter=".vip")],
    ],
    ids=["two-names", "two-case-rules", "a-prefix", "two-pairs", "pair-and-jq", "jq-only"],
)
def test_routers_outside_the_common_case_have_no_exact_table(routes: list[SessionRoute]) -> None:
    assert Router(routes, FALLBACK)._exact is None
