"""The SQS adapter: the only module that imports aiobotocore/botocore.

It offers what the split worker and queue provisioning need, as plain data:

* :func:`connect` opens an :class:`SqsClient` for an :class:`SqsEndpoint`
  (an async context manager; a closed client cannot be reopened);
* queue calls: resolve a name or URL, read attributes and tags, create,
  delete, approximate counts;
* message calls: long-poll receive (every system and message attribute),
  and the three batch calls, each returning a :class:`BatchResult` that
  separates ``Successful`` from ``Failed`` entries - the caller decides.

botocore errors are translated here (``raise SqsError(...) from e``):
throttling and connection trouble are retriable, a missing queue is not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions as bexc
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from splitter.errors import (
    SqsError,
    SqsQueueMissingError,
    SqsThrottledError,
    SqsUnavailableError,
)

Message = dict[str, Any]
"""One received message as botocore returns it (MessageId, ReceiptHandle, Body, ...)."""

_MISSING = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
}
#: Queue attributes that are read-only or derived; everything else is copied.
READ_ONLY_ATTRIBUTES = frozenset(
    {
        "QueueArn",
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
        "CreatedTimestamp",
        "LastModifiedTimestamp",
        "SqsManagedSseEnabled",  # set with the KMS attributes below when it matters
    }
)


@dataclass(frozen=True)
class SqsEndpoint:
    """Where SQS is; ``url`` None means AWS itself (credentials from the environment)."""

    url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    #: HTTP connections in the pool; concurrent long polls + batch calls need one each.
    max_connections: int = 64


@dataclass
class BatchResult:
    """Entry ids of one batch call, split by outcome."""

    ok: list[str] = field(default_factory=list)
    #: id -> (error code, message, sender_fault)
    failed: dict[str, tuple[str, str, bool]] = field(default_factory=dict)


def _code(e: bexc.ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _translate(e: Exception, what: str) -> SqsError:
    if isinstance(e, bexc.ClientError):
        code = _code(e)
        message = e.response.get("Error", {}).get("Message", str(e))
        if code in _MISSING:
            return SqsQueueMissingError(f"{what}: the queue does not exist ({code})")
        if code in _THROTTLED:
            return SqsThrottledError(f"{what}: throttled ({code}: {message})")
        return SqsError(f"{what}: {code}: {message}")
    if isinstance(e, bexc.BotoCoreError | OSError):
        return SqsUnavailableError(f"{what}: SQS unreachable ({e})")
    return SqsError(f"{what}: {e}")


_TRANSLATED = (bexc.ClientError, bexc.BotoCoreError, OSError)


class SqsClient:
    """One aiobotocore SQS client; see :func:`connect`."""

    def __init__(self, client: Any) -> None:
        self._client = client

    # --- queues ---------------------------------------------------------------

    async def queue_url(self, name_or_url: str) -> str:
        """The URL of a queue given by name or URL (``SqsQueueMissingError`` if absent)."""
        name = name_or_url.rstrip("/").rsplit("/", 1)[-1]
        try:
            response = await self._client.get_queue_url(QueueName=name)
        except _TRANSLATED as e:
            raise _translate(e, f"queue {name_or_url!r}") from e
        return str(response["QueueUrl"])

    async def attributes(self, url: str) -> dict[str, str]:
        try:
            response = await self._client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        except _TRANSLATED as e:
            raise _translate(e, f"attributes of {url}") from e
        return dict(response.get("Attributes", {}))

    async def tags(self, url: str) -> dict[str, str]:
        try:
            response = await self._client.list_queue_tags(QueueUrl=url)
        except _TRANSLATED as e:
            raise _translate(e, f"tags of {url}") from e
        return dict(response.get("Tags", {}))

    async def create_queue(
        self, name: str, attributes: Mapping[str, str], tags: Mapping[str, str]
    ) -> str:
        kwargs: dict[str, Any] = {"QueueName": name, "Attributes": dict(attributes)}
        if tags:
            kwargs["tags"] = dict(tags)
        try:
            response = await self._client.create_queue(**kwargs)
        except _TRANSLATED as e:
            raise _translate(e, f"creating queue {name!r}") from e
        return str(response["QueueUrl"])

    async def delete_queue(self, url: str) -> None:
        try:
            await self._client.delete_queue(QueueUrl=url)
        except _TRANSLATED as e:
            error = _translate(e, f"deleting {url}")
            if not isinstance(error, SqsQueueMissingError):
                raise error from e

    async def exists(self, url: str) -> bool:
        try:
            await self.attributes(url)
        except SqsQueueMissingError:
            return False
        return True

    async def list_queues(self, prefix: str) -> list[str]:
        try:
            response = await self._client.list_queues(QueueNamePrefix=prefix)
        except _TRANSLATED as e:
            raise _translate(e, f"listing queues {prefix!r}*") from e
        return list(response.get("QueueUrls", []))

    async def counts(self, url: str) -> tuple[int, int, int]:
        """Approximate (visible, in flight, delayed) messages."""
        attributes = await self.attributes(url)
        return (
            int(attributes.get("ApproximateNumberOfMessages", 0)),
            int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        )

    # --- messages -------------------------------------------------------------

    async def receive(
        self,
        url: str,
        *,
        max_messages: int = 10,
        wait_seconds: int = 20,
        visibility_timeout: int | None = None,
    ) -> list[Message]:
        """Long-poll up to ``max_messages`` with every attribute."""
        kwargs: dict[str, Any] = {
            "QueueUrl": url,
            "MaxNumberOfMessages": max_messages,
            "WaitTimeSeconds": wait_seconds,
            "MessageAttributeNames": ["All"],
            "MessageSystemAttributeNames": ["All"],
        }
        if visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout
        try:
            response = await self._client.receive_message(**kwargs)
        except _TRANSLATED as e:
            raise _translate(e, f"receiving from {url}") from e
        return list(response.get("Messages", []))

    async def send_batch(self, url: str, entries: Sequence[Mapping[str, Any]]) -> BatchResult:
        """``SendMessageBatch`` (at most 10 entries, each with a unique ``Id``)."""
        return await self._batch("send_message_batch", url, entries, f"sending to {url}")

    async def delete_batch(self, url: str, entries: Sequence[tuple[str, str]]) -> BatchResult:
        """``DeleteMessageBatch`` of (id, receipt handle)."""
        batch = [{"Id": i, "ReceiptHandle": handle} for i, handle in entries]
        return await self._batch("delete_message_batch", url, batch, f"deleting from {url}")

    async def change_visibility_batch(
        self, url: str, entries: Sequence[tuple[str, str]], visibility: int
    ) -> BatchResult:
        """``ChangeMessageVisibilityBatch`` of (id, receipt handle) to ``visibility`` seconds."""
        batch = [
            {"Id": i, "ReceiptHandle": handle, "VisibilityTimeout": visibility}
            for i, handle in entries
        ]
        return await self._batch(
            "change_message_visibility_batch", url, batch, f"changing visibility in {url}"
        )

    async def _batch(
        self, call: str, url: str, entries: Sequence[Mapping[str, Any]], what: str
    ) -> BatchResult:
        try:
            response = await getattr(self._client, call)(QueueUrl=url, Entries=list(entries))
        except _TRANSLATED as e:
            raise _translate(e, what) from e
        result = BatchResult([entry["Id"] for entry in response.get("Successful", [])])
        for entry in response.get("Failed", []):
            result.failed[entry["Id"]] = (
                str(entry.get("Code", "")),
                str(entry.get("Message", "")),
                bool(entry.get("SenderFault", False)),
            )
        return result


@asynccontextmanager
async def connect(endpoint: SqsEndpoint) -> AsyncIterator[SqsClient]:
    """An :class:`SqsClient` for ``endpoint``, closed on exit."""
    config = AioConfig(
        max_pool_connections=endpoint.max_connections,
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,  # > the 20 s long poll
    )
    session = get_session()
    async with session.create_client(
        "sqs",
        endpoint_url=endpoint.url,
        region_name=endpoint.region,
        aws_access_key_id=endpoint.access_key_id,
        aws_secret_access_key=endpoint.secret_access_key,
        config=config,
    ) as client:
        yield SqsClient(client)
