"""``pymirror info``: versions of pymirror and the libraries it drives."""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pymirror.settings import Settings

LIBRARIES = ("aiobotocore", "aiokafka", "kubernetes", "pydantic-settings", "structlog", "regex")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "info", help="print versions of pymirror and its libraries"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    for name in ("pymirror", *LIBRARIES):
        try:
            print(f"{name} {version(name)}")
        except PackageNotFoundError:
            print(f"{name} (not installed)")
    return 0
