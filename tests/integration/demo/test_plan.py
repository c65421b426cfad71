"""The demo's scenario and verdict counting (pure; the end-to-end run is test_demo.py)."""

from __future__ import annotations

import pytest

from pymirror.demo.plan import PHASES, WORKLOAD, Delivery, batch, destination, verdict

pytestmark = pytest.mark.unit


def test_each_phase_sends_every_author_and_names_where_each_message_ends() -> None:
    routes = {
        phase: [(m.author, m.first, m.expected) for m in batch(phase, 1, 0)] for phase in PHASES
    }
    assert routes == {
        "both": [
            ("alice", "alice", "alice"),
            ("bob", "bob", "bob"),
            ("pair", "alice", "alice"),  # alice's session started first
            ("carol", WORKLOAD, WORKLOAD),
        ],
        "alice-leaves": [
            ("alice", "alice", WORKLOAD),  # her leftover: no other session matches
            ("bob", "bob", "bob"),
            ("pair", "alice", "bob"),  # her leftover, routed again to bob
            ("carol", WORKLOAD, WORKLOAD),
        ],
        "handed-back": [(a, WORKLOAD, WORKLOAD) for a in ("alice", "bob", "pair", "carol")],
    }
    assert [m.id for m in batch("both", 2, 5)] == [f"m{n}" for n in range(5, 13)]
    kafka = batch("both", 1, 0, "kafka")
    assert [(m.id, m.via) for m in kafka] == [(f"k{n}", "kafka") for n in range(4)]
    assert [m.expected for m in kafka] == [m.expected for m in batch("both", 1, 0)]
    assert destination("PAIR", ["bob"]) == "bob"  # case-insensitive, as the worker matches
    assert destination("pairs", ["alice", "bob"]) == WORKLOAD


def deliveries(*pairs: tuple[str, str]) -> list[Delivery]:
    return [Delivery(consumer, message_id, "sqs", "q") for consumer, message_id in pairs]


def test_the_verdict_counts_lost_duplicated_and_misrouted_messages() -> None:
    messages = batch("both", 1, 0)  # m0 alice, m1 bob, m2 alice (pair), m3 workload (carol)
    clean = verdict(
        messages,
        deliveries(("alice", "m0"), ("bob", "m1"), ("alice", "m2"), (WORKLOAD, "m3")),
        temporary_left=0,
        env_restored=True,
    )
    assert clean.ok
    assert clean.line() == (
        "verdict: sent=4 sent.sqs=4 delivered.workload=1 delivered.alice=2 delivered.bob=1 "
        "lost=0 duplicated=0 misrouted=0 temporary_left=0 env_restored=yes result=PASS"
    )
    both = [*messages, *batch("both", 1, 0, "kafka")]
    kafka_lost = verdict(
        both,
        deliveries(
            ("alice", "m0"), ("bob", "m1"), ("alice", "m2"), (WORKLOAD, "m3"), ("bob", "k1")
        ),
        temporary_left=0,
        env_restored=True,
    )
    assert (kafka_lost.sent, kafka_lost.lost) == ({"sqs": 4, "kafka": 4}, 3)
    assert kafka_lost.line().startswith("verdict: sent=8 sent.sqs=4 sent.kafka=4 ")
    assert not kafka_lost.ok
    wrong = verdict(
        messages,
        deliveries(("alice", "m0"), ("alice", "m0"), ("alice", "m1"), ("bob", "m9")),
        temporary_left=2,
        env_restored=False,
    )
    assert (wrong.lost, wrong.duplicated, wrong.misrouted) == (2, 1, 2)  # m1 + unknown m9
    assert wrong.delivered == {WORKLOAD: 0, "alice": 2, "bob": 0}
    assert wrong.problems == ["1 deliveries of messages the demo did not send"]
    assert not wrong.ok
    assert wrong.line().endswith("temporary_left=2 env_restored=no result=FAIL")


@pytest.mark.parametrize(
    ("temporary_left", "env_restored", "problems"),
    [(1, True, []), (0, False, []), (0, True, ["bob's pymirror exec exited 1"])],
)
def test_anything_left_unrestored_or_a_problem_fails_the_verdict(
    temporary_left: int, env_restored: bool, problems: list[str]
) -> None:
    messages = batch("handed-back", 1, 0)
    result = verdict(
        messages,
        deliveries(*((WORKLOAD, m.id) for m in messages)),
        temporary_left=temporary_left,
        env_restored=env_restored,
        problems=problems,
    )
    assert (result.lost, result.duplicated, result.misrouted) == (0, 0, 0)
    assert not result.ok
    assert result.line().endswith("result=FAIL")
