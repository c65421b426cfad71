"""The session switch (splitter/switching.py): which sessions end, which changes are refused.

A session is its id and its destination; a refused change leaves everything as it was;
an end that is still waiting is not queued twice, and the worker can tell that an ended
session was listed again before it deleted the session's queue.
"""

from __future__ import annotations

import pytest

from splitter.errors import FilterError
from splitter.filters import FilterSpec, compile_filter
from splitter.routing import SessionRoute
from splitter.switching import SessionSwitch

pytestmark = pytest.mark.unit

FALLBACK = "q-fallback"
ORIGINAL = "q-original"


def route(session_id: str, sequence: int, destination: str | None = None) -> SessionRoute:
    flt = compile_filter(FilterSpec(message_filter={"user": f"^{session_id}$"}), where="test")
    return SessionRoute(session_id, sequence, flt, destination or f"q-{session_id}")


def ended(switch: SessionSwitch) -> list[tuple[str, str]]:
    """The ends waiting for the worker, taken from the queue (as the worker does)."""
    out = []
    while not switch._ended.empty():
        r = switch._ended.get_nowait()
        switch._ended.task_done()
        out.append((r.session_id, r.destination))
    return out


def routed(switch: SessionSwitch) -> list[tuple[str, str]]:
    return [(r.session_id, r.destination) for r in switch.router.sessions]


def test_a_session_whose_destination_changes_ends_on_its_old_queue_and_routes_to_the_new() -> None:
    switch = SessionSwitch([route("alice", 1, "q-1")], FALLBACK, original=ORIGINAL)
    switch.set_routes([route("alice", 1, "q-2")])
    assert routed(switch) == [("alice", "q-2")]
    assert ended(switch) == [("alice", "q-1")]  # the old queue is drained and deleted, not leaked
    assert not switch._hand_back.is_set()


def test_a_session_listed_again_before_its_end_ran_keeps_its_queue() -> None:
    alice, bob = route("alice", 1), route("bob", 2)
    switch = SessionSwitch([alice, bob], FALLBACK, original=ORIGINAL)
    switch.set_routes([bob])
    assert switch.end_wanted(alice)
    switch.set_routes([bob, alice])  # back before the worker took the end
    assert not switch.end_wanted(alice)  # the worker skips the end: the queue is alice's again
    switch.set_routes([bob])  # and gone again: still one end
    assert switch.end_wanted(alice)
    assert ended(switch) == [("alice", "q-alice")]


def test_a_session_listed_again_while_its_end_runs_tells_the_worker_to_keep_the_queue() -> None:
    alice, bob = route("alice", 1), route("bob", 2)
    switch = SessionSwitch([alice, bob], FALLBACK)
    switch.set_routes([bob])
    taken = switch._ended.get_nowait()  # the worker started ending alice
    switch.set_routes([bob, alice])
    assert not switch.end_wanted(taken)  # asked right before deleting: keep it
    switch._ended.task_done()
    assert ended(switch) == []


def test_a_queue_taken_over_by_another_session_is_not_ended() -> None:
    switch = SessionSwitch([route("alice", 1, "q-shared")], FALLBACK)
    switch.set_routes([route("carol", 3, "q-shared")])
    assert routed(switch) == [("carol", "q-shared")]
    assert ended(switch) == []


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ([route("bob", 2, FALLBACK)], "is the fallback"),
        ([route("bob", 2, ORIGINAL)], "is the original"),
        ([route("bob", 2), route("bob", 3, "q-other")], "listed twice"),
        ([route("bob", 2, "q-x"), route("carol", 3, "q-x")], "share the destination"),
        ([route("bob", 2), route("carol", 2)], "share sequence 2"),
    ],
)
def test_a_change_that_cannot_be_routed_by_is_refused_and_nothing_changes(
    routes: list[SessionRoute], message: str
) -> None:
    alice = route("alice", 1)
    switch = SessionSwitch([alice], FALLBACK, original=ORIGINAL)
    before = switch.router
    with pytest.raises(FilterError, match=message):
        switch.set_routes(routes)
    assert switch.router is before
    assert ended(switch) == []
    assert not switch._hand_back.is_set()


@pytest.mark.parametrize("destination", [FALLBACK, ORIGINAL])
def test_a_worker_cannot_start_with_a_session_routed_back_to_itself(destination: str) -> None:
    with pytest.raises(FilterError, match="give the session its own"):
        SessionSwitch([route("alice", 1, destination)], FALLBACK, original=ORIGINAL)


def test_the_last_session_ending_starts_the_hand_back_once_there_were_sessions() -> None:
    empty = SessionSwitch([], FALLBACK)
    empty.set_routes([])
    assert not empty._hand_back.is_set()  # never had any: nothing to hand back yet
    switch = SessionSwitch([route("alice", 1)], FALLBACK)
    switch.set_routes([])
    assert switch._hand_back.is_set()
    assert switch._wake.is_set()
    assert ended(switch) == [("alice", "q-alice")]


def test_no_session_can_be_routed_to_a_queue_while_its_delete_runs() -> None:
    """1. alice's session ends; the worker takes its last check before the delete;
    2. while the delete runs, a change routing a session to alice's queue is refused
       whole (the current routes stay);
    3. once the delete is done, the same change is accepted (the worker's queue checks
       then reject the session, its queue being gone)."""
    switch = SessionSwitch([route("alice", 1), route("bob", 2)], FALLBACK, original=ORIGINAL)
    switch.set_routes([route("bob", 2)])
    alice = switch._ended.get_nowait()
    with switch.deleting(alice) as delete:
        assert delete is True
        with pytest.raises(FilterError, match="'carol' routes to q-alice, which the end of"):
            switch.set_routes([route("bob", 2), route("carol", 3, "q-alice")])
        assert routed(switch) == [("bob", "q-bob")]
    switch.set_routes([route("bob", 2), route("carol", 3, "q-alice")])
    assert routed(switch) == [("bob", "q-bob"), ("carol", "q-alice")]


def test_the_delete_is_skipped_when_the_queue_routes_again_before_its_last_check() -> None:
    switch = SessionSwitch([route("alice", 1)], FALLBACK, original=ORIGINAL)
    switch.set_routes([route("bob", 2)])
    alice = switch._ended.get_nowait()
    switch.set_routes([route("bob", 2), route("carol", 3, "q-alice")])
    with switch.deleting(alice) as delete:
        assert delete is False
    switch.set_routes([route("carol", 3, "q-alice")])  # nothing was held
    assert routed(switch) == [("carol", "q-alice")]
