"""Pure helpers of temporary SQS queues (splitter/sqs/queues.py)."""

from __future__ import annotations

import json

import pytest

from splitter.errors import SqsError
from splitter.naming import DEFAULT_SQS_QUEUE_FORMAT, NameFormat
from splitter.sqs.queues import (
    bookkeeping_tags,
    matches_format,
    rewrite_policy,
    temporary_arn,
    temporary_attributes,
    temporary_tags,
)

pytestmark = pytest.mark.unit

ARN = "arn:aws:sqs:eu-west-1:111122223333:orders"
TEMP = "mirrord-tmp-0123456789-orders"
TEMP_ARN = "arn:aws:sqs:eu-west-1:111122223333:mirrord-tmp-0123456789-orders"
READ_ONLY = {
    "QueueArn": ARN,
    "ApproximateNumberOfMessages": "3",
    "ApproximateNumberOfMessagesNotVisible": "1",
    "ApproximateNumberOfMessagesDelayed": "0",
    "CreatedTimestamp": "1700000000",
    "LastModifiedTimestamp": "1700000001",
}


def attributes_for(
    original: dict[str, str], name: str = "orders", temp: str = TEMP
) -> dict[str, str]:
    arn = f"arn:aws:sqs:eu-west-1:111122223333:{name}"
    return temporary_attributes(original, name, arn, temp, temporary_arn(arn, temp))


# --- ARNs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        (ARN, TEMP_ARN),
        ("arn:aws-cn:sqs:cn-north-1:1:q", "arn:aws-cn:sqs:cn-north-1:1:" + TEMP),
        ("arn:aws-us-gov:sqs:us-gov-west-1:2:q.fifo", "arn:aws-us-gov:sqs:us-gov-west-1:2:" + TEMP),
    ],
)
def test_temporary_arn_keeps_partition_region_and_account(original: str, expected: str) -> None:
    assert temporary_arn(original, TEMP) == expected


@pytest.mark.parametrize("bad", ["", "orders", "arn:aws:sns:eu-west-1:1:orders", "arn:aws:sqs:x"])
def test_a_non_sqs_arn_is_refused_with_a_message_naming_it(bad: str) -> None:
    with pytest.raises(SqsError, match="is not an SQS queue ARN"):
        temporary_arn(bad, TEMP)


# --- attributes -----------------------------------------------------------------


def test_writable_attributes_are_copied_and_read_only_ones_dropped() -> None:
    writable = {
        "DelaySeconds": "5",
        "MaximumMessageSize": "2048",
        "MessageRetentionPeriod": "86400",
        "ReceiveMessageWaitTimeSeconds": "10",
        "VisibilityTimeout": "45",
        "RedrivePolicy": '{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:1:orders-dlq",'
        '"maxReceiveCount":"3"}',
        "RedriveAllowPolicy": '{"redrivePermission":"allowAll"}',
        "SqsManagedSseEnabled": "true",
    }
    got = attributes_for({**READ_ONLY, **writable, "SomethingNew": "x"})
    assert got == writable


def test_a_kms_key_is_copied_and_sse_sqs_dropped_because_sqs_refuses_both() -> None:
    original = {
        **READ_ONLY,
        "KmsMasterKeyId": "alias/team-key",
        "KmsDataKeyReusePeriodSeconds": "600",
        "SqsManagedSseEnabled": "true",  # what moto and LocalStack report beside a KMS key
    }
    assert attributes_for(original) == {
        "KmsMasterKeyId": "alias/team-key",
        "KmsDataKeyReusePeriodSeconds": "600",
    }


def test_sse_sqs_is_copied_when_there_is_no_kms_key() -> None:
    got = attributes_for({**READ_ONLY, "KmsMasterKeyId": "", "SqsManagedSseEnabled": "false"})
    assert got == {"SqsManagedSseEnabled": "false"}


def test_a_fifo_original_gives_fifo_attributes_on_the_fifo_temporary() -> None:
    fifo = {
        "FifoQueue": "true",
        "ContentBasedDeduplication": "true",
        "DeduplicationScope": "messageGroup",
        "FifoThroughputLimit": "perMessageGroupId",
    }
    got = attributes_for(
        {**READ_ONLY, **fifo, "VisibilityTimeout": "60"},
        name="orders.fifo",
        temp="mirrord-tmp-0123456789-orders.fifo",
    )
    assert got == {**fifo, "VisibilityTimeout": "60"}


def test_fifo_attributes_never_reach_a_standard_temporary() -> None:
    # moto reports nothing FIFO for a standard queue, but "FifoQueue": "false" is
    # refused by SQS and LocalStack ("Unknown Attribute FifoQueue") - drop it.
    got = attributes_for(
        {
            **READ_ONLY,
            "FifoQueue": "false",
            "ContentBasedDeduplication": "false",
            "DelaySeconds": "1",
        }
    )
    assert got == {"DelaySeconds": "1"}


def test_a_temporary_arn_that_does_not_match_the_name_is_refused() -> None:
    with pytest.raises(SqsError, match="is not 'mirrord-tmp-0123456789-orders' beside"):
        temporary_attributes(READ_ONLY, "orders", ARN, TEMP, ARN)


