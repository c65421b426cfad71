"""``pymirror operator``: the operator process (drives SplitSessions and QueueSplits).

    pymirror operator [--namespace shop [--namespace billing ...]] \\
        [--kubeconfig PATH] [--context NAME] [--metrics-port 9401]

Settings come from the environment (``PYMIRROR_OPERATOR__*``: the operator's namespace,
the worker Deployments, the resync interval...; ``PYMIRROR_SQS__ENDPOINT_URL`` and
``PYMIRROR_SQS__REGION`` for SQS; ``pymirror info --settings`` prints them). The cluster
is the kubeconfig when one is named, else the pod's service account inside a pod, else
``$KUBECONFIG`` / ``~/.kube/config``. SplitSessions are watched in each ``--namespace``
(repeat the flag); without one, in the namespaces of ``PYMIRROR_OPERATOR__SESSION_NAMESPACES``
(JSON, what the Helm chart sets), and when that is empty too, in every namespace (one
cluster-wide watch). QueueSplits are watched in the operator's namespace. Run one replica: the
session sequence is assigned by this one process. SIGTERM/SIGINT stop it cleanly: no
new reconcile starts, the ones under way are cancelled (every step is recorded before it
is taken, so the next operator resumes them), and the process exits 0. With
``--metrics-port`` the port also serves ``/healthz`` (the event loop is alive) and
``/readyz`` (the watches listed and the API server answered recently; see
``pymirror.operator.controller.Health``).
"""

from __future__ import annotations

import argparse
import asyncio

from pymirror.errors import UsageError
from pymirror.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NAMESPACE",
        help="watch SplitSessions in this namespace (repeat for more); default: "
        "PYMIRROR_OPERATOR__SESSION_NAMESPACES, and when that is empty, every namespace",
    )
    parser.add_argument(
        "--kubeconfig", default=None, help="default: in-cluster, else ~/.kube/config"
    )
    parser.add_argument("--context", default=None, help="the kubeconfig context")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus /metrics, /healthz (liveness) and /readyz (readiness) on this port",
    )
    parser.set_defaults(func=run)


def session_namespaces(given: list[str], settings: Settings) -> list[str]:
    """The namespaces to watch SplitSessions in: ``--namespace`` values, else the setting;
    empty = every namespace. ``UsageError`` for an empty ``--namespace ""``."""
    if any(not n for n in given):
        raise UsageError("--namespace needs a namespace name; leave the flag out for all")
    return list(dict.fromkeys(given or settings.operator.session_namespaces))


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pymirror.operator.controller import serve

    asyncio.run(
        serve(
            settings,
            namespaces=session_namespaces(args.namespace, settings),
            kubeconfig=args.kubeconfig,
            context=args.context,
            metrics_port=args.metrics_port,
        )
    )
    return 0
