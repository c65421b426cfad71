"""The SQS adapter raises ``SqsError``s, never botocore's: on real servers and on none."""

from __future__ import annotations

import socket
from typing import Any

import botocore.exceptions as bexc
import pytest

from splitter.errors import SqsError, SqsQueueMissingError, SqsUnavailableError
from splitter.sqs.client import SqsEndpoint, connect
from tests.integration.sqs.support import client_for
from tests.servers.sqs import SqsEndpoint as ServerEndpoint

pytestmark = pytest.mark.integration


async def test_a_missing_queue_is_sqs_queue_missing_caused_by_the_client_error(
    sqs_endpoint: ServerEndpoint, unique_name: str
) -> None:
    async with client_for(sqs_endpoint) as client:
        with pytest.raises(SqsQueueMissingError, match=unique_name) as raised:
            await client.queue_url(unique_name)
    assert isinstance(raised.value.__cause__, bexc.ClientError)
    assert not raised.value.retriable


async def test_a_parameter_botocore_refuses_is_a_non_retriable_sqs_error(
    sqs_endpoint: ServerEndpoint, unique_name: str
) -> None:
    bad: Any = {"DelaySeconds": 5}  # attribute values must be strings
    async with client_for(sqs_endpoint) as client:
        with pytest.raises(SqsError, match="ParamValidationError") as raised:
            await client.create_queue(unique_name, bad, {})
        assert not await client.list_queues(unique_name)
    assert isinstance(raised.value.__cause__, bexc.ParamValidationError)
    assert not raised.value.retriable


async def test_an_endpoint_nobody_listens_on_is_retriable_sqs_unavailable() -> None:
    with socket.socket() as s:  # a loopback port that was free a moment ago: refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = SqsEndpoint(f"http://127.0.0.1:{port}", "us-east-1", "test", "test")
    async with connect(endpoint) as client:
        with pytest.raises(SqsUnavailableError, match="unreachable") as raised:
            await client.receive(f"http://127.0.0.1:{port}/000000000000/q", wait_seconds=0)
    assert isinstance(raised.value.__cause__, bexc.EndpointConnectionError)
    assert raised.value.retriable
