"""``pymirror status``: the split sessions and queue splits of a cluster, like
``mirrord operator status``.

    pymirror status [-n NS | -A] [-o table|json|yaml] [--context CTX] [--kubeconfig PATH] \\
        [--operator-namespace NS]

Sessions: name, namespace, target, user (``whoami/k8s-user@hostname``), phase (with the
endReason once set), sequence, age, each queue with its filter and temporary queue, and
the operator's message. Splits (QueueSplits in the operator's namespace whose target is
in NS): original, fallback, hand-back phase, the sessions routed, the worker Deployment's
ready/desired replicas and the worker's counters. ``table`` is a rich table on a terminal
and plain columns otherwise; ``json`` and ``yaml`` print one stable document
(docs/exec.md). The namespace is ``-n``, else the kubeconfig context's, else
``default``; ``-A`` is every namespace. Exit 0; 1 when the cluster cannot be reached,
pymirror's CRDs are not installed there, or RBAC refuses (the message names the verb and
the ClusterRole ``pymirror-user``); 2 for a bad command line.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pymirror.settings import Settings

if TYPE_CHECKING:
    from pymirror.client.admin import ClusterOptions


def add_cluster_arguments(parser: argparse.ArgumentParser, *, all_namespaces: bool) -> None:
    """``-n`` (and ``-A``), ``--context``, ``--kubeconfig``: shared with ``session``."""
    if all_namespaces:
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--namespace", "-n", default=None, help="default: the context's")
        scope.add_argument("--all-namespaces", "-A", action="store_true", help="every namespace")
    else:
        parser.add_argument("--namespace", "-n", default=None, help="default: the context's")
    parser.add_argument("--context", default=None, help="the kubeconfig context")
    parser.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG, ~/.kube/config")


def configure(parser: argparse.ArgumentParser) -> None:
    add_cluster_arguments(parser, all_namespaces=True)
    parser.add_argument(
        "--output", "-o", default="table", choices=["table", "json", "yaml"], help="default table"
    )
    parser.add_argument(
        "--operator-namespace",
        default=None,
        help="where the QueueSplits are (default: PYMIRROR_OPERATOR__NAMESPACE, pymirror-system)",
    )
    parser.set_defaults(func=run)


def cluster_options(args: argparse.Namespace) -> ClusterOptions:
    """The cluster flags as ``ClusterOptions`` (imported here: it loads the Kubernetes client)."""
    from pymirror.client.admin import ClusterOptions

    return ClusterOptions(
        namespace=args.namespace,
        all_namespaces=bool(getattr(args, "all_namespaces", False)),
        context=args.context,
        kubeconfig=args.kubeconfig,
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from pymirror.client.admin import status_command

    options = cluster_options(args)
    return asyncio.run(status_command(options, settings, args.output, args.operator_namespace))
