"""Smoke: the SQS fixtures give real servers that round-trip what pymirror relies on."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session

from tests.servers.process import REPO
from tests.servers.sqs import SqsEndpoint, start_localstack

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


def test_sqs_endpoint_fails_not_skips_when_localstack_is_not_installed(tmp_path: Path) -> None:
    """Run pytest on a one-line test with an empty cache: it must fail naming the script."""
    (tmp_path / "test_inner.py").write_text(
        "pytest_plugins = ['tests.fixtures.sqs']\n"
        "import pytest\n"
        "@pytest.mark.parametrize('sqs_endpoint', ['localstack'], indirect=True)\n"
        "def test_inner(sqs_endpoint):\n"
        "    pass\n"
    )
    env = {**os.environ, "PYMIRROR_CACHE": str(tmp_path / "empty"), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout
    assert "1 error" in done.stdout
    assert "skipped" not in done.stdout
    assert "LocalStack is not installed" in done.stdout
    assert "scripts/install-localstack.sh" in done.stdout


async def test_localstack_init_hook_creates_the_queues_named_in_the_environment(
    unique_name: str,
) -> None:
    """localstack/run.sh with PYMIRROR_LOCALSTACK_QUEUES: the READY hook creates them."""
    names = [unique_name, f"{unique_name}.fifo"]
    running = start_localstack(name="localstack-init-hook", queues=names)
    try:
        async with get_session().create_client(
            "sqs",
            endpoint_url=running.endpoint.url,
            region_name=running.endpoint.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        ) as sqs:
            urls = (await sqs.list_queues()).get("QueueUrls", [])
            fifo_url = (await sqs.get_queue_url(QueueName=names[1]))["QueueUrl"]
            fifo = await sqs.get_queue_attributes(QueueUrl=fifo_url, AttributeNames=["All"])
    finally:
        running.stop()
    assert sorted(url.rsplit("/", 1)[-1] for url in urls) == sorted(names)
    assert fifo["Attributes"]["FifoQueue"] == "true"
    assert fifo["Attributes"]["ContentBasedDeduplication"] == "true"


async def test_concurrent_receives_never_get_one_message_twice(
    sqs: Any, sqs_endpoint: SqsEndpoint, unique_name: str
) -> None:
    """8 receivers long-poll one queue of 500 messages that nobody deletes, under a
    300 s visibility timeout: each message is received exactly once. Plain moto fails
    this (its receive picks messages without a lock); pymirror.local_sqs fixes it, and
    the worker tests' duplicate counts rely on that."""
    created = await sqs.create_queue(QueueName=unique_name, Attributes={"VisibilityTimeout": "300"})
    url = created["QueueUrl"]
    total = 500
    for start in range(0, total, 10):
        entries = [{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(10)]
        await sqs.send_message_batch(QueueUrl=url, Entries=entries)
    received: Counter[str] = Counter()

    async def receiver() -> None:
        while len(received) < total:
            got = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            received.update(m["Body"] for m in got.get("Messages", []))

    await asyncio.gather(*(receiver() for _ in range(8)))
    duplicated = {body: n for body, n in received.items() if n > 1}
    assert duplicated == {}
    assert len(received) == total
    await sqs.delete_queue(QueueUrl=url)


async def test_a_queue_with_a_retention_period_set_delivers_its_messages(
    sqs: Any, unique_name: str
) -> None:
    """moto's retention check is patched by pymirror.local_sqs to read the queue's
    ``MessageRetentionPeriod`` alone: set as a string at creation and changed later, it is
    read right: messages sent within it are delivered, and the queue reports the new value."""
    created = await sqs.create_queue(
        QueueName=unique_name, Attributes={"MessageRetentionPeriod": "60"}
    )
    url = created["QueueUrl"]
    await sqs.send_message(QueueUrl=url, MessageBody="first")
    await sqs.set_queue_attributes(QueueUrl=url, Attributes={"MessageRetentionPeriod": "120"})
    await sqs.send_message(QueueUrl=url, MessageBody="second")
    bodies: list[str] = []
    while len(bodies) < 2:
        got = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        bodies += [m["Body"] for m in got.get("Messages", [])]
    attributes = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    assert sorted(bodies) == ["first", "second"]
    assert attributes["Attributes"]["MessageRetentionPeriod"] == "120"
    await sqs.delete_queue(QueueUrl=url)