def test_an_empty_policy_is_not_copied() -> None:
    assert attributes_for({**READ_ONLY, "Policy": ""}) == {}


# --- policy ---------------------------------------------------------------------


def test_policy_arn_and_name_are_replaced_and_other_queues_left_alone() -> None:
    """Other queues whose names start or end like it, and other ARNs ending in its
    name (an SNS topic, a queue in another account), are not the original."""
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Id": "arn:aws:sqs:eu-west-1:111122223333:orders/SQSDefaultPolicy",
            "Statement": [
                {
                    "Sid": "orders",
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": [
                        "arn:aws:sqs:eu-west-1:111122223333:orders",
                        "arn:aws:sqs:eu-west-1:111122223333:orders-dlq",
                        "arn:aws:sqs:eu-west-1:111122223333:orders.fifo",
                        "arn:aws:sqs:eu-west-1:111122223333:my-orders",
                        "arn:aws:sqs:eu-west-1:111122223333:orders2",
                        "arn:aws:sqs:eu-west-1:999999999999:orders",
                    ],
                    "Condition": {
                        "ArnEquals": {"aws:SourceArn": "arn:aws:sns:eu-west-1:111122223333:orders"}
                    },
                },
                {
                    "Sid": "url",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "sqs:*",
                    "Resource": "https://sqs.eu-west-1.amazonaws.com/111122223333/orders",
                    "NotResource": "arn:aws:sqs:eu-west-1:111122223333:orders*",
                },
            ],
        }
    )
    got = rewrite_policy(policy, "orders", ARN, TEMP)
    assert got == (
        '{"Version": "2012-10-17", '
        '"Id": "arn:aws:sqs:eu-west-1:111122223333:mirrord-tmp-0123456789-orders'
        '/SQSDefaultPolicy", '
        '"Statement": [{"Sid": "mirrord-tmp-0123456789-orders", "Effect": "Allow", '
        '"Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage", '
        '"Resource": ["arn:aws:sqs:eu-west-1:111122223333:mirrord-tmp-0123456789-orders", '
        '"arn:aws:sqs:eu-west-1:111122223333:orders-dlq", '
        '"arn:aws:sqs:eu-west-1:111122223333:orders.fifo", '
        '"arn:aws:sqs:eu-west-1:111122223333:my-orders", '
        '"arn:aws:sqs:eu-west-1:111122223333:orders2", '
        '"arn:aws:sqs:eu-west-1:999999999999:orders"], '
        '"Condition": {"ArnEquals": '
        '{"aws:SourceArn": "arn:aws:sns:eu-west-1:111122223333:orders"}}}, '
        '{"Sid": "url", "Effect": "Deny", "Principal": "*", "Action": "sqs:*", '
        '"Resource": "https://sqs.eu-west-1.amazonaws.com/111122223333/'
        'mirrord-tmp-0123456789-orders", '
        '"NotResource": "arn:aws:sqs:eu-west-1:111122223333:mirrord-tmp-0123456789-orders*"}]}'
    )


def test_policy_rewrite_keeps_the_text_byte_for_byte_outside_the_replacements() -> None:
    policy = '{ "Statement" :[ {"Resource":"arn:aws:sqs:eu-west-1:111122223333:orders"} ]}\n'
    got = rewrite_policy(policy, "orders", ARN, TEMP)
    assert got == (
        '{ "Statement" :[ {"Resource":"arn:aws:sqs:eu-west-1:111122223333:'
        'mirrord-tmp-0123456789-orders"} ]}\n'
    )


def test_fifo_policy_replaces_the_fifo_name_and_not_the_standard_one() -> None:
    arn = "arn:aws:sqs:eu-west-1:111122223333:orders.fifo"
    temp = "mirrord-tmp-0123456789-orders.fifo"
    policy = (
        '{"Resource":["arn:aws:sqs:eu-west-1:111122223333:orders.fifo",'
        '"arn:aws:sqs:eu-west-1:111122223333:orders"],"Sid":"orders.fifo"}'
    )
    got = rewrite_policy(policy, "orders.fifo", arn, temp)
    assert got == (
        '{"Resource":["arn:aws:sqs:eu-west-1:111122223333:mirrord-tmp-0123456789-orders.fifo",'
        '"arn:aws:sqs:eu-west-1:111122223333:orders"],"Sid":"mirrord-tmp-0123456789-orders.fifo"}'
    )


def test_a_temporary_name_containing_the_original_is_not_rewritten_twice() -> None:
    # The temp name ends with the original's: a second pass would nest it.
    policy = '{"Resource":"arn:aws:sqs:eu-west-1:111122223333:orders","Sid":"orders"}'
    got = rewrite_policy(policy, "orders", ARN, TEMP)
    assert got.count("mirrord-tmp") == 2
    assert got == (
        '{"Resource":"arn:aws:sqs:eu-west-1:111122223333:mirrord-tmp-0123456789-orders",'
        '"Sid":"mirrord-tmp-0123456789-orders"}'
    )


