"""Errors of the queue engine (filters, naming, SQS and Kafka adapters, workers).

``SplitterError`` is this layer's root; subclasses are added beside the code
that raises them and listed here::

    SplitterError
    ├── FilterError                bad regex / jq program / mode in a session filter
    ├── NameFormatError            bad temporary-name format, or a name cannot fit it
    ├── SqsError                   splitter/sqs*.py
    │   ├── SqsQueueMissingError   the queue does not exist
    │   ├── NotOursError           a queue to drain/delete that pymirror did not make for this split
    │   ├── SqsThrottledError      throttled or a server-side fault (retriable)
    │   └── SqsUnavailableError    endpoint unreachable (retriable)
    └── KafkaError                 splitter/kafka/
        ├── KafkaPropertyError     unknown/bad client property (names it)
        ├── KafkaTopicError        missing topic, create/delete failed
        ├── KafkaUnavailableError  brokers unreachable (retriable)
        └── KafkaForwardError      a forward was not acknowledged (retriable)

``retriable`` is data on the class: True means the condition is temporary
and the caller may retry.
"""

from __future__ import annotations

from typing import ClassVar


class SplitterError(Exception):
    """Root of the errors raised by the queue engine."""

    retriable: ClassVar[bool] = False


# --- Kafka (splitter/kafka/) ---------------------------------------------


class KafkaError(SplitterError):
    """A Kafka operation failed; the message names the topic or group."""


class KafkaPropertyError(KafkaError):
    """A Kafka client property is unknown or has a bad value; the message names it."""


class KafkaTopicError(KafkaError):
    """A topic is missing, cannot be created or cannot be deleted."""


class KafkaUnavailableError(KafkaError):
    """The brokers cannot be reached or answered with a temporary error."""

    retriable: ClassVar[bool] = True


class KafkaForwardError(KafkaError):
    """A forwarded record was not acknowledged; no offset past it was committed."""

    retriable: ClassVar[bool] = True


# --- filters and names (splitter/filters.py, splitter/naming.py) -------------


class FilterError(SplitterError):
    """A session filter does not compile (bad regex, bad jq program, bad mode)."""


class NameFormatError(SplitterError):
    """A temporary-name format is invalid, or a queue/topic name cannot fit it."""


# --- SQS (splitter/sqs*.py) ---------------------------------------------------


class SqsError(SplitterError):
    """An SQS call failed; the message names the queue."""


class SqsQueueMissingError(SqsError):
    """The queue does not exist (check the name/URL and the region)."""


class NotOursError(SqsError):
    """A queue pymirror would drain and delete was not created by pymirror for this split."""


class SqsThrottledError(SqsError):
    """SQS throttled the call or failed on its side; retry with backoff."""

    retriable: ClassVar[bool] = True


class SqsUnavailableError(SqsError):
    """The SQS endpoint cannot be reached."""

    retriable: ClassVar[bool] = True
