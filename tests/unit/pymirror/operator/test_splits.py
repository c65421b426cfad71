"""The pure helpers of pymirror.operator.splits: forms, records, routes, hand-back rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pymirror.operator.splits import (
    PATCHED,
    SplitError,
    applied,
    digits_of,
    handing_back,
    in_form,
    json_value,
    record_of,
    with_condition,
    without_route,
)
from splitter.naming import DEFAULT_SQS_QUEUE_FORMAT, NameFormat

pytestmark = pytest.mark.unit

URL = "http://sqs.local:4566/000000000000/orders"
FORMAT = NameFormat(DEFAULT_SQS_QUEUE_FORMAT, "sqs")


def split(routes: list[dict[str, Any]], records: list[dict[str, Any]] | None = None) -> Any:
    return {
        "metadata": {"name": "s", "generation": 3},
        "spec": {"routes": routes},
        "status": {"temporaryResources": records or []},
    }


def route(session: str, sequence: int) -> dict[str, Any]:
    return {"session": session, "sequence": sequence, "destination": f"{URL}-{sequence}"}


def test_a_value_keeps_the_original_form() -> None:
    assert in_form(URL, "tmp", f"{URL}-tmp") == f"{URL}-tmp"
    assert in_form("orders", "tmp", f"{URL}-tmp") == "tmp"


@pytest.mark.parametrize("fallback", [True, False])
def test_a_recorded_name_gives_back_its_random_digits(fallback: bool) -> None:
    # the original ends in 10 digits too: only the digits that render the name count
    original = "orders-1234567890"
    name = FORMAT.render(original, fallback=fallback, random_digits="0987654321")

    def render(digits: str) -> str:
        return FORMAT.render(original, fallback=fallback, random_digits=digits)

    assert digits_of(name, render) == "0987654321"


def test_a_recorded_name_another_format_made_is_a_clear_error() -> None:
    def render(digits: str) -> str:
        return FORMAT.render("orders", fallback=False, random_digits=digits)

    with pytest.raises(SplitError, match="queue_format"):
        digits_of("other-0123456789-orders", render)


def test_records_are_found_by_role_and_session() -> None:
    records = [
        {"name": "f", "role": "fallback"},
        {"name": "a", "role": "session", "session": "ns/a"},
    ]
    obj = split([], records)
    assert record_of(obj, None) == records[0]
    assert record_of(obj, "ns/a") == records[1]
    assert record_of(obj, "ns/b") is None


def test_removing_a_route_keeps_the_others_and_no_hand_back() -> None:
    obj = split([route("ns/a", 1), route("ns/b", 2)], [{"name": "a", "session": "ns/a"}])
    written = without_route(obj, "ns/a")
    assert written is not None
    assert written["spec"]["routes"] == [route("ns/b", 2)]
    assert "handBack" not in written["spec"]


def test_the_last_route_going_sets_hand_back_once() -> None:
    written = without_route(split([route("ns/a", 1)]), "ns/a")
    assert written is not None
    assert written["spec"] == {"routes": [], "handBack": True}
    assert without_route(written, "ns/a") is None  # nothing more to change


def test_a_session_that_never_got_a_route_hands_back_an_empty_split() -> None:
    records = [{"name": "a", "role": "session", "session": "ns/a"}]
    written = without_route(split([], records), "ns/a")
    assert written is not None
    assert written["spec"]["handBack"] is True
    assert without_route(split([]), "ns/stranger") is None


def test_applied_and_hand_back() -> None:
    obj = split([])
    assert not applied(obj)
    obj["status"]["appliedGeneration"] = 2
    assert not applied(obj)
    obj["status"]["appliedGeneration"] = 3
    assert applied(obj)
    assert not handing_back(obj)
    obj["spec"]["handBack"] = True
    assert handing_back(obj)
    assert handing_back({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {}})


def test_the_patched_condition_keeps_its_time_while_its_status_holds() -> None:
    first = with_condition({}, False, "RollingOut", "waiting")
    obj = {"status": {"conditions": [*first, {"type": "Other", "status": "True"}]}}
    again = with_condition(obj, False, "RollingOut", "still waiting")
    [patched] = [c for c in again if c["type"] == PATCHED]
    assert patched["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert patched["message"] == "still waiting"
    assert [c["type"] for c in again] == ["Other", PATCHED]


def test_a_json_map_gets_only_its_key_replaced() -> None:
    current = json.dumps({"a": "orders", "b": "ads"})
    assert json.loads(json_value(current, "a", "tmp", "QUEUES")) == {"a": "tmp", "b": "ads"}
    with pytest.raises(SplitError, match="literal JSON object"):
        json_value(None, "a", "tmp", "env var QUEUES")
    with pytest.raises(SplitError, match="QUEUES"):
        json_value("[1]", "a", "tmp", "env var QUEUES")
