"""Smoke: the SQS fixtures give real servers that round-trip what pymirror relies on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiobotocore.session import get_session

from tests.servers.sqs import SqsEndpoint

pytestmark = pytest.mark.integration


@pytest.fixture
async def sqs(sqs_endpoint: SqsEndpoint) -> AsyncIterator[Any]:
    session = get_session()
    async with session.create_client(
        "sqs",
        endpoint_url=sqs_endpoint.url,
        region_name=sqs_endpoint.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ) as client:
        yield client


async def test_message_with_string_number_binary_attributes_round_trips(
    sqs: Any, sqs_endpoint: SqsEndpoint, unique_name: str
) -> None:
    created = await sqs.create_queue(QueueName=unique_name, tags={"team": "a", "owner": "me"})
    url = created["QueueUrl"]
    attributes = {
        "session": {"DataType": "String", "StringValue": "alice"},
        "count": {"DataType": "Number", "StringValue": "42"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xffraw"},
    }
    sent = await sqs.send_message(QueueUrl=url, MessageBody="hello", MessageAttributes=attributes)

    got = await sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=2, MessageAttributeNames=["All"]
    )

    (message,) = got["Messages"]
    assert message["MessageId"] == sent["MessageId"]
    assert message["Body"] == "hello"
    assert message["MessageAttributes"] == attributes
    await sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    empty = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    assert empty.get("Messages", []) == []
    await sqs.delete_queue(QueueUrl=url)


async def test_queue_tags_can_be_set_read_and_removed(sqs: Any, unique_name: str) -> None:
    url = (await sqs.create_queue(QueueName=unique_name, tags={"team": "a"}))["QueueUrl"]

    await sqs.tag_queue(QueueUrl=url, Tags={"pymirror/session": "alice"})
    await sqs.untag_queue(QueueUrl=url, TagKeys=["team"])

    tags = (await sqs.list_queue_tags(QueueUrl=url)).get("Tags", {})
    assert tags == {"pymirror/session": "alice"}
    await sqs.delete_queue(QueueUrl=url)
