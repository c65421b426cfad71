"""Sub-commands of the ``pymirror`` CLI, one module each.

A module here exposes ``register(subparsers) -> None``; add it to
``COMMANDS`` to make it reachable.
"""

from __future__ import annotations

from types import ModuleType

from pymirror.commands import demo, info, mirror, replay, worker

COMMANDS: list[ModuleType] = [demo, info, mirror, replay, worker]
