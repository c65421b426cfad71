"""``pymirror demo``: the whole product on one machine (:mod:`pymirror.demo.run`), or with
``--embedded`` the older in-process demo (:mod:`pymirror.embedded_demo`: one queue split
on an embedded moto, no control plane)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from pymirror import logs
from pymirror.errors import UsageError
from pymirror.settings import Settings


def default_state_dir() -> Path:
    cache = os.environ.get("PYMIRROR_CACHE") or str(Path.home() / ".cache" / "pymirror")
    return Path(cache) / "demo"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="the in-process demo instead: one queue split on an embedded moto, no control plane",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the demo's sandbox, records and logs "
        "(default ${PYMIRROR_CACHE:-~/.cache/pymirror}/demo)",
    )
    parser.add_argument(
        "--per-author",
        type=int,
        default=3,
        help="messages per author, phase and queue or topic (default 3: 72 messages in all)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave the demo's sandbox up at the end"
    )
    parser.add_argument(
        "--kafka",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="split a Kafka topic (on Tansu) besides the SQS queue (default: on)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=90.0,
        help="seconds any one wait may take before the demo reports what is missing (90)",
    )
    embedded = parser.add_argument_group("the embedded demo (each of these implies --embedded)")
    embedded.add_argument("--messages", type=int, default=None, help="messages to send (40)")
    embedded.add_argument("--rate", type=float, default=None, help="messages per second (10)")
    embedded.add_argument(
        "--endpoint-url", default=None, help="use this SQS endpoint instead of the embedded one"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.embedded or any(v is not None for v in (args.messages, args.rate, args.endpoint_url)):
        return run_embedded(args, settings)
    if args.per_author < 1 or args.timeout <= 0:
        raise UsageError("--per-author must be >= 1 and --timeout > 0")
    from rich.console import Console

    from pymirror.demo.run import DemoOptions, run_demo

    options = DemoOptions(
        state_dir=args.state_dir or default_state_dir(),
        per_author=args.per_author,
        keep=args.keep,
        timeout=args.timeout,
        kafka=args.kafka,
    )
    return asyncio.run(run_demo(Console(), options))


def run_embedded(args: argparse.Namespace, settings: Settings) -> int:
    messages = 40 if args.messages is None else args.messages
    rate = 10.0 if args.rate is None else args.rate
    if messages < 1 or rate <= 0:
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
        return asyncio.run(run_demo(console, messages=messages, rate=rate, endpoint=endpoint))
    finally:
        if stop is not None:
            stop()
