"""aiokafka errors -> the ``KafkaError`` tree of :mod:`splitter.errors` (adapter side).

Every call into aiokafka runs inside :func:`translating`, so nothing above
the adapter ever sees an aiokafka exception (``raise X(...) from e`` keeps
the original as the cause). The rules of :func:`translate_error`:

* ``UnknownTopicOrPartitionError`` -> ``KafkaTopicError``: aiokafka marks it
  retriable (metadata may catch up), but here every topic is checked before
  the worker starts, so a missing one is a configuration error, not a wait;
* every error aiokafka marks ``retriable``, and the group-coordination errors
  a rebalance causes (a commit refused by it: the next owner re-reads from
  the last commit), plus timeouts and unreachable brokers ->
  ``KafkaUnavailableError`` (retriable);
* everything else -> ``KafkaError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import errors as kerrors

from splitter.errors import KafkaError, KafkaForwardError, KafkaTopicError, KafkaUnavailableError

#: Retriable in aiokafka, permanent here (see the module docstring).
PERMANENT: dict[type[BaseException], type[KafkaError]] = {
    kerrors.UnknownTopicOrPartitionError: KafkaTopicError,
}

#: Not marked retriable by aiokafka, but temporary for the worker.
TEMPORARY: tuple[type[BaseException], ...] = (
    kerrors.KafkaTimeoutError,
    kerrors.KafkaUnavailableError,
    kerrors.RebalanceInProgressError,
    kerrors.CommitFailedError,
    kerrors.IllegalGenerationError,
    kerrors.UnknownMemberIdError,
)

#: What aiokafka raises that is not a ``kafka.errors.KafkaError``.
OTHER_ERRORS: tuple[type[Exception], ...] = (
    kerrors.ConsumerStoppedError,
    kerrors.IllegalOperation,
)

#: Everything aiokafka raises, for an ``except`` on a hot path.
AIOKAFKA_ERRORS: tuple[type[Exception], ...] = (kerrors.KafkaError, *OTHER_ERRORS)


def _describe(e: BaseException) -> str:
    try:
        return f"{type(e).__name__}: {e}"
    except AttributeError:  # aiokafka's bare BrokerResponseError has no errno to print
        return f"{type(e).__name__}: {' '.join(map(str, e.args))}"


def translate_error(e: BaseException, what: str) -> KafkaError:
    """The ``KafkaError`` for aiokafka error ``e`` raised while doing ``what``."""
    for error_type, translated in PERMANENT.items():
        if isinstance(e, error_type):
            return translated(f"{what}: topic or partition does not exist")
    if getattr(e, "retriable", False) or isinstance(e, TEMPORARY):
        return KafkaUnavailableError(f"{what}: {_describe(e)}")
    return KafkaError(f"{what}: {_describe(e)}")


def error_for_code(code: int, message: str | None, what: str) -> KafkaError:
    """The ``KafkaError`` for a broker error code in a response."""
    error = kerrors.for_code(code)
    return translate_error(error(message or error.description), what)


@asynccontextmanager
async def translating(what: str) -> AsyncIterator[None]:
    """Raise every aiokafka error (and socket error) of the block as a ``KafkaError``."""
    try:
        yield
    except AIOKAFKA_ERRORS as e:
        raise translate_error(e, what) from e
    except OSError as e:
        raise KafkaUnavailableError(f"{what}: {e}") from e


def forward_failure(future: asyncio.Future[Any], where: str) -> KafkaForwardError | None:
    """The error of a completed forward future, translated, or None."""
    if future.cancelled():
        return KafkaForwardError(f"forward to {where} was cancelled")
    error = future.exception()
    if error is None:
        return None
    forward = KafkaForwardError(f"forward to {where} failed: {type(error).__name__}: {error}")
    forward.__cause__ = error
    return forward
