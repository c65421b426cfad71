"""Errors of CRD models and Kubernetes access.

``RegistryError`` is this layer's root; subclasses are added beside the code
that raises them and listed here. ``retriable`` is data on the class: True
means the condition is temporary and the caller may retry.
"""

from __future__ import annotations

from typing import ClassVar


class RegistryError(Exception):
    """Root of the errors raised by CRD models and Kubernetes access."""

    retriable: ClassVar[bool] = False


class ClientConfigError(RegistryError):
    """A ``MirrordKafkaClientConfig`` chain cannot be resolved (missing, cycle, bad secret ref)."""
