"""Provisioning temporary SQS queues on real servers (moto, LocalStack): splitter/sqs/queues.py."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import pytest

from splitter.errors import NameFormatError, SqsError, SqsQueueMissingError
from splitter.naming import DEFAULT_SQS_QUEUE_FORMAT, NameFormat
from splitter.sqs.attributes import WRITABLE_ATTRIBUTES
from splitter.sqs.client import SqsClient, SqsEndpoint, connect
from splitter.sqs.queue_names import queue_name
from splitter.sqs.queues import (
    create_temporary_queue,
    delete_temporary_queue,
    find_temporary_queues,
)
from tests.servers.sqs import SqsEndpoint as ServerEndpoint

pytestmark = pytest.mark.integration

DEFAULT_FORMAT = NameFormat(DEFAULT_SQS_QUEUE_FORMAT, "sqs")
COPIED = WRITABLE_ATTRIBUTES - {"Policy"}  # the Policy is rewritten, asserted as text


@pytest.fixture
async def sqs(sqs_endpoint: ServerEndpoint) -> AsyncIterator[SqsClient]:
    endpoint = SqsEndpoint(sqs_endpoint.url, sqs_endpoint.region, "test", "test")
    async with connect(endpoint) as client:
        yield client


async def all_queues(sqs: SqsClient) -> list[str]:
    return sorted(await sqs.list_queues(""))


def copied(attributes: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in attributes.items() if key in COPIED}


def policy_for(arn: str, name: str, url: str, dlq_arn: str) -> str:
    # Written as json.dumps writes it: moto re-serializes a Policy with json.dumps
    # on the way in, so only this form round-trips as the same text on moto
    # (LocalStack keeps the text as sent, like SQS). The rewrite itself is
    # text-preserving, which the unit tests show on hand-formatted policies.
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Id": f"{arn}/SQSDefaultPolicy",
            "Statement": [
                {
                    "Sid": name,
                    "Effect": "Allow",
                    "Principal": {"AWS": "*"},
                    "Action": "sqs:SendMessage",
                    "Resource": [arn, dlq_arn],
                },
                {
                    "Sid": "by-url",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "sqs:PurgeQueue",
                    "Resource": url,
                },
            ],
        }
    )


async def test_a_temporary_queue_copies_attributes_tags_and_the_rewritten_policy(
    sqs: SqsClient, unique_name: str
) -> None:
    """Original with a real DLQ, non-default settings, KMS, tags and a Policy naming
    itself (ARN, name, URL) and its DLQ: the session's temporary queue has the same
    settings, tags + registry tags (registry wins) + bookkeeping, and the Policy
    with only the original's ARN/name/URL replaced - asserted as text after the
    round trip through the server."""
    dlq = await sqs.create_queue(f"{unique_name}-dlq", {}, {})
    dlq_arn = (await sqs.attributes(dlq))["QueueArn"]
    # The Policy names the queue's own ARN and URL: derive them from the DLQ's
    # (the account id differs between the servers).
    arn = f"{dlq_arn.rsplit(':', 1)[0]}:{unique_name}"
    url = f"{dlq.rsplit('/', 1)[0]}/{unique_name}"
    policy = policy_for(arn, unique_name, url, dlq_arn)
    original = await sqs.create_queue(
        unique_name,
        {
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 4}),
            "VisibilityTimeout": "45",
            "DelaySeconds": "3",
            "MessageRetentionPeriod": "86400",
            "MaximumMessageSize": "2048",
            "ReceiveMessageWaitTimeSeconds": "7",
            "KmsMasterKeyId": "alias/aws/sqs",
            "KmsDataKeyReusePeriodSeconds": "600",
            "Policy": policy,
        },
        {"team": "payments", "env": "dev"},
    )
    original_attributes = await sqs.attributes(original)
    assert (original, original_attributes["QueueArn"]) == (url, arn)
    assert original_attributes["Policy"] == policy

    temp = await create_temporary_queue(
        sqs,
        original,
        DEFAULT_FORMAT,
        fallback=False,
        session="alice",
        registry_tags={"env": "shared", "cost-center": "42"},
        random_digits="0123456789",
    )

    assert temp.name == f"mirrord-tmp-0123456789-{unique_name}"
    assert queue_name(temp.url) == temp.name
    assert (temp.original_url, temp.fallback, temp.session) == (original, False, "alice")
    temp_attributes = await sqs.attributes(temp.url)
    assert copied(temp_attributes) == copied(original_attributes)
    assert json.loads(temp_attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": 4,
    }
    assert temp_attributes["VisibilityTimeout"] == "45"
    assert temp_attributes["DelaySeconds"] == "3"
    assert temp_attributes["MessageRetentionPeriod"] == "86400"
    assert temp_attributes["KmsMasterKeyId"] == "alias/aws/sqs"
    temp_arn = temp_attributes["QueueArn"]
    assert temp_arn == f"{arn.rsplit(':', 1)[0]}:{temp.name}"
    temp_url = original.rsplit("/", 1)[0] + "/" + temp.name
    # The DLQ's ARN ends "<original>-dlq": another queue, left as it was.
    assert temp_attributes["Policy"] == policy_for(temp_arn, temp.name, temp_url, dlq_arn)
    assert await sqs.tags(temp.url) == {
        "team": "payments",
        "env": "shared",
        "cost-center": "42",
        "pymirror.dev/created-by": "pymirror",
        "pymirror.dev/original-queue": unique_name,
        "pymirror.dev/session": "alice",
    }
    await delete_temporary_queue(sqs, temp.url)
    assert not await sqs.exists(temp.url)
    assert await sqs.exists(original)


async def test_a_fifo_original_gives_a_fifo_fallback_with_the_same_fifo_settings(
    sqs: SqsClient, unique_name: str
) -> None:
    fifo = {
        "FifoQueue": "true",
        "ContentBasedDeduplication": "true",
        "DeduplicationScope": "messageGroup",
        "FifoThroughputLimit": "perMessageGroupId",
    }
    original = await sqs.create_queue(
        f"{unique_name}.fifo", {**fifo, "VisibilityTimeout": "90"}, {}
    )

    temp = await create_temporary_queue(
        sqs, f"{unique_name}.fifo", DEFAULT_FORMAT, fallback=True, session=None
    )

    assert re.fullmatch(rf"mirrord-tmp-\d{{10}}-fallback-{unique_name}\.fifo", temp.name)
    temp_attributes = await sqs.attributes(temp.url)
    assert {key: temp_attributes.get(key) for key in fifo} == fifo
    assert copied(temp_attributes) == copied(await sqs.attributes(original))
    assert (await sqs.tags(temp.url))["pymirror.dev/fallback"] == "true"
    # Content-based deduplication works on the temporary: the same body twice is one message.
    entries = [{"Id": str(i), "MessageBody": "same", "MessageGroupId": "g"} for i in range(2)]
    assert len((await sqs.send_batch(temp.url, entries)).ok) == 2
    messages = await sqs.receive(temp.url, wait_seconds=1)
    assert [m["Body"] for m in messages] == ["same"]
    await delete_temporary_queue(sqs, temp.url)


async def test_an_unknown_original_queue_fails_naming_it_and_creates_nothing(
    sqs: SqsClient, unique_name: str
) -> None:
    before = await all_queues(sqs)
    with pytest.raises(SqsQueueMissingError, match=rf"original queue '{unique_name}' does not"):
        await create_temporary_queue(
            sqs, unique_name, DEFAULT_FORMAT, fallback=False, session="alice"
        )
    assert await all_queues(sqs) == before


async def test_a_format_the_queue_name_cannot_fit_fails_and_creates_nothing(
    sqs: SqsClient, unique_name: str
) -> None:
    """The format leaves 4 characters for the original's name: enough for a standard
    queue, but a FIFO queue's names also need the ``.fifo`` suffix (5)."""
    fifo = f"{unique_name}.fifo"
    await sqs.create_queue(fifo, {"FifoQueue": "true"}, {})
    tight = NameFormat("x" * 56 + "{{RANDOM}}{{FALLBACK}}{{ORIGINAL_QUEUE}}", "sqs")
    before = await all_queues(sqs)
    with pytest.raises(NameFormatError, match=rf"temporary name for '{fifo}' cannot fit"):
        await create_temporary_queue(sqs, fifo, tight, fallback=True, session=None)
    assert await all_queues(sqs) == before


