"""The sandbox's errors (reported by the CLI as ``SandboxError: message``)."""

from __future__ import annotations

from pymirror.errors import PymirrorError


class SandboxError(PymirrorError):
    """The sandbox could not be brought up, or a component of it failed; the message says which."""
