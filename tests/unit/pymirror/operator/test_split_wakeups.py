"""A QueueSplit change wakes the waiting sessions only when what they wait on changed
(pymirror.operator.controller: ``wake_state``, ``Controller._on_split``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pymirror.operator.controller import Controller, wake_state
from registry.watching import WatchEvent

pytestmark = pytest.mark.unit

SPLIT = "app-orders-0123456789"
WAITING = ("joining", "leaving", "other")


def controller() -> Controller:
    return Controller(
        None,  # type: ignore[arg-type]  # _on_split talks to no API server
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        namespaces=["shop"],
        operator_namespace="ops",
        resync_seconds=60,
    )


def session(name: str, phase: str, *, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": "shop", "name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "queues": [{"split": SPLIT}]}}


def split(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ops", "name": SPLIT, "generation": 3},
        "spec": {"routes": [{"session": "shop/joining"}]},
        "status": {"appliedGeneration": 2, **status},
    }


def woken_by(*events: dict[str, Any]) -> set[str]:
    """The sessions the last of ``events`` (QueueSplit objects, in turn) enqueues."""
    c = controller()
    c.known[("session", "shop", "joining")] = session("joining", "Pending")
    c.known[("session", "shop", "leaving")] = session("leaving", "Ready", deleting=True)
    c.known[("session", "shop", "other")] = session("other", "Ending")
    for obj in events[:-1]:
        c._on_split(WatchEvent("MODIFIED", obj))
    while len(c.queue):
        c.queue._queued.discard(c.queue._queue.get_nowait())
    c._on_split(WatchEvent("MODIFIED", events[-1]))
    woken = set()
    while len(c.queue):
        key = c.queue._queue.get_nowait()
        c.queue._queued.discard(key)
        if key[0] == "session":
            woken.add(key[2])
    return woken


def test_a_split_first_seen_wakes_every_waiting_session() -> None:
    assert woken_by(split()) == set(WAITING)


def test_the_workers_acknowledgment_wakes_every_waiting_session() -> None:
    assert woken_by(split(), split(appliedGeneration=3)) == set(WAITING)


def test_a_hand_back_or_a_workload_change_wakes_every_waiting_session() -> None:
    handing_back = split()
    handing_back["spec"]["handBack"] = True
    assert woken_by(split(), handing_back) == set(WAITING)
    assert woken_by(split(), split(workload={"state": "RolledOut"})) == set(WAITING)
    assert woken_by(split(), split(handBack={"phase": "Done"})) == set(WAITING)


def test_an_end_reported_wakes_only_the_sessions_newly_listed() -> None:
    once = split(endedSessions=["shop/leaving"])
    assert woken_by(split(), once) == {"leaving"}
    again = split(endedSessions=["shop/leaving", "shop/other"])
    assert woken_by(split(), once, again) == {"other"}


def test_counters_records_and_an_unapplied_route_write_wake_no_session() -> None:
    counted = split(counters={"read": 5})
    recorded = split(temporaryResources=[{"name": "q", "role": "session"}])
    rewritten = copy.deepcopy(split())
    rewritten["metadata"]["generation"] = 4
    rewritten["spec"]["routes"] = []
    for change in (counted, recorded, rewritten):
        assert wake_state(change) == wake_state(split())
        assert woken_by(split(), change) == set()
