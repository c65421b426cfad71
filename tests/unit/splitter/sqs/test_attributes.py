"""Attributes and Policy of temporary SQS queues (splitter/sqs/attributes.py)."""

from __future__ import annotations

import json

import pytest

from splitter.errors import SqsError
from splitter.sqs.attributes import rewrite_policy, temporary_arn, temporary_attributes

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


def test_a_fifo_temporary_gets_no_delay_because_a_fifo_forward_cannot_set_one_per_message() -> None:
    got = attributes_for(
        {**READ_ONLY, "FifoQueue": "true", "DelaySeconds": "30"},
        name="orders.fifo",
        temp="mirrord-tmp-0123456789-orders.fifo",
    )
    assert got["DelaySeconds"] == "0"
    assert attributes_for({**READ_ONLY, "DelaySeconds": "30"})["DelaySeconds"] == "30"


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


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("arn:aws:sqs:*:111122223333:orders", f"arn:aws:sqs:*:111122223333:{TEMP}"),
        ("arn:aws:sqs:eu-west-1:*:orders", f"arn:aws:sqs:eu-west-1:*:{TEMP}"),
        ("arn:aws:sqs:*:*:orders", f"arn:aws:sqs:*:*:{TEMP}"),
        ("arn:aws:sqs:us-east-1:111122223333:orders", "arn:aws:sqs:us-east-1:111122223333:orders"),
        ("arn:aws:sqs:*:999988887777:orders", "arn:aws:sqs:*:999988887777:orders"),
        ("arn:aws:sqs:*:111122223333:orders-dlq", "arn:aws:sqs:*:111122223333:orders-dlq"),
        ("arn:aws:sns:*:111122223333:orders", "arn:aws:sns:*:111122223333:orders"),
    ],
)
def test_a_policy_arn_with_a_wildcard_region_or_account_is_the_originals_and_is_rewritten(
    written: str, expected: str
) -> None:
    policy = json.dumps({"Statement": [{"Resource": written}]})
    assert json.loads(rewrite_policy(policy, "orders", ARN, TEMP)) == {
        "Statement": [{"Resource": expected}]
    }
