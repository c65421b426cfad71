"""What QueueSplitSource puts in the status (pymirror/worker/split_source.py, no server).

The hooks and the status body are pure bookkeeping: these tests build the source on a
stand-in ``Kube`` whose ``objects`` is never called for I/O here.
"""

from __future__ import annotations

from typing import Any

import pytest

from pymirror.worker import split_source
from pymirror.worker.split_source import QueueSplitSource
from registry.session_models import SplitCounters
from splitter.filters import FilterSpec, compile_filter
from splitter.routing import SessionRoute

pytestmark = pytest.mark.unit


class NoKube:
    """Only ``objects`` (what the constructor asks for); nothing is sent anywhere."""

    def objects(self, resource: Any, namespace: str) -> None:
        return None


def source(**kwargs: Any) -> QueueSplitSource:
    return QueueSplitSource(NoKube(), "ops", "orders", **kwargs)  # type: ignore[arg-type]


def routes(*refs: str) -> list[SessionRoute]:
    flt = compile_filter(FilterSpec(message_filter={"user": "^x$"}))
    return [SessionRoute(ref, n, flt, f"tmp-{n}") for n, ref in enumerate(refs, 1)]


def test_an_ended_session_is_reported_once_and_wakes_the_writer() -> None:
    src = source()
    src.session_ended("dev/alice")
    src.session_ended("dev/alice")
    assert src.ended_sessions == ["dev/alice"]
    assert src._changed.is_set()
    assert src._status({})["endedSessions"] == ["dev/alice"]


def test_what_is_not_a_session_ref_is_not_reported() -> None:
    src = source()
    src.session_ended("mirrord-tmp-0123456789-views")  # a Kafka topic from a hand-back file
    src.session_ended("Dev/Alice")
    assert src.ended_sessions == []
    assert not src._changed.is_set()


def test_a_ref_routed_again_leaves_the_list_and_an_end_of_a_routed_ref_is_ignored() -> None:
    src = source()
    src.session_ended("dev/alice")
    src._use(routes("dev/alice", "dev/bob"))
    assert src.ended_sessions == []
    src.session_ended("dev/bob")  # still routed: not what the status should say
    assert src.ended_sessions == []
    assert src._status({"endedSessions": ["dev/bob", "dev/carol"]})["endedSessions"] == [
        "dev/carol"
    ]


def test_the_list_is_bounded_to_the_most_recent_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split_source, "MAX_ENDED", 3)
    src = source()
    for n in range(5):
        src.session_ended(f"dev/s{n}")
    assert src.ended_sessions == ["dev/s2", "dev/s3", "dev/s4"]
    # Refs another replica (or an earlier run) wrote count as older than ours.
    body = src._status({"endedSessions": ["dev/old"]})
    assert body["endedSessions"] == ["dev/s2", "dev/s3", "dev/s4"]


def test_other_replicas_ends_are_kept() -> None:
    src = source()
    src.session_ended("dev/alice")
    body = src._status({"endedSessions": ["dev/bob"]})
    assert body["endedSessions"] == ["dev/alice", "dev/bob"]


def test_hand_back_progress_a_new_phase_is_written_at_once_remaining_with_the_next() -> None:
    src = source()
    src._use(routes("dev/alice"))
    src._changed.clear()
    src.hand_back_progress("Draining", 6)
    assert src._changed.is_set()
    src._changed.clear()
    src.hand_back_progress("Draining", 4)
    assert not src._changed.is_set()  # the periodic write carries it
    body = src._status({})
    assert body["handBack"] == {"phase": "Draining", "remaining": 4}
    assert body["activeSessions"] == 0
    assert not src.handed_back
    src.hand_back_progress("Done", 0)
    assert src._changed.is_set()
    assert src.handed_back


def test_counters_come_from_the_callable_and_a_session_no_longer_counted_is_removed() -> None:
    figures: dict[str, Any] = {"read": 5, "forwarded": {"dev/alice": 2, "dev/bob": 1}}
    src = source(counters=lambda: SplitCounters.model_validate(figures))
    assert src._status({})["counters"] == {
        "read": 5,
        "forwarded": {"dev/alice": 2, "dev/bob": 1},
    }
    src._forwarded = {"dev/alice", "dev/bob"}  # as after a write
    figures["forwarded"] = {"dev/alice": 3}
    assert src._status({})["counters"]["forwarded"] == {"dev/alice": 3, "dev/bob": None}


def test_no_counters_callable_means_no_counters_in_the_status() -> None:
    assert "counters" not in source()._status({})


def test_an_end_named_by_its_topic_is_reported_by_the_ref_that_routed_to_it() -> None:
    src = source()
    src._use(routes("dev/alice"))  # destination tmp-1
    src._use([])
    src.session_ended("tmp-1")  # e.g. resumed from a Kafka hand-back file
    assert src.ended_sessions == ["dev/alice"]
