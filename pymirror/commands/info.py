"""``pymirror info``: versions of pymirror and the libraries it drives; ``--settings``."""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version

from pymirror.settings import Settings

LIBRARIES = ("aiobotocore", "aiokafka", "kubernetes", "pydantic-settings", "structlog", "regex")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--settings", action="store_true", help="print the effective settings as JSON"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.settings:
        print(settings.model_dump_json(indent=2))
        return 0
    for name in ("pymirror", *LIBRARIES):
        try:
            print(f"{name} {version(name)}")
        except PackageNotFoundError:
            print(f"{name} (not installed)")
    return 0
