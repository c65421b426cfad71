"""``pymirror worker sqs|kafka``: a split worker for one original queue/topic, as a process.

    pymirror worker sqs --queue ORIGINAL --fallback-queue FALLBACK \\
        (--sessions-file sessions.json | --split NAMESPACE/NAME) [--endpoint-url URL] [...]
    pymirror worker kafka --topic ORIGINAL --group-id GROUP --fallback-topic FALLBACK \\
        (--sessions-file sessions.json | --split NAMESPACE/NAME) \\
        (--property bootstrap.servers=HOST:PORT [...] | --client-config NAME)

The operator runs these as Deployments with ``--split`` (and, for Kafka,
``--client-config``: the worker resolves the client config and its Secrets itself,
so no secret value is on its command line; the worker follows its
QueueSplit object, see pymirror/worker/split_source.py, and stops when the object
is deleted); by hand they read a sessions file. Either lists the active sessions
of the split and is followed as it changes: a session that disappears ends
(its queue's/topic's leftovers are routed again, then it is deleted); when the
last one disappears the original is handed back
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


def _sessions_arguments(parser: argparse.ArgumentParser, destination: str) -> None:
    """Where the sessions come from: a file, or (the operator's workers) a QueueSplit."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--sessions-file",
        type=Path,
        help=f'JSON: [{{"id", "sequence", "{destination}", "message_filter", "jq_filter"?, '
        '"queue_mode"?}]',
    )
    where.add_argument(
        "--split",
        metavar="NAMESPACE/NAME",
        help="follow this QueueSplit's spec.routes and acknowledge them in its status",
    )
    parser.add_argument(
        "--kubeconfig", default=None, help="with --split (default: in-cluster, else ~/.kube/config)"
    )
    parser.add_argument("--context", default=None, help="with --split: the kubeconfig context")
    parser.add_argument(
        "--report-interval",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="with --split: seconds between two writes of the counters to the QueueSplit's "
        "status (default 10)",
    )


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return seconds


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _sqs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", required=True, help="the original queue (name or URL)")
    parser.add_argument(
        "--fallback-queue", required=True, help="the queue the workload reads (name or URL)"
    )
    _sessions_arguments(parser, "queue")
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
        help="a librdkafka/Java client property (repeat); bootstrap.servers is required "
        "unless --client-config gives it; these override the config's",
    )
    parser.add_argument(
        "--client-config",
        metavar="NAME",
        default=None,
        help="with --split: resolve this MirrordKafkaClientConfig (its parents and "
        "loadFromSecret Secrets) in the QueueSplit's namespace at start-up; how the "
        "operator's workers get their properties, so no secret is on a command line",
    )
    _sessions_arguments(parser, "topic")
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
        "(default: the sessions file's name + '.hand-back'; required with --split)",
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


def _report(args: argparse.Namespace) -> dict[str, float]:
    """``report_interval`` for the process, when given (else the process's default)."""
    return {} if args.report_interval is None else {"report_interval": args.report_interval}


def run_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from pymirror.worker.kafka_process import KafkaProcess, serve
    from splitter.kafka.worker import KafkaWorkerIdentity

    hand_back_file = args.hand_back_file
    if hand_back_file is None and args.sessions_file is not None:
        hand_back_file = args.sessions_file.with_name(args.sessions_file.name + ".hand-back")
    if hand_back_file is None:
        raise UsageError("--split needs --hand-back-file (a file of this replica's own)")
    if args.client_config is not None and args.split is None:
        raise UsageError(
            "--client-config needs --split (it is read in the QueueSplit's namespace); "
            "with --sessions-file give the properties with --property"
        )

    process = KafkaProcess(
        identity=KafkaWorkerIdentity(
            topic=args.topic,
            group_id=args.group_id,
            fallback_topic=args.fallback_topic,
            member_file=args.member_file,
            delete_fallback=not args.keep_fallback,
            hand_back_file=hand_back_file,
        ),
        properties=parse_properties(args.property),
        client_config=args.client_config,
        config_kinds=settings.operator.config_kinds.kinds(),
        sessions_file=args.sessions_file,
        split=args.split,
        kubeconfig=args.kubeconfig,
        context=args.context,
        metrics_port=args.metrics_port,
        **_report(args),
    )
    asyncio.run(serve(process, with_flags(settings.kafka, drain_timeout=args.drain_timeout)))
    return 0


def run_sqs(args: argparse.Namespace, settings: Settings) -> int:
    from pymirror.worker.sqs_process import SqsProcess, serve

    process = SqsProcess(
        queue=args.queue,
        fallback_queue=args.fallback_queue,
        sessions_file=args.sessions_file,
        split=args.split,
        kubeconfig=args.kubeconfig,
        context=args.context,
        metrics_port=args.metrics_port,
        **_report(args),
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
