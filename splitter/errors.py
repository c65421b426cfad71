"""Errors of the queue engine (filters, naming, SQS and Kafka adapters, workers).

``SplitterError`` is this layer's root; subclasses are added beside the code
that raises them and listed here. ``retriable`` is data on the class: True
means the condition is temporary and the caller may retry.
"""

from __future__ import annotations

from typing import ClassVar


class SplitterError(Exception):
    """Root of the errors raised by the queue engine."""

    retriable: ClassVar[bool] = False
