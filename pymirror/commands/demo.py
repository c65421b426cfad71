"""``pymirror demo``: the embedded queue-splitting demo (see :mod:`pymirror.embedded_demo`)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from pymirror import logs
from pymirror.errors import UsageError
from pymirror.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=40, help="messages to send (default 40)")
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second (10)")
    parser.add_argument(
        "--endpoint-url", default=None, help="use this SQS endpoint instead of the embedded one"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.messages < 1 or args.rate <= 0:
        raise UsageError("--messages must be >= 1 and --rate > 0")
    from rich.console import Console

    from pymirror.embedded_demo import (  # aiobotocore/moto: only when run
        embedded_endpoint,
        run_demo,
    )

    console = Console()
    # The demo shows its own story; the engine's info lines and moto's access log would
    # bury it (--log-level debug brings the engine's back).
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if settings.log.level == "info":
        logs.configure("warning", settings.log.format)
    stop = None
    endpoint = args.endpoint_url
    if endpoint is None:
        endpoint, stop = embedded_endpoint()
        console.print(f"embedded SQS endpoint (moto) at {endpoint}")
    try:
        return asyncio.run(
            run_demo(console, messages=args.messages, rate=args.rate, endpoint=endpoint)
        )
    finally:
        if stop is not None:
            stop()
