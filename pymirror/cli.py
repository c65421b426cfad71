"""The ``pymirror`` command line.

Each sub-command lives in ``pymirror/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to an
``(args, settings) -> int`` callable. Expected errors print as
``ErrorName: message`` and exit 1 (2 for usage/config); no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import version

from pymirror import logs
from pymirror.commands import COMMANDS
from pymirror.errors import EXPECTED_ERRORS, PymirrorError
from pymirror.settings import load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pymirror",
        description="Split SQS queues and Kafka topics between developers; mirror TCP traffic.",
    )
    parser.add_argument("--version", action="version", version=f"pymirror {version('pymirror')}")
    parser.add_argument("--log-level", default=None, help="debug, info, warning or error")
    parser.add_argument(
        "--log-format", default=None, choices=["auto", "json", "console"], help="log renderer"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
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
    except EXPECTED_ERRORS as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return e.exit_code if isinstance(e, PymirrorError) else 1
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
