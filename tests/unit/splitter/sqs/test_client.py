"""Error translation of the SQS adapter (splitter/sqs/client.py): every botocore error
becomes an ``SqsError`` whose ``retriable`` flag says whether trying again can help."""

from __future__ import annotations

import inspect
import string
from typing import Any

import botocore.exceptions as bexc
import pytest

from splitter.errors import (
    SqsError,
    SqsQueueMissingError,
    SqsThrottledError,
    SqsUnavailableError,
)
from splitter.sqs.client import error_class, translate

pytestmark = pytest.mark.unit


def botocore_exceptions() -> list[type[Exception]]:
    """Every exception class botocore.exceptions defines (warnings included)."""
    return sorted(
        (
            cls
            for cls in vars(bexc).values()
            if inspect.isclass(cls)
            and issubclass(cls, Exception)
            and cls.__module__.startswith("botocore")
        ),
        key=lambda cls: cls.__name__,
    )


def client_error(code: str, status: int = 400, cls: type[Any] = bexc.ClientError) -> Any:
    response = {
        "Error": {"Code": code, "Message": f"message of {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return cls(response, "ReceiveMessage")


def instance(cls: type[Exception]) -> Exception:
    """An instance of ``cls`` built as botocore builds it (its ``fmt`` fields filled)."""
    if issubclass(cls, bexc.ClientError):
        return client_error("SomethingElse", 400, cls)  # type: ignore[no-any-return]
    fields = {
        name.split(".")[0].split("[")[0]
        for _text, name, _spec, _conv in string.Formatter().parse(getattr(cls, "fmt", ""))
        if name
    }
    try:
        return cls(**{name: "x" for name in fields})
    except TypeError:  # a class with its own signature (positional arguments)
        params = inspect.signature(cls).parameters.values()
        required = [p for p in params if p.default is p.empty and p.kind == p.POSITIONAL_OR_KEYWORD]
        return cls(*("x" for _ in required))


#: botocore errors after which the same call can succeed: the connection failed, timed
#: out or broke off, the body arrived corrupt, or the client's own retry quota ran out.
TEMPORARY = (
    bexc.ConnectionError,  # EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError
    bexc.HTTPClientError,  # ReadTimeoutError, ConnectionClosedError, ResponseStreamingError
    bexc.IncompleteReadError,
    bexc.ChecksumError,
    bexc.FlexibleChecksumError,
    bexc.CapacityNotAvailableError,
)


def test_botocore_defines_the_exceptions_this_test_reasons_about() -> None:
    names = {cls.__name__ for cls in botocore_exceptions()}
    assert len(names) > 50
    assert {
        "NoCredentialsError",
        "PartialCredentialsError",
        "ParamValidationError",
        "EndpointConnectionError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "ClientError",
    } <= names


@pytest.mark.parametrize("cls", botocore_exceptions(), ids=lambda cls: cls.__name__)
def test_every_botocore_exception_maps_to_an_sqs_error_with_the_right_retriable_flag(
    cls: type[Exception],
) -> None:
    error = instance(cls)
    translated = translate(error, "receiving from q")
    assert isinstance(translated, SqsError)
    assert type(translated) is error_class(error)
    assert "receiving from q" in str(translated)
    assert translated.retriable == isinstance(error, TEMPORARY), (
        f"{cls.__name__} should {'' if isinstance(error, TEMPORARY) else 'not '}be retriable"
    )
    if isinstance(error, bexc.HTTPClientError | bexc.ConnectionError):
        assert isinstance(translated, SqsUnavailableError)


@pytest.mark.parametrize(
    "cls",
    [
        bexc.NoCredentialsError,
        bexc.PartialCredentialsError,
        bexc.CredentialRetrievalError,
        bexc.UnknownCredentialError,
        bexc.ParamValidationError,
        bexc.UnknownParameterError,
        bexc.NoRegionError,
        bexc.InvalidRegionError,
    ],
    ids=lambda cls: cls.__name__,
)
def test_credential_parameter_and_region_errors_are_not_retriable(
    cls: type[Exception],
) -> None:
    translated = translate(instance(cls), "receiving from q")
    assert type(translated) is SqsError
    assert not translated.retriable
    assert cls.__name__ in str(translated)


@pytest.mark.parametrize(
    "cls", [bexc.EndpointConnectionError, bexc.ReadTimeoutError, bexc.ConnectTimeoutError]
)
def test_connection_errors_and_timeouts_are_retriable_unavailable(cls: type[Exception]) -> None:
    translated = translate(instance(cls), "receiving from q")
    assert isinstance(translated, SqsUnavailableError)
    assert translated.retriable
    assert "unreachable" in str(translated)


@pytest.mark.parametrize("error", [ConnectionRefusedError(111, "refused"), TimeoutError()])
def test_socket_errors_botocore_did_not_wrap_are_retriable(error: OSError) -> None:
    assert isinstance(translate(error, "q"), SqsUnavailableError)


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("AWS.SimpleQueueService.NonExistentQueue", 400, SqsQueueMissingError),
        ("QueueDoesNotExist", 400, SqsQueueMissingError),
        ("Throttling", 400, SqsThrottledError),
        ("ThrottlingException", 400, SqsThrottledError),
        ("RequestThrottled", 403, SqsThrottledError),
        ("KMS.ThrottlingException", 400, SqsThrottledError),
        ("TooManyRequestsException", 429, SqsThrottledError),
        ("ServiceUnavailable", 503, SqsThrottledError),
        ("InternalError", 500, SqsThrottledError),
        ("InternalFailure", 500, SqsThrottledError),
        ("SomeNewServerFault", 502, SqsThrottledError),  # any 5xx is the server's
        ("SomethingWeird", 429, SqsThrottledError),
        ("AccessDenied", 403, SqsError),
        ("InvalidClientTokenId", 403, SqsError),
        ("SignatureDoesNotMatch", 403, SqsError),
        ("InvalidParameterValue", 400, SqsError),
        ("AWS.SimpleQueueService.QueueDeletedRecently", 400, SqsError),
    ],
)
def test_client_error_codes_map_by_code_and_status(
    code: str, status: int, expected: type[SqsError]
) -> None:
    translated = translate(client_error(code, status), "sending to q")
    assert type(translated) is expected
    assert translated.retriable == (expected is SqsThrottledError)
    assert code in str(translated)
    assert "sending to q" in str(translated)


def test_an_event_stream_error_maps_like_any_client_error() -> None:
    assert type(translate(client_error("Throttling", 400, bexc.EventStreamError), "q")) is (
        SqsThrottledError
    )


def test_an_error_that_is_not_botocores_is_a_plain_sqs_error() -> None:
    assert error_class(ValueError("x")) is SqsError
