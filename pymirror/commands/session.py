"""``pymirror session kill|kill-all``: end split sessions, yours or another developer's.

    pymirror session kill --id NAME|NAMESPACE/NAME [-n NS] [--context CTX] [--kubeconfig PATH]
    pymirror session kill-all [-n NS | -A] [--context CTX] [--kubeconfig PATH]

Each session is annotated ``pymirror.dev/killed: whoami/k8s-user@hostname`` (who killed
it), then deleted: the operator ends it with ``endReason: Killed`` and hands its queues
back, and the ``pymirror exec`` running in it stops its command and exits 1 saying who
killed it. ``kill-all`` patches each session (annotation and a one-run label), then
deletes them with one ``deletecollection`` per namespace selecting that label, so only the
sessions it annotated are deleted. RBAC: ``kill`` needs get, patch and delete on
splitsessions; ``kill-all`` list, patch and deletecollection; a refusal names the verb
and the ClusterRole ``pymirror-user``, which grants them. Exit 0; 1 when the session does
not exist, the cluster cannot be reached or RBAC refuses; 2 for a bad command line.
"""

from __future__ import annotations

import argparse

from pymirror.commands.status import add_cluster_arguments, cluster_options
from pymirror.errors import UsageError
from pymirror.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="session_command", metavar="ACTION", required=True)
    kill = sub.add_parser("kill", help="kill one session (annotate, then delete)")
    kill.add_argument(
        "--id", required=True, dest="session_id", help="the session's name, or NAMESPACE/NAME"
    )
    add_cluster_arguments(kill, all_namespaces=False)
    kill.set_defaults(func=run_kill)
    kill_all = sub.add_parser(
        "kill-all", help="kill every session of a namespace (-A: of every namespace)"
    )
    add_cluster_arguments(kill_all, all_namespaces=True)
    kill_all.set_defaults(func=run_kill_all)


def run_kill(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from pymirror.client.admin import kill_command

    namespace, _, name = str(args.session_id).rpartition("/")
    if not name or "/" in namespace:
        raise UsageError(f"--id {args.session_id!r}: give the session's NAME or NAMESPACE/NAME")
    return asyncio.run(kill_command(cluster_options(args), args.session_id))


def run_kill_all(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from pymirror.client.admin import kill_all_command

    return asyncio.run(kill_all_command(cluster_options(args)))