async def test_more_than_fifty_tags_fail_before_anything_is_created(
    sqs: SqsClient, unique_name: str
) -> None:
    """LocalStack does not enforce SQS's 50-tag limit (moto does): pymirror checks it
    itself, so both servers see the same error and no queue."""
    await sqs.create_queue(unique_name, {}, {f"k{i}": "v" for i in range(40)})
    before = await all_queues(sqs)
    with pytest.raises(SqsError, match=r"would get 53 tags .* SQS allows 50; remove 3"):
        await create_temporary_queue(
            sqs,
            unique_name,
            DEFAULT_FORMAT,
            fallback=False,
            session="alice",
            registry_tags={f"r{i}": "v" for i in range(10)},
        )
    assert await all_queues(sqs) == before


async def test_rendered_names_follow_the_format_and_are_found_for_garbage_collection(
    sqs: SqsClient, unique_name: str
) -> None:
    """A long original under a format with the original first: names are cut to 80
    characters in the original's part, random digits intact; both queues are found
    by their tags for the original, and a queue not made by pymirror is never
    deleted."""
    original = unique_name + "-" + "o" * (80 - len(unique_name) - 1)
    await sqs.create_queue(original, {}, {})
    name_format = NameFormat("{{ORIGINAL_QUEUE}}{{FALLBACK}}{{RANDOM}}-pm", "sqs")

    fallback = await create_temporary_queue(sqs, original, name_format, fallback=True, session=None)
    alice = await create_temporary_queue(
        sqs, original, name_format, fallback=False, session="alice"
    )

    assert re.fullmatch(rf"{original[:57]}-fallback-\d{{10}}-pm", fallback.name)
    assert re.fullmatch(rf"{original[:66]}-\d{{10}}-pm", alice.name)
    assert len(fallback.name) == len(alice.name) == 80
    found = await find_temporary_queues(sqs, original, name_format)
    assert sorted((q.name, q.fallback, q.session) for q in found) == sorted(
        [(fallback.name, True, None), (alice.name, False, "alice")]
    )
    with pytest.raises(SqsError, match=r"refusing to delete .* pymirror did not create it"):
        await delete_temporary_queue(sqs, await sqs.queue_url(original))
    for queue in found:
        await delete_temporary_queue(sqs, queue.url)
    assert await find_temporary_queues(sqs, original, name_format) == []
    assert await sqs.exists(await sqs.queue_url(original))
