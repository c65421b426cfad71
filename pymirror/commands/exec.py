"""``pymirror exec``: run a local command inside a split session (DESIGN §3, §10).

    pymirror exec [-f CONFIG] [--target deployment/NAME[/container/C]] [--namespace NS] \\
        [--context CTX] [--kubeconfig PATH] [--ready-timeout 120] -- COMMAND ARGS...

The config is mirrord's (``-f``, else ``MIRRORD_CONFIG_FILE``, else the first
``*.json|*.yaml|*.yml|*.toml`` in ``./.mirrord/``): ``target`` and
``feature.split_queues`` are used, other mirrord keys are ignored with one warning. It is
checked locally first (exit 2, naming the field and the fix). Then a SplitSession is
created and, once the operator has it Ready, COMMAND runs with each split queue's env
var set to its temporary queue; the lease is renewed while it runs; SIGINT/SIGTERM are
forwarded (a second Ctrl-C kills it). When COMMAND exits the session is deleted and
pymirror exits with COMMAND's exit code; if the session is killed or expires first,
COMMAND is stopped and pymirror exits 1 saying why. Workload apiVersions come from
``PYMIRROR_OPERATOR__WORKLOAD_KINDS`` (as for the operator).
"""

from __future__ import annotations

import argparse

from pymirror.errors import UsageError
from pymirror.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--config-file", default=None, help="mirrord config file")
    parser.add_argument(
        "--target", default=None, help="deployment/NAME[/container/C] (overrides the file)"
    )
    parser.add_argument("--namespace", "-n", default=None, help="the target's namespace")
    parser.add_argument("--context", default=None, help="the kubeconfig context")
    parser.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG, ~/.kube/config")
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the session to be Ready (default 120)",
    )
    parser.add_argument(
        "--end-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the session to be gone at the end (default 60)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds between SIGTERM and SIGKILL when the command must stop (default 10)",
    )
    parser.add_argument(
        "--lease-seconds",
        type=int,
        default=30,
        help="the session's lease (minimum 6; renewed every third of it; default 30)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from pymirror.client.main import ExecOptions, exec_command

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("name the command to run: pymirror exec [OPTIONS] -- COMMAND ARGS...")
    if args.lease_seconds < 6:
        raise UsageError(f"--lease-seconds must be at least 6, got {args.lease_seconds}")
    options = ExecOptions(
        config_file=args.config_file,
        target=args.target,
        namespace=args.namespace,
        context=args.context,
        kubeconfig=args.kubeconfig,
        ready_timeout=args.ready_timeout,
        end_timeout=args.end_timeout,
        grace=args.grace,
        lease_seconds=args.lease_seconds,
    )
    return asyncio.run(exec_command(options, command, settings))
