"""The ``pymirror`` command line.

Each sub-command lives in ``pymirror/commands/<name>.py``, listed in
:data:`pymirror.commands.COMMANDS` with its one-line help, and exposes
``configure(parser)``, which adds its arguments and sets ``func`` to an
``(args, settings) -> int`` callable. Only the module of the command being run
is imported (``pymirror --help`` imports none of them, nor aiobotocore, aiokafka
or rich). Errors print as ``ErrorName: message``: expected ones (the error tree
of :mod:`pymirror.errors`) exit with their ``exit_code`` (1, or 2 for usage and
config), unexpected ones exit 1 with a hint to rerun with ``--log-level debug``
for the traceback. An error raised inside a task group reaches the user the
same way: the group is unwrapped to the errors in it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import version

from pymirror.commands import COMMANDS
from pymirror.errors import EXPECTED_ERRORS, PymirrorError

#: Global options that take a value (they may come before the command name).
_VALUED_OPTIONS = ("--log-level", "--log-format")
LOG_LEVELS = ("debug", "info", "warning", "error")


def _command_in(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (after any global options), if any."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUED_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported to add its arguments."""
    parser = argparse.ArgumentParser(
        prog="pymirror",
        description="Split SQS queues and Kafka topics between developers; mirror TCP traffic.",
    )
    parser.add_argument("--version", action="version", version=f"pymirror {version('pymirror')}")
    parser.add_argument(
        "--log-level", default=None, type=str.lower, choices=LOG_LEVELS, help="default: info"
    )
    parser.add_argument(
        "--log-format", default=None, choices=["auto", "json", "console"], help="log renderer"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=summary)
            continue
        module = importlib.import_module(module_name)
        child = sub.add_parser(
            name,
            help=summary,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.configure(child)
    return parser


def _leaves(error: BaseException) -> list[BaseException]:
    """The errors inside (nested) exception groups, or ``[error]``."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _report(error: BaseException) -> int:
    """Print ``error`` (each error of a group) as ``Name: message``; the exit code."""
    leaves = _leaves(error)
    if all(isinstance(e, KeyboardInterrupt) for e in leaves):
        return 130
    codes = []
    for leaf in leaves:
        if isinstance(leaf, KeyboardInterrupt | SystemExit | BrokenPipeError):
            continue  # BrokenPipeError: the reader (`| head`) left; nothing to say
        print(f"{type(leaf).__name__}: {leaf}", file=sys.stderr)
        if isinstance(leaf, PymirrorError):
            codes.append(leaf.exit_code)
        elif isinstance(leaf, EXPECTED_ERRORS):
            codes.append(1)
        else:
            import structlog

            structlog.get_logger().debug("traceback", exc_info=leaf)
            print(
                "(an unexpected error: rerun with --log-level debug for the traceback)",
                file=sys.stderr,
            )
            codes.append(1)
    return max(codes, default=1)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_command_in(argv)).parse_args(argv)
    try:
        from pymirror import logs
        from pymirror.settings import load_settings

        overrides: dict[str, object] = {}
        log_overrides = {
            k: v
            for k, v in (("level", args.log_level), ("format", args.log_format))
            if v is not None
        }
        if log_overrides:
            overrides["log"] = log_overrides
        settings = load_settings(**overrides)
        logs.configure(settings.log.level, settings.log.format)
        result: int = args.func(args, settings)
    except BaseException as e:
        if isinstance(e, SystemExit):
            raise
        return _report(e)
    return result


if __name__ == "__main__":
    sys.exit(main())