def test_temporary_attributes_rewrite_the_policy() -> None:
    policy = '{"Resource":"arn:aws:sqs:eu-west-1:111122223333:orders"}'
    assert attributes_for({**READ_ONLY, "Policy": policy}) == {
        "Policy": f'{{"Resource":"{TEMP_ARN}"}}'
    }


# --- tags -----------------------------------------------------------------------


def test_registry_tags_win_over_the_original_and_bookkeeping_wins_over_both() -> None:
    bookkeeping = bookkeeping_tags("orders", fallback=False, session="alice")
    got = temporary_tags(
        {"team": "payments", "env": "dev", "pymirror.dev/session": "forged", "aws:created": "x"},
        {"env": "shared", "cost-center": "42"},
        bookkeeping,
    )
    assert got == {
        "team": "payments",
        "env": "shared",
        "cost-center": "42",
        "pymirror.dev/created-by": "pymirror",
        "pymirror.dev/original-queue": "orders",
        "pymirror.dev/session": "alice",
    }


def test_bookkeeping_marks_the_fallback_queue() -> None:
    assert bookkeeping_tags("orders.fifo", fallback=True, session=None) == {
        "pymirror.dev/created-by": "pymirror",
        "pymirror.dev/original-queue": "orders.fifo",
        "pymirror.dev/fallback": "true",
    }


@pytest.mark.parametrize(("fallback", "session"), [(True, "alice"), (False, None)])
def test_a_queue_is_either_the_fallback_or_a_sessions(fallback: bool, session: str | None) -> None:
    with pytest.raises(ValueError, match="either the fallback or a session's"):
        bookkeeping_tags("orders", fallback=fallback, session=session)


def test_exactly_fifty_tags_are_allowed() -> None:
    bookkeeping = bookkeeping_tags("orders", fallback=True, session=None)
    original = {f"k{i}": "v" for i in range(47)}
    assert len(temporary_tags(original, None, bookkeeping)) == 50


def test_fifty_one_tags_fail_with_the_count_and_the_fix() -> None:
    bookkeeping = bookkeeping_tags("orders", fallback=True, session=None)
    original = {f"k{i}": "v" for i in range(40)}
    registry = {f"r{i}": "v" for i in range(8)}
    with pytest.raises(SqsError) as caught:
        temporary_tags(original, registry, bookkeeping)
    assert str(caught.value) == (
        "a temporary queue would get 51 tags (40 from the original, 8 from the registry, "
        "3 of pymirror's own; overlaps counted once) but SQS allows 50; remove 1 from the "
        "original queue or the registry's tags"
    )


def test_overlapping_tags_count_once() -> None:
    bookkeeping = bookkeeping_tags("orders", fallback=True, session=None)
    original = {f"k{i}": "v" for i in range(47)}
    registry = {f"k{i}": "w" for i in range(47)}
    assert len(temporary_tags(original, registry, bookkeeping)) == 50


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"k" * 129: "v"}, "has 129 characters; SQS allows 1 to 128"),
        ({"big": "v" * 257}, "tag 'big' has a 257-character value; SQS allows 256"),
    ],
)
def test_tags_longer_than_sqs_allows_fail_with_the_limit(
    tags: dict[str, str], message: str
) -> None:
    with pytest.raises(SqsError, match=message):
        temporary_tags({}, tags, {})


# --- names ----------------------------------------------------------------------


@pytest.mark.parametrize("fallback", [True, False])
@pytest.mark.parametrize(
    "original", ["orders", "orders.fifo", "fallback-x", "a" * 80, "x" * 75 + ".fifo"]
)
def test_rendered_names_match_their_format_and_original(original: str, fallback: bool) -> None:
    name_format = NameFormat(DEFAULT_SQS_QUEUE_FORMAT, "sqs")
    name = name_format.render(original, fallback=fallback)
    assert matches_format(name, name_format, original)


@pytest.mark.parametrize(
    ("name", "original"),
    [
        ("mirrord-tmp-0123456789-orders", "payments"),
        ("mirrord-tmp-0123456789-orders.fifo", "orders"),
        ("mirrord-tmp-0123456789-orders", "orders.fifo"),
        ("mirrord-tmp-012345678-orders", "orders"),
        ("mirrord-tmp-0123456789-", "orders"),
        ("orders", "orders"),
        ("other-0123456789-orders", "orders"),
        ("mirrord-tmp-0123456789-orders-dlq", "orders"),
    ],
)
def test_names_not_rendered_for_the_original_do_not_match(name: str, original: str) -> None:
    assert not matches_format(name, NameFormat(DEFAULT_SQS_QUEUE_FORMAT, "sqs"), original)


def test_a_format_with_the_original_first_matches_its_names() -> None:
    name_format = NameFormat("{{ORIGINAL_QUEUE}}{{FALLBACK}}{{RANDOM}}_tmp", "sqs")
    assert matches_format("orders-fallback-0123456789_tmp", name_format, "orders")
    assert matches_format("ord-er-s-0123456789_tmp", name_format, "ord-er-s")
    assert not matches_format("orders-0123456789_tmp", name_format, "order")
