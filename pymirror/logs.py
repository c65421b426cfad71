"""structlog set-up: JSON lines when stderr is not a terminal, readable output on one.

Call :func:`configure` once at start-up; everything else uses
``structlog.get_logger()`` and binds its context (``queue``, ``session``,
``worker``) so that every line says which split it is about.

``structlog`` imports ``rich`` (and through it ``pygments``) when ``rich`` is
installed, for the console renderer's tracebacks and for ``dict_tracebacks``:
several MiB resident that JSON lines never use. So when the first import of
``structlog`` in the process is :func:`configure`'s and the format is ``json``
(a split worker, an operator pod: stderr is not a terminal), ``structlog`` is
imported as if ``rich`` were not installed (:func:`_import_structlog`: its
documented fallback, the one of an install without ``rich``). ``rich`` itself
stays importable for whoever needs it afterwards. A process that imported
``structlog`` earlier (any command whose module needs it at import time) or that
renders for a console keeps ``structlog``'s ``rich`` support; the console output
is the same either way. This module therefore does not import ``structlog`` at
import time (``pymirror.settings`` imports it for :data:`LogFormat`).
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

LogFormat = Literal["auto", "json", "console"]

#: Optional packages ``structlog`` imports only for console tracebacks and pretty locals.
CONSOLE_ONLY_PACKAGES = ("rich",)


def _import_structlog(fmt: LogFormat) -> None:
    """Import ``structlog``; its first import for JSON output without :data:`CONSOLE_ONLY_PACKAGES`.

    A ``None`` entry in ``sys.modules`` makes ``import rich`` raise ``ImportError``
    (the import system's documented behaviour), which ``structlog`` treats as
    ``rich`` not installed. The entries are removed right after, so a later
    ``import rich`` works.
    """
    if "structlog" in sys.modules or fmt != "json":
        return
    blocked = [name for name in CONSOLE_ONLY_PACKAGES if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import structlog  # noqa: F401
    finally:
        for name in blocked:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


def configure(level: str = "info", fmt: LogFormat = "auto") -> None:
    """Route structlog to stderr with the chosen renderer; idempotent."""
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}; use debug, info, warning or error")
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    _import_structlog(fmt)
    import structlog

    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
