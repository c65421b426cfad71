"""``pymirror worker sqs|kafka``: a split worker for one original queue/topic, as a process.

    pymirror worker sqs --queue ORIGINAL --fallback-queue FALLBACK \\
        --sessions-file sessions.json [--endpoint-url URL] [--metrics-port P]
    pymirror worker kafka --topic ORIGINAL --group-id GROUP --fallback-topic FALLBACK \\
        --sessions-file sessions.json --property bootstrap.servers=HOST:PORT [...]

The operator runs these as Deployments; they also run by hand. The sessions
file lists the active sessions of the split and is re-read when it changes: a
session that disappears ends (its queue's/topic's leftovers are routed again,
then it is deleted); when the last one disappears the original is handed back
(the workload drains the fallback, leftovers go back to the original, the
fallback is deleted) and the process exits 0. SIGTERM/SIGINT stop intake, finish
or release what is in hand and exit 0 within the worker's shutdown bound; a
second signal exits at once (130). Flags override the PYMIRROR_SQS__* /
PYMIRROR_KAFKA__* settings. Everything is checked before the worker starts;
errors print as ``Name: message`` (exit 1; usage errors exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path

from pymirror.errors import UsageError
from pymirror.settings import Settings, with_flags

SQS_DESCRIPTION = """\
Split one SQS queue. Queues are given by name or URL. SIGTERM/SIGINT stop
receiving, forward or release what is in hand and exit 0 within the longer of
sqs.shutdown_grace and --wait-seconds (a long poll under way is finished, not
abandoned). At exit the worker prints its summary line.
"""

KAFKA_DESCRIPTION = """\
Split one Kafka topic. Client properties use the librdkafka/Java names of a
resolved MirrordKafkaClientConfig (bootstrap.servers at least). The worker
consumes the original with the workload's own group id, so the takeover and the
hand-back resume at committed offsets.

--member-file names a file of this replica's own (a pod's emptyDir): the worker
records its group member id there, and a worker restarted after a crash removes
its dead predecessor from the group before it joins.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    sqs = kinds.add_parser(
        "sqs",
        help="split one SQS queue",
        description=SQS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _sqs_arguments(sqs)
    sqs.set_defaults(func=run_sqs)
    kafka = kinds.add_parser(
        "kafka",
        help="split one Kafka topic",
        description=KAFKA_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _kafka_arguments(kafka)
    kafka.set_defaults(func=run_kafka)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _sqs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", required=True, help="the original queue (name or URL)")
    parser.add_argument(
        "--fallback-queue", required=True, help="the queue the workload reads (name or URL)"
    )
    parser.add_argument(
        "--sessions-file",
        type=Path,
        required=True,
        help='JSON: [{"id", "sequence", "queue", "message_filter", "jq_filter"?, "queue_mode"?}]',
    )
    parser.add_argument("--endpoint-url", default=None, help="SQS endpoint (default: settings)")
    parser.add_argument("--region", default=None, help="AWS region (default: settings)")
    parser.add_argument("--receivers", type=_positive, default=None, help="concurrent long polls")
    parser.add_argument("--wait-seconds", type=int, default=None, help="long-poll wait (0-20)")
    parser.add_argument(
        "--visibility-timeout", type=int, default=None, help="seconds; default: the queue's"
    )
    parser.add_argument("--drain-timeout", type=float, default=None, help="seconds; see settings")
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics")


def _kafka_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", required=True, help="the original topic")
    parser.add_argument("--group-id", required=True, help="the workload's consumer group id")
    parser.add_argument("--fallback-topic", required=True, help="the topic the workload reads")
    parser.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a librdkafka/Java client property (repeat); bootstrap.servers is required",
    )
    parser.add_argument(
        "--sessions-file",
        type=Path,
        required=True,
        help='JSON: [{"id", "sequence", "topic", "message_filter", "jq_filter"?, "queue_mode"?}]',
    )
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics")
    parser.add_argument("--drain-timeout", type=float, default=None, help="seconds; see settings")
    parser.add_argument(
        "--keep-fallback",
        action="store_true",
        help="after the last session's drain, leave the fallback topic for the caller to delete "
        "(once the workload reads the original again)",
    )
    parser.add_argument(
        "--member-file",
        type=Path,
        default=None,
        help="this replica's own file (a pod emptyDir) recording its group member id",
    )
    parser.add_argument(
        "--hand-back-file",
        type=Path,
        default=None,
        help="where the worker records a hand-back under way so that a restart resumes it "
        "(default: the sessions file's name + '.hand-back')",
    )


def parse_properties(items: Sequence[str]) -> dict[str, str]:
    """``NAME=VALUE`` items as a dict (split at the first ``=``); ``UsageError`` if malformed."""
    properties: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--property {item!r} must look like NAME=VALUE")
        properties[name.strip()] = value
    return properties


def run_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from pymirror.worker.kafka_process import KafkaProcess, serve
    from splitter.kafka.worker import KafkaWorkerIdentity

    process = KafkaProcess(
        identity=KafkaWorkerIdentity(
            topic=args.topic,
            group_id=args.group_id,
            fallback_topic=args.fallback_topic,
            member_file=args.member_file,
            delete_fallback=not args.keep_fallback,
            hand_back_file=args.hand_back_file
            or args.sessions_file.with_name(args.sessions_file.name + ".hand-back"),
        ),
        properties=parse_properties(args.property),
        sessions_file=args.sessions_file,
        metrics_port=args.metrics_port,
    )
    asyncio.run(serve(process, with_flags(settings.kafka, drain_timeout=args.drain_timeout)))
    return 0


def run_sqs(args: argparse.Namespace, settings: Settings) -> int:
    from pymirror.worker.sqs_process import SqsProcess, serve

    process = SqsProcess(
        queue=args.queue,
        fallback_queue=args.fallback_queue,
        sessions_file=args.sessions_file,
        metrics_port=args.metrics_port,
    )
    sqs = with_flags(
        settings.sqs,
        endpoint_url=args.endpoint_url,
        region=args.region,
        receivers=args.receivers,
        wait_seconds=args.wait_seconds,
        visibility_timeout=args.visibility_timeout,
        drain_timeout=args.drain_timeout,
    )
    summary = asyncio.run(serve(process, sqs))
    print(f"pymirror worker sqs: {summary}", flush=True)
    return 0
