"""``pymirror worker {sqs,kafka}``: a split worker for one original queue/topic, as a process.

The operator runs these as Deployments; they can also run by hand. Each kind
lives in its own module (``sqs_worker``, ``kafka_worker``) exposing
``add_arguments(parser)`` and ``run(args, settings) -> int``.
"""

from __future__ import annotations

import argparse
from typing import Any

from pymirror.commands import kafka_worker, sqs_worker


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker", help="run a split worker for one original queue/topic"
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for name, module, what in (
        ("sqs", sqs_worker, "SQS queue"),
        ("kafka", kafka_worker, "Kafka topic"),
    ):
        kind = kinds.add_parser(
            name,
            help=f"split one {what}",
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(kind)
        kind.set_defaults(func=module.run)
