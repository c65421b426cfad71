"""Errors of capture, reassembly and replay.

``TrafficError`` is this layer's root; subclasses are added beside the code
that raises them and listed here. ``retriable`` is data on the class: True
means the condition is temporary and the caller may retry.
"""

from __future__ import annotations

from typing import ClassVar


class TrafficError(Exception):
    """Root of the errors raised by capture, reassembly and replay."""

    retriable: ClassVar[bool] = False
