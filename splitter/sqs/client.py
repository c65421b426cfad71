"""The SQS adapter: the only module that imports aiobotocore/botocore.

It offers what the split worker and queue provisioning need, as plain data:

* :func:`connect` opens an :class:`SqsClient` for an :class:`SqsEndpoint`
  (an async context manager; a closed client cannot be reopened);
* queue calls: resolve a name or URL, read attributes and tags, create,
  delete, approximate counts;
* message calls: long-poll receive (every system and message attribute),
  and the three batch calls, each returning a :class:`BatchResult` that
  separates ``Successful`` from ``Failed`` entries - the caller decides.

Every botocore/aiobotocore error is translated here (``raise SqsError(...) from e``,
see :func:`error_class`): throttling, server faults and connection trouble are
retriable, a missing queue, bad credentials and bad parameters are not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
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

_MISSING = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
#: Error codes of a temporary condition on SQS's side (any HTTP status >= 500 counts too).
_THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "KMS.ThrottlingException",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
    }
)
#: botocore errors of a connection that failed, timed out, broke off or returned a corrupt
#: body: the endpoint may answer the next attempt. Every other botocore error is the
#: caller's or the configuration's (credentials, parameters, region) and is not retried.
_UNREACHABLE: tuple[type[Exception], ...] = (
    bexc.ConnectionError,
    bexc.HTTPClientError,
    bexc.IncompleteReadError,
    bexc.ChecksumError,
    bexc.FlexibleChecksumError,
)
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


def _status(e: bexc.ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def error_class(e: BaseException) -> type[SqsError]:
    """The ``SqsError`` subclass a botocore/aiobotocore (or socket) error becomes.

    A missing queue is :class:`SqsQueueMissingError`; throttling, a server-side
    fault (HTTP 5xx) and client-side retry quota running out are
    :class:`SqsThrottledError`; a connection that failed or timed out is
    :class:`SqsUnavailableError` (both retriable); anything else - credentials,
    parameter validation, configuration, a refused request - is a plain,
    non-retriable :class:`SqsError`.
    """
    if isinstance(e, bexc.ClientError):
        code = _code(e)
        if code in _MISSING:
            return SqsQueueMissingError
        if code in _THROTTLED or _status(e) >= 500 or _status(e) == 429:
            return SqsThrottledError
        return SqsError
    if isinstance(e, bexc.CapacityNotAvailableError):
        return SqsThrottledError
    if isinstance(e, _UNREACHABLE):
        return SqsUnavailableError
    if isinstance(e, bexc.BotoCoreError | bexc.UndefinedModelAttributeError):
        return SqsError
    if isinstance(e, OSError):  # aiohttp/socket errors that botocore did not wrap
        return SqsUnavailableError
    return SqsError


def translate(e: BaseException, what: str) -> SqsError:
    """``e`` as the ``SqsError`` of :func:`error_class`, its message naming ``what``."""
    cls = error_class(e)
    if isinstance(e, bexc.ClientError):
        code = _code(e)
        message = e.response.get("Error", {}).get("Message", str(e))
        if cls is SqsQueueMissingError:
            return cls(f"{what}: the queue does not exist ({code})")
        if cls is SqsThrottledError:
            return cls(f"{what}: throttled or failed on the server ({code}: {message})")
        return cls(f"{what}: {code}: {message}")
    if cls is SqsUnavailableError:
        return cls(f"{what}: SQS unreachable ({type(e).__name__}: {e})")
    return cls(f"{what}: {type(e).__name__}: {e}")


#: What the adapter catches and translates; anything else is a bug and propagates as is.
_TRANSLATED = (bexc.ClientError, bexc.BotoCoreError, bexc.UndefinedModelAttributeError, OSError)


class SqsClient:
    """One aiobotocore SQS client; see :func:`connect`."""

    def __init__(self, client: Any) -> None:
        self._client = client

    # --- queues ---------------------------------------------------------------

    async def queue_url(self, name_or_url: str) -> str:
        """The URL of a queue given by name or URL (``SqsQueueMissingError`` if absent).

        A URL is kept as given (after checking the queue exists): it may name a queue
        of another account or region, which its name alone would resolve in the
        client's own account instead."""
        if "://" in name_or_url:
            await self.attributes(name_or_url)  # SqsQueueMissingError if absent
            return name_or_url
        name = name_or_url
        try:
            response = await self._client.get_queue_url(QueueName=name)
        except _TRANSLATED as e:
            raise translate(e, f"queue {name_or_url!r}") from e
        return str(response["QueueUrl"])

    async def attributes(self, url: str) -> dict[str, str]:
        try:
            response = await self._client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        except _TRANSLATED as e:
            raise translate(e, f"attributes of {url}") from e
        return dict(response.get("Attributes", {}))

    async def tags(self, url: str) -> dict[str, str]:
        try:
            response = await self._client.list_queue_tags(QueueUrl=url)
        except _TRANSLATED as e:
            raise translate(e, f"tags of {url}") from e
        return dict(response.get("Tags", {}))

    async def tag_queue(self, url: str, tags: Mapping[str, str]) -> None:
        try:
            await self._client.tag_queue(QueueUrl=url, Tags=dict(tags))
        except _TRANSLATED as e:
            raise translate(e, f"tagging {url}") from e

    async def create_queue(
        self, name: str, attributes: Mapping[str, str], tags: Mapping[str, str]
    ) -> str:
        kwargs: dict[str, Any] = {"QueueName": name, "Attributes": dict(attributes)}
        if tags:
            kwargs["tags"] = dict(tags)
        try:
            response = await self._client.create_queue(**kwargs)
        except _TRANSLATED as e:
            raise translate(e, f"creating queue {name!r}") from e
        return str(response["QueueUrl"])

    async def delete_queue(self, url: str) -> None:
        try:
            await self._client.delete_queue(QueueUrl=url)
        except _TRANSLATED as e:
            error = translate(e, f"deleting {url}")
            if not isinstance(error, SqsQueueMissingError):
                raise error from e

    async def exists(self, url: str) -> bool:
        try:
            await self.attributes(url)
        except SqsQueueMissingError:
            return False
        return True

    async def list_queues(self, prefix: str, *, page_size: int = 1000) -> list[str]:
        """Every queue whose name starts with ``prefix``, following ``NextToken`` page by
        page (``page_size`` URLs each, the SQS maximum 1000 by default)."""
        urls: list[str] = []
        kwargs: dict[str, Any] = {"QueueNamePrefix": prefix, "MaxResults": page_size}
        while True:
            try:
                response = await self._client.list_queues(**kwargs)
            except _TRANSLATED as e:
                raise translate(e, f"listing queues {prefix!r}*") from e
            urls += response.get("QueueUrls", [])
            token = response.get("NextToken")
            if not token:
                return urls
            kwargs["NextToken"] = token

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
        attempt_id: str | None = None,
    ) -> list[Message]:
        """Long-poll up to ``max_messages`` with every attribute.

        ``attempt_id`` is the FIFO ``ReceiveRequestAttemptId``: the same id on a retry
        of one receive makes SQS return the same messages (not lock more of them)."""
        kwargs: dict[str, Any] = {
            "QueueUrl": url,
            "MaxNumberOfMessages": max_messages,
            "WaitTimeSeconds": wait_seconds,
            "MessageAttributeNames": ["All"],
            "MessageSystemAttributeNames": ["All"],
        }
        if visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout
        if attempt_id is not None:
            kwargs["ReceiveRequestAttemptId"] = attempt_id
        try:
            response = await self._client.receive_message(**kwargs)
        except _TRANSLATED as e:
            raise translate(e, f"receiving from {url}") from e
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
            raise translate(e, what) from e
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
    async with AsyncExitStack() as stack:
        try:
            client = await stack.enter_async_context(
                session.create_client(
                    "sqs",
                    endpoint_url=endpoint.url,
                    region_name=endpoint.region,
                    aws_access_key_id=endpoint.access_key_id,
                    aws_secret_access_key=endpoint.secret_access_key,
                    config=config,
                )
            )
        except _TRANSLATED as e:
            raise translate(e, f"SQS client for {endpoint.url or 'AWS'}") from e
        yield SqsClient(client)
