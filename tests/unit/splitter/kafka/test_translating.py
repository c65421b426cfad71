"""aiokafka errors -> the KafkaError tree (splitter/kafka/translating.py).

Every exception class aiokafka.errors defines is raised inside the adapter's
``translating`` block and must come out as a ``KafkaError`` - retriable
exactly when aiokafka (or the worker's own list of temporary conditions)
says so - with the aiokafka error as its cause.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest
from aiokafka import errors as kerrors

from splitter.errors import KafkaError, KafkaForwardError, KafkaTopicError, KafkaUnavailableError
from splitter.kafka.translating import (
    PERMANENT,
    TEMPORARY,
    error_for_code,
    forward_failure,
    translate_error,
    translating,
)

pytestmark = pytest.mark.unit

AIOKAFKA_ERRORS = sorted(
    {
        c
        for c in vars(kerrors).values()
        if inspect.isclass(c) and issubclass(c, Exception) and c.__module__.startswith("aiokafka")
    },
    key=lambda c: c.__name__,
)


def test_the_iteration_finds_aiokafkas_error_classes() -> None:
    names = {c.__name__ for c in AIOKAFKA_ERRORS}
    assert len(AIOKAFKA_ERRORS) > 90
    assert {"KafkaError", "ConsumerStoppedError", "UnknownTopicOrPartitionError"} <= names


@pytest.mark.parametrize("error_type", AIOKAFKA_ERRORS, ids=lambda c: c.__name__)
async def test_every_aiokafka_error_becomes_a_kafka_error_with_its_cause(
    error_type: type[Exception],
) -> None:
    error = error_type("broker said no")
    with pytest.raises(KafkaError) as info:
        async with translating("doing something"):
            raise error
    translated = info.value
    assert translated.__cause__ is error
    assert str(translated).startswith("doing something: ")
    if error_type in PERMANENT:
        assert type(translated) is PERMANENT[error_type]
        assert not translated.retriable
    elif getattr(error_type, "retriable", False) or issubclass(error_type, TEMPORARY):
        assert type(translated) is KafkaUnavailableError
        assert translated.retriable
    else:
        assert type(translated) is KafkaError
        assert not translated.retriable


def test_a_missing_topic_is_permanent_though_aiokafka_calls_it_retriable() -> None:
    assert kerrors.UnknownTopicOrPartitionError.retriable
    translated = translate_error(kerrors.UnknownTopicOrPartitionError(), "describing 'views'")
    assert type(translated) is KafkaTopicError
    assert "does not exist" in str(translated)


@pytest.mark.parametrize(
    ("error_type", "retriable"),
    [
        (kerrors.KafkaConnectionError, True),  # marked retriable by aiokafka
        (kerrors.NotCoordinatorForGroupError, True),
        (kerrors.CommitFailedError, True),  # a rebalance refused the commit: temporary
        (kerrors.IllegalGenerationError, True),
        (kerrors.KafkaTimeoutError, True),
        (kerrors.TopicAuthorizationFailedError, False),
        (kerrors.RecordTooLargeError, False),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_known_conditions_keep_their_retriability(
    error_type: type[Exception], retriable: bool
) -> None:
    assert translate_error(error_type("x"), "committing").retriable is retriable


async def test_socket_errors_are_unavailable() -> None:
    with pytest.raises(KafkaUnavailableError) as info:
        async with translating("connecting"):
            raise ConnectionRefusedError(111, "Connection refused")
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


async def test_errors_that_are_not_aiokafkas_pass_through() -> None:
    with pytest.raises(ValueError, match="a bug"):
        async with translating("anything"):
            raise ValueError("a bug")


@pytest.mark.parametrize(
    ("code", "expected"),
    [(3, KafkaTopicError), (15, KafkaUnavailableError), (36, KafkaError), (29, KafkaError)],
)
def test_response_error_codes_translate_like_exceptions(
    code: int, expected: type[KafkaError]
) -> None:
    translated = error_for_code(code, None, "creating topic 'views'")
    assert type(translated) is expected
    assert str(translated).startswith("creating topic 'views'")


async def test_forward_failure_reports_failed_and_cancelled_forwards_only() -> None:
    loop = asyncio.get_running_loop()
    ok, failed, cancelled = loop.create_future(), loop.create_future(), loop.create_future()
    ok.set_result(None)
    cause = kerrors.NotEnoughReplicasError("2 of 3")
    failed.set_exception(cause)
    cancelled.cancel()
    assert forward_failure(ok, "views[0]") is None
    error = forward_failure(failed, "views[0]")
    assert isinstance(error, KafkaForwardError)
    assert error.retriable
    assert error.__cause__ is cause
    assert "views[0]" in str(error)
    assert "NotEnoughReplicasError" in str(error)
    cancelled_error = forward_failure(cancelled, "views[1]")
    assert isinstance(cancelled_error, KafkaForwardError)
    assert "cancelled" in str(cancelled_error)
