"""The batching policy of SQS forwarding (splitter/sqs/batching.py)."""

from __future__ import annotations

import math

import pytest

from splitter.sqs.batching import (
    BACKLOG_RECEIVE,
    BATCH_ENTRIES,
    RATE_WINDOW,
    WAITED_MARGIN,
    ArrivalRate,
    ReceivePace,
    due,
    entry_size,
    forward_entry,
    waited_in_queue,
    worth_waiting,
)

pytestmark = pytest.mark.unit

MESSAGE = {
    "MessageId": "id-1",
    "ReceiptHandle": "rh",
    "Body": "héllo",
    "MD5OfBody": "x",
    "Attributes": {"AWSTraceHeader": "Root=1-abc", "ApproximateReceiveCount": "2"},
    "MessageAttributes": {
        "user": {"DataType": "String", "StringValue": "alice", "StringListValues": []},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
    },
}


# --- entries ----------------------------------------------------------------------


def test_a_forward_entry_carries_body_attributes_and_trace_header_unchanged() -> None:
    assert forward_entry(MESSAGE, "m1", fifo=False) == {
        "Id": "m1",
        "MessageBody": "héllo",
        "MessageAttributes": {
            "user": {"DataType": "String", "StringValue": "alice"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
        "MessageSystemAttributes": {
            "AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-abc"}
        },
        "DelaySeconds": 0,
    }


def test_a_standard_forward_sets_no_delay_so_the_copied_delayseconds_does_not_apply_twice() -> None:
    assert forward_entry(MESSAGE, "m1", fifo=False)["DelaySeconds"] == 0
    assert "DelaySeconds" not in forward_entry(MESSAGE, "m1", fifo=True)  # FIFO refuses it


def test_a_standard_fair_queue_message_keeps_its_message_group_id() -> None:
    message = {**MESSAGE, "Attributes": {"MessageGroupId": "tenant-7"}}
    entry = forward_entry(message, "m1", fifo=False)
    assert entry["MessageGroupId"] == "tenant-7"
    assert "MessageDeduplicationId" not in entry
    assert "MessageGroupId" not in forward_entry(MESSAGE, "m1", fifo=False)


def test_a_fifo_entry_keeps_the_group_and_deduplicates_by_the_original_message_id() -> None:
    message = {**MESSAGE, "Attributes": {"MessageGroupId": "g7"}}
    entry = forward_entry(message, "m1", fifo=True)
    assert entry["MessageGroupId"] == "g7"
    assert entry["MessageDeduplicationId"] == "id-1"
    assert "MessageSystemAttributes" not in entry


def test_a_fifo_entry_without_a_group_gets_pymirrors() -> None:
    entry = forward_entry({"MessageId": "id-2", "Body": "b"}, "m2", fifo=True)
    assert entry["MessageGroupId"] == "pymirror"
    assert "MessageAttributes" not in entry


def test_entry_size_counts_body_bytes_and_attribute_names_types_and_values() -> None:
    entry = forward_entry(MESSAGE, "m1", fifo=False)
    body = len("héllo".encode())
    user = len("user") + len("String") + len("alice")
    blob = len("blob") + len("Binary") + 2
    trace = len("AWSTraceHeader") + len("String") + len("Root=1-abc")
    assert entry_size(entry) == body + user + blob + trace


def test_entry_size_counts_attribute_names_and_values_in_utf8_bytes_not_characters() -> None:
    value = "€" * 1000  # 1000 characters, 3000 bytes
    entry = forward_entry(
        {
            "MessageId": "i",
            "Body": "ü",
            "MessageAttributes": {"ключ": {"DataType": "String", "StringValue": value}},
        },
        "m1",
        fifo=True,
    )
    assert entry_size(entry) == 2 + len("ключ".encode()) + len("String") + 3000


# --- when a batch goes ------------------------------------------------------------------


def test_no_partly_full_batch_goes_before_linger() -> None:
    assert not due(0.019, linger=0.02, backlog_linger=1.0, backlog=False)
    assert due(0.02, linger=0.02, backlog_linger=1.0, backlog=False)


def test_in_a_backlog_a_batch_waits_for_backlog_linger_to_fill() -> None:
    assert not due(0.6, linger=0.02, backlog_linger=1.0, backlog=True)
    assert not due(0.999, linger=0.02, backlog_linger=1.0, backlog=True)
    assert due(1.0, linger=0.02, backlog_linger=1.0, backlog=True)


def test_backlog_linger_is_never_shorter_than_linger() -> None:
    assert not due(0.3, linger=0.5, backlog_linger=0.1, backlog=True)
    assert due(0.5, linger=0.5, backlog_linger=0.1, backlog=True)


# --- backlog ---------------------------------------------------------------------------


def test_a_full_receive_starts_a_backlog_and_a_short_one_ends_it() -> None:
    pace = ReceivePace().after(BATCH_ENTRIES, 0.01, now=100.0)
    assert pace.in_backlog(100.001, linger=0.02)
    short = pace.after(BACKLOG_RECEIVE - 1, 0.01, now=100.01)
    assert not short.in_backlog(100.011, linger=0.02)


def test_a_receive_at_least_half_full_keeps_a_backlog() -> None:
    # SQS may return fewer than asked for while many messages wait: 9, or 5, go on with it.
    pace = ReceivePace().after(BATCH_ENTRIES, 0.01, now=100.0)
    assert pace.after(BATCH_ENTRIES - 1, 0.01, now=100.01).in_backlog(100.011, linger=0.02)
    assert pace.after(BACKLOG_RECEIVE, 0.01, now=100.01).in_backlog(100.011, linger=0.02)


def test_a_full_receive_of_messages_sent_during_its_poll_is_no_backlog() -> None:
    # A producer sending batches of 10 fills each receive: steady load, nothing held.
    pace = ReceivePace().after(BATCH_ENTRIES, 0.3, now=100.0, waited=False)
    assert not pace.in_backlog(100.001, linger=0.02)


def test_messages_waited_in_the_queue_when_all_were_sent_before_the_poll_began() -> None:
    def sent(at: float) -> dict[str, object]:
        return {"Attributes": {"SentTimestamp": str(int(at * 1000))}}

    polled_at = 1_700_000_000.0
    old = [sent(polled_at - 5), sent(polled_at - WAITED_MARGIN - 0.01)]
    assert waited_in_queue(old, polled_at)
    assert not waited_in_queue([*old, sent(polled_at + 0.2)], polled_at)  # one came later
    assert not waited_in_queue([sent(polled_at - WAITED_MARGIN / 2)], polled_at)  # in margin
    assert waited_in_queue([{"Attributes": {}}], polled_at)  # no timestamp: counts as waiting


def test_a_backlog_ends_when_no_receive_came_back_for_a_while() -> None:
    pace = ReceivePace().after(BATCH_ENTRIES, 0.008, now=100.0)
    quiet = max(2 * pace.full_seconds, 3 * 0.02)
    assert pace.in_backlog(100.0 + quiet * 0.9, linger=0.02)
    assert not pace.in_backlog(100.0 + quiet * 1.1, linger=0.02)


def test_full_receive_time_is_a_moving_average_over_about_eight() -> None:
    pace = ReceivePace()
    for n in range(40):
        pace = pace.after(BATCH_ENTRIES, 0.8, now=float(n))
    assert pace.full_seconds == pytest.approx(0.8, rel=0.01)
    slow = pace.after(BATCH_ENTRIES, 1.6, now=41.0)
    assert slow.full_seconds == pytest.approx(pace.full_seconds + (1.6 - pace.full_seconds) / 8)
    assert pace.after(3, 5.0, now=42.0).full_seconds == pace.full_seconds  # short: no change


# --- whether a new batch waits ---------------------------------------------------------


def test_a_steady_rate_settles_at_rate_times_window() -> None:
    rate = ArrivalRate()
    for k in range(1, 2001):  # 200 per second for 10 s
        rate.add(k / 200)
    assert rate.expected(RATE_WINDOW) == pytest.approx(200, rel=0.01)
    assert rate.expected(0.02) == pytest.approx(4, rel=0.01)


def test_entries_of_one_submit_count_together_and_the_count_decays_by_e_per_window() -> None:
    rate = ArrivalRate()
    rate.add(5.0, 3)
    rate.add(5.0)
    assert rate.score == 4
    rate.add(5.0 + RATE_WINDOW, 0)
    assert rate.score == pytest.approx(4 / math.e)


def test_a_batch_waits_linger_only_if_another_entry_is_expected_meanwhile() -> None:
    quiet, busy = ArrivalRate(), ArrivalRate()
    for k in range(1, 101):  # 10 per second (100 messages/s over 10 queues) / 100 per second
        quiet.add(k / 10)
        busy.add(k / 100)
    assert not worth_waiting(quiet, 0.02)  # 0.2 entries expected in 20 ms
    assert worth_waiting(busy, 0.02)  # 2 expected
    assert worth_waiting(quiet, 0.2)  # a user's longer linger: 2 expected
    assert not worth_waiting(ArrivalRate(), 600.0)  # nothing seen: never wait
