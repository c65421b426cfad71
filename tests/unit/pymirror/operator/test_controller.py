"""Which sessions a QueueSplit event wakes (pymirror.operator.controller)."""

from __future__ import annotations

from typing import Any

import pytest

from pymirror.operator.controller import Controller, Key, waits_on_splits
from registry.watching import WatchEvent

pytestmark = pytest.mark.unit

SPLIT = "app-orders-0123456789"


def session(
    phase: str | None, *, deleting: bool = False, splits: tuple[str, ...] = ()
) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": "shop", "name": "x"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {"queues": [{"id": "q", "split": s} for s in splits]}
    if phase is not None:
        status["phase"] = phase
    return {"metadata": meta, "status": status}


def test_who_waits_on_a_split() -> None:
    assert not waits_on_splits(session("Ready"))
    assert waits_on_splits(session("Ready", deleting=True))
    assert waits_on_splits(session("Pending"))
    assert waits_on_splits(session(None))
    assert waits_on_splits(session("Ending"))
    assert not waits_on_splits(session("Failed"))
    assert waits_on_splits(session("Failed"), True)


def drain(controller: Controller) -> set[Key]:
    keys = set()
    while len(controller.queue):
        key = controller.queue._queue.get_nowait()
        controller.queue._queued.discard(key)
        keys.add(key)
    return keys


async def test_a_split_event_wakes_waiting_sessions_and_not_the_settled_ones() -> None:
    controller = Controller(
        None,  # type: ignore[arg-type]  # _on_split talks to no API server
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        namespaces=["shop"],
        operator_namespace="ops",
        resync_seconds=60,
    )
    known = {
        "ready": session("Ready", splits=(SPLIT,)),
        "deleting": session("Ready", deleting=True, splits=(SPLIT,)),
        "joining": session("Pending", splits=(SPLIT,)),
        "unplanned": session("Pending"),
        "elsewhere": session("Pending", splits=("other-split-9876543210",)),
        "failed": session("Failed", splits=(SPLIT,)),
        "ending": session("Ending", splits=(SPLIT,)),
    }
    for name, obj in known.items():
        controller.known[("session", "shop", name)] = obj
    routes = [{"session": f"shop/{n}"} for n in ("ready", "deleting", "failed", "unknown")]
    split = {"metadata": {"namespace": "ops", "name": SPLIT}, "spec": {"routes": routes}}
    controller._on_split(WatchEvent("MODIFIED", split))
    woken = {k[2] for k in drain(controller) if k[0] == "session"}
    assert woken == {"deleting", "joining", "unplanned", "failed", "ending", "unknown"}
    assert ("split", "ops", SPLIT) in controller.known
