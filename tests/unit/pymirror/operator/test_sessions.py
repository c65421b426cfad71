"""The SplitSession reconciler's pure core: the next step from an object and the time,
leases, conditions, the sequence, and the controller's work queue."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pymirror.operator.controller import Key, Metrics, WorkQueue, split_sessions
from pymirror.operator.planning import PlannedQueue
from pymirror.operator.sessions import (
    FINALIZER,
    KILLED_ANNOTATION,
    format_time,
    highest_sequence,
    lease_deadline,
    merged_values,
    next_step,
    parse_time,
    queue_status,
    recorded_splits,
    session_ref,
    with_condition,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def session(
    *,
    phase: str | None = None,
    finalizer: bool = True,
    sequence: int | None = 1,
    deleting: bool = False,
    annotations: dict[str, str] | None = None,
    ready_since: datetime | None = None,
    ended_since: datetime | None = None,
    renew: datetime | None = None,
    lease: int = 30,
    queues: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "alice", "namespace": "shop"}
    if finalizer:
        meta["finalizers"] = [FINALIZER]
    if deleting:
        meta["deletionTimestamp"] = format_time(NOW)
    if annotations:
        meta["annotations"] = annotations
    spec: dict[str, Any] = {"leaseSeconds": lease}
    if renew is not None:
        spec["renewTime"] = format_time(renew)
    status: dict[str, Any] = {}
    if phase:
        status["phase"] = phase
    if sequence is not None:
        status["sequence"] = sequence
    conditions = []
    if ready_since is not None:
        conditions.append(
            {"type": "Ready", "status": "True", "lastTransitionTime": format_time(ready_since)}
        )
    if ended_since is not None:
        conditions.append(
            {"type": "Ended", "status": "True", "lastTransitionTime": format_time(ended_since)}
        )
    if conditions:
        status["conditions"] = conditions
    if queues is not None:
        status["queues"] = queues
    return {"metadata": meta, "spec": spec, "status": status}


# --- next_step ------------------------------------------------------------------------------


def test_a_new_session_first_gets_the_finalizer_then_a_sequence_then_is_provisioned() -> None:
    assert next_step(session(finalizer=False, sequence=None), NOW).action == "add_finalizer"
    assert next_step(session(sequence=None), NOW).action == "assign_sequence"
    assert next_step(session(phase="Pending"), NOW).action == "provision"


def test_a_ready_session_within_its_lease_checks_its_target_and_wakes_at_the_deadline() -> None:
    step = next_step(session(phase="Ready", ready_since=NOW), at(10))
    assert step.action == "check_target"
    assert step.wake_after == pytest.approx(20)


def test_a_ready_session_without_renewal_expires_lease_seconds_after_ready() -> None:
    obj = session(phase="Ready", ready_since=NOW, lease=30)
    assert next_step(obj, at(29.9)).action == "check_target"
    step = next_step(obj, at(30))
    assert (step.action, step.reason, step.condition_reason) == ("begin_end", "Expired", "Expired")
    assert "30 s" in step.message


def test_a_renewal_moves_the_deadline_but_an_old_one_does_not_shorten_the_lease() -> None:
    renewed = session(phase="Ready", ready_since=NOW, renew=at(25), lease=30)
    assert next_step(renewed, at(54)).action == "check_target"
    assert next_step(renewed, at(55)).reason == "Expired"
    stale = session(phase="Ready", ready_since=NOW, renew=at(-3600), lease=30)
    assert lease_deadline(stale) == at(30)


def test_a_pending_session_has_no_lease_yet() -> None:
    obj = session(phase="Pending", renew=at(-3600))
    assert lease_deadline(obj) is None
    assert next_step(obj, at(3600)).action == "provision"


def test_deleting_a_session_ends_it_completed_or_killed_by_the_annotation() -> None:
    deleted = next_step(session(phase="Ready", deleting=True), NOW)
    assert (deleted.action, deleted.reason) == ("begin_end", "Completed")
    killed = next_step(
        session(phase="Pending", deleting=True, annotations={KILLED_ANNOTATION: "ops@box"}), NOW
    )
    assert (killed.action, killed.reason, killed.message) == (
        "begin_end",
        "Killed",
        "killed by ops@box",
    )


def test_an_ending_session_leaves_its_splits_whether_deleted_or_not() -> None:
    assert next_step(session(phase="Ending"), NOW).action == "leave"
    assert next_step(session(phase="Ending", deleting=True), NOW).action == "leave"
    assert next_step(session(phase="Failed", deleting=True), NOW).action == "leave"


def test_a_deleted_session_without_our_finalizer_needs_nothing() -> None:
    assert next_step(session(phase="Ready", deleting=True, finalizer=False), NOW).action == "none"


def test_a_failed_session_waits_for_its_client_then_is_deleted_after_its_lease() -> None:
    obj = session(phase="Failed", ended_since=NOW, lease=10)
    waiting = next_step(obj, at(5))
    assert waiting.action == "none"
    assert waiting.wake_after == pytest.approx(5)
    assert next_step(obj, at(10)).action == "delete"


def test_a_failed_session_is_terminal_even_without_a_sequence() -> None:
    assert next_step(session(phase="Failed", sequence=None), NOW).action == "none"


# --- helpers --------------------------------------------------------------------------------


def test_times_round_trip_in_rfc3339_utc() -> None:
    assert format_time(NOW) == "2026-05-01T10:00:00Z"
    assert parse_time("2026-05-01T10:00:00Z") == NOW
    assert parse_time("2026-05-01T12:00:00+02:00") == NOW
    assert parse_time("2026-05-01t10:00:00z") == NOW


def test_a_condition_keeps_its_transition_time_until_its_status_changes() -> None:
    first = with_condition({}, "Ready", False, "Provisioning", "a", NOW)
    obj = {"status": {"conditions": first}}
    same = with_condition(obj, "Ready", False, "Provisioning", "b", at(5))
    assert same[0]["lastTransitionTime"] == format_time(NOW)
    assert same[0]["message"] == "b"
    flipped = with_condition(
        {"status": {"conditions": same}}, "Ready", True, "Provisioned", "", at(9)
    )
    assert (flipped[0]["status"], flipped[0]["lastTransitionTime"]) == ("True", format_time(at(9)))


def test_conditions_of_other_types_are_kept() -> None:
    obj = {"status": {"conditions": [{"type": "Ended", "status": "True", "reason": "Expired"}]}}
    result = with_condition(obj, "Ready", False, "Ending", "", NOW)
    assert [(c["type"], c["status"]) for c in result] == [("Ended", "True"), ("Ready", "False")]


def test_the_highest_sequence_counts_sessions_and_split_routes() -> None:
    sessions: list[dict[str, Any]] = [{"status": {"sequence": 3}}, {"status": {}}, {}]
    splits: list[dict[str, Any]] = [
        {"spec": {"routes": [{"session": "a/b", "sequence": 7}]}},
        {"spec": {}},
    ]
    assert highest_sequence(sessions, splits) == 7
    assert highest_sequence(sessions, []) == 3
    assert highest_sequence([], []) == 0


def test_recorded_splits_and_the_session_ref() -> None:
    obj = session(queues=[{"id": "a", "split": "s2"}, {"id": "b", "split": "s1"}, {"id": "c"}])
    assert recorded_splits(obj) == ["s1", "s2"]
    assert session_ref(obj) == "shop/alice"


def planned(**extra: Any) -> PlannedQueue:
    fields: dict[str, Any] = {
        "id": "meme-queue",
        "kind": "SQS",
        "split": "meme-app-meme-queue-0123456789",
        "original": "memes",
        "env_var": "INCOMING_MEME_QUEUE_NAME",
        "container": "main",
        "message_filter": {"author": "^alice$"},
        "jq_filter": None,
        "mode": "steal",
        "group_id": None,
        "group_id_env_var": None,
        "client_config": None,
    }
    return PlannedQueue(**{**fields, **extra})


class _Joined:
    ready = True
    step = "ready"
    temporary = "mirrord-tmp-1234567890-memes"
    value = "mirrord-tmp-1234567890-memes"


def test_a_queue_status_before_and_after_the_join() -> None:
    before = queue_status(planned())
    assert before == {
        "id": "meme-queue",
        "original": "memes",
        "kind": "SQS",
        "split": "meme-app-meme-queue-0123456789",
        "envVar": "INCOMING_MEME_QUEUE_NAME",
    }
    after = queue_status(planned(), _Joined())
    assert after["temporary"] == after["value"] == "mirrord-tmp-1234567890-memes"


@dataclass(frozen=True)
class Value:
    """A ``Joined`` as ``Splits.join`` returns it, ready, with ``value``."""

    value: str | None
    temporary: str | None = "mirrord-tmp-1234567890-memes"
    ready: bool = True
    step: str = "ready"


ORIGINAL_JSON = {"memes": "Memes", "ads": "Ads", "other": "Other"}


def json_queue(key: str, var: str = "QUEUES", container: str = "main") -> PlannedQueue:
    return planned(
        id="json", original=ORIGINAL_JSON[key], env_var=var, container=container, json_key=key
    )


def with_key(key: str, temporary: str) -> Value:
    """What ``Splits.join`` gives a namesFromJsonMap queue: the original JSON, its key set."""
    return Value(json.dumps({**ORIGINAL_JSON, key: temporary}, separators=(",", ":")))


def test_json_map_queues_of_one_env_var_get_one_value_with_every_key_replaced() -> None:
    joined = [
        (json_queue("memes"), with_key("memes", "tmp-memes")),
        (planned(), Value("mirrord-tmp-1234567890-memes")),
        (json_queue("ads"), with_key("ads", "tmp-ads")),
    ]

    values = merged_values(joined)

    merged = {"memes": "tmp-memes", "ads": "tmp-ads", "other": "Other"}
    assert values[1] == "mirrord-tmp-1234567890-memes"  # a plain queue keeps its value
    assert values[0] == values[2]
    assert values[0] is not None
    assert json.loads(values[0]) == merged
    assert list(json.loads(values[0])) == ["memes", "ads", "other"]  # the original's key order


def test_json_values_are_merged_per_env_var_and_container() -> None:
    joined = [
        (json_queue("memes"), with_key("memes", "a")),
        (json_queue("ads", var="OTHER_QUEUES"), with_key("ads", "b")),
        (json_queue("other", container="sidecar"), with_key("other", "c")),
        (json_queue("ads"), with_key("ads", "d")),
    ]

    values = [json.loads(v or "") for v in merged_values(joined)]

    assert values[0] == values[3] == {**ORIGINAL_JSON, "memes": "a", "ads": "d"}
    assert values[1] == {**ORIGINAL_JSON, "ads": "b"}
    assert values[2] == {**ORIGINAL_JSON, "other": "c"}


def test_a_single_json_queue_and_values_not_yet_known_are_kept() -> None:
    single = with_key("memes", "tmp-memes")
    joined = [(json_queue("memes"), single), (json_queue("ads"), Value(None))]

    assert merged_values(joined) == [single.value, None]
    assert merged_values([]) == []


def test_a_value_that_is_not_a_json_object_with_its_key_is_left_alone() -> None:
    joined = [
        (json_queue("memes"), with_key("memes", "tmp-memes")),
        (json_queue("ads"), Value("not json")),
        (json_queue("other"), Value('{"memes": "x"}')),  # no key "other"
    ]

    values = merged_values(joined)

    assert values[1:] == ["not json", '{"memes": "x"}']
    assert json.loads(values[0] or "") == {**ORIGINAL_JSON, "memes": "tmp-memes"}


# --- the controller's pure parts ------------------------------------------------------------


def test_split_sessions_reads_the_routes_session_refs() -> None:
    obj = {"spec": {"routes": [{"session": "shop/alice"}, {"session": "bad"}, {}]}}
    assert split_sessions(obj) == [("shop", "alice")]


async def test_the_work_queue_holds_a_key_once_and_reruns_a_key_added_while_active() -> None:
    queue = WorkQueue()
    a: Key = ("session", "shop", "a")
    b: Key = ("split", "ops", "b")
    queue.add(a)
    queue.add(a)
    queue.add(b)
    assert len(queue) == 2
    assert await queue.get() == a
    queue.add(a)  # while a runs: not queued twice, run again once done
    assert len(queue) == 1
    assert await queue.get() == b
    queue.done(a)
    assert await queue.get() == a
    queue.done(b)
    queue.done(a)
    assert len(queue) == 0


async def test_a_delayed_add_keeps_the_earliest_timer() -> None:
    queue = WorkQueue()
    key: Key = ("session", "shop", "a")
    queue.add_after(key, 3600)
    queue.add_after(key, 0)
    queue.add_after(key, 3600)  # a later timer does not replace the earlier one
    async with asyncio.timeout(5):
        assert await queue.get() == key
    queue.close()


def test_metrics_count_sessions_by_phase() -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.count_phases([{"status": {"phase": "Ready"}}, {"status": {"phase": "Ready"}}, {}])
    value = registry.get_sample_value
    assert value("pymirror_operator_sessions", {"phase": "Ready"}) == 2
    assert value("pymirror_operator_sessions", {"phase": "Pending"}) == 1
    assert value("pymirror_operator_sessions", {"phase": "Failed"}) == 0


# --- the command ----------------------------------------------------------------------------


def test_the_operator_command_refuses_an_empty_namespace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without ``--namespace`` it watches every namespace (pymirror/commands/operator.py);
    an empty one is a usage error before anything connects."""
    from pymirror.cli import main

    assert main(["operator", "--namespace", ""]) == 2
    assert "--namespace needs a namespace name" in capsys.readouterr().err


def test_which_errors_are_retried_and_which_fail_the_session() -> None:
    from pymirror.operator.planning import SessionInvalid
    from pymirror.operator.sessions import _retriable
    from registry.errors import ConflictError, RolloutTimeoutError, UnavailableError

    assert _retriable(UnavailableError("api down"))
    assert _retriable(ConflictError("stale"))
    assert _retriable(ValueError("a bug: retried, never a failed session"))
    timeout = RolloutTimeoutError(
        "did not roll out", workload="Deployment shop/app", missing="0 of 1 replicas ready"
    )
    assert not _retriable(timeout)
    assert not _retriable(SessionInvalid("spec.queues[0].id", "no such queue"))
