"""``pymirror sandbox``: a local stand-in cluster with SQS and Kafka, for trying pymirror out.

  up       start etcd + apiextensions-apiserver (with pymirror's CRDs and stand-in
           Deployment/StatefulSet/Rollout/Secret kinds), a moto SQS server, a Kafka
           broker (noida-db, or Tansu with --kafka-broker tansu), the local runtime
           and the operator, on free loopback ports
  down     stop all of it; nothing is left running
  status   each component's pid, port, health and log
  env      `export` lines for KUBECONFIG, AWS_*, KAFKA_BOOTSTRAP_SERVERS and the
           operator's namespace (for boto3, Kafka clients and `pymirror exec`):
           eval "$(pymirror sandbox env)"
  runtime  run the local runtime in the foreground (what `up` starts in the background)

The local runtime is a stand-in for the kubelet and the Deployment controller: it runs
each replica of a Deployment, StatefulSet or Rollout as local processes (the
containers' command/args with their env), the operator's split workers included. See
docs/sandbox.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pymirror.settings import Settings


def _state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the sandbox keeps its state (default: $PYMIRROR_CACHE/sandbox, "
        "$PYMIRROR_CACHE defaulting to ~/.cache/pymirror)",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="start the sandbox (idempotent)")
    _state_dir(up)
    up.add_argument(
        "--namespace",
        action="append",
        default=None,
        help="demo namespace: the local runtime runs its workloads, the operator watches its "
        "SplitSessions (repeatable; default: default)",
    )
    up.add_argument("--no-kafka", action="store_true", help="do not start the Kafka broker")
    up.add_argument(
        "--kafka-broker",
        choices=("noida", "tansu"),
        default="noida",
        help="which Kafka broker: noida-db (default) or Tansu (in-memory; expires "
        "consumer-group members that die without leaving)",
    )
    up.add_argument("--no-operator", action="store_true", help="do not start the operator")
    up.add_argument(
        "--operator-namespace",
        default="pymirror-system",
        help="the operator's namespace: QueueSplits and worker Deployments (default: "
        "pymirror-system)",
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds each component may take to become ready (default: 120)",
    )
    up.set_defaults(func=run_up)

    down = sub.add_parser("down", help="stop everything the sandbox started")
    _state_dir(down)
    down.set_defaults(func=run_down)

    status = sub.add_parser("status", help="every component with pid, port and health")
    _state_dir(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=run_status)

    env = sub.add_parser("env", help="print shell export lines for the sandbox's endpoints")
    _state_dir(env)
    env.set_defaults(func=run_env)

    runtime = sub.add_parser(
        "runtime",
        help="run the local runtime (stand-in for the kubelet and Deployment controller)",
    )
    runtime.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG")
    runtime.add_argument("--context", default=None)
    runtime.add_argument(
        "--namespace", action="append", default=None, help="repeatable; default: default"
    )
    runtime.add_argument("--log-dir", type=Path, required=True, help="one log file per process")
    runtime.add_argument(
        "--groups-dir", type=Path, default=None, help="record live process groups here"
    )
    runtime.add_argument("--ready-file", type=Path, default=None, help="written once watching")
    for kind, default in (
        ("deployments", "apps/v1"),
        ("statefulsets", "apps/v1"),
        ("rollouts", "argoproj.io/v1alpha1"),
    ):
        runtime.add_argument(
            f"--{kind}",
            default=None,
            metavar="GROUP/VERSION",
            help=f"where {kind} are served (default: {default})",
        )
    runtime.set_defaults(func=run_runtime)


def _dir(args: argparse.Namespace) -> Path:
    from pymirror.sandbox.state import default_state_dir

    return Path(args.state_dir) if args.state_dir else default_state_dir()


def run_up(args: argparse.Namespace, settings: Settings) -> int:
    from pymirror.sandbox.control import UpOptions, up

    options = UpOptions(
        state_dir=_dir(args),
        namespaces=tuple(args.namespace or ["default"]),
        kafka=not args.no_kafka,
        kafka_broker=args.kafka_broker,
        operator=not args.no_operator,
        operator_namespace=args.operator_namespace,
        timeout=args.timeout,
    )
    state, started = up(options)
    print(f"sandbox {'up' if started else 'already up'}: {state.state_dir}")
    print(f'use it with: eval "$(pymirror sandbox env --state-dir {state.state_dir})"')
    return 0


def run_down(args: argparse.Namespace, settings: Settings) -> int:
    from pymirror.sandbox.control import down

    state = down(_dir(args))
    print("sandbox down" if state is not None else "sandbox was not up")
    return 0


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    from pymirror.sandbox.status import status

    state, rows = status(_dir(args))
    if args.json:
        print(json.dumps({"up": state is not None, "components": rows}, indent=2))
    elif state is None:
        print(f"sandbox is not up ({_dir(args)})")
    else:
        print(f"{'COMPONENT':<10} {'PID':>8} {'PORT':>6}  {'HEALTH':<9} {'CHECK':<18} LOG")
        for row in rows:
            health = "healthy" if row["healthy"] else "UNHEALTHY"
            port = row["port"] or "-"
            print(
                f"{row['name']:<10} {row['pid']:>8} {port:>6}  {health:<9} "
                f"{row['probe']:<18} {row['log']}"
            )
    return 0 if state is not None and all(r["healthy"] for r in rows) else 1


def run_env(args: argparse.Namespace, settings: Settings) -> int:
    from pymirror.sandbox.errors import SandboxError
    from pymirror.sandbox.state import State, env_lines

    state = State.load(_dir(args))
    if state is None:
        raise SandboxError(f"the sandbox is not up ({_dir(args)}); run `pymirror sandbox up`")
    print(env_lines(state), end="")
    return 0


def run_runtime(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from pymirror.errors import UsageError
    from pymirror.sandbox.runtime import RuntimeConfig, serve
    from registry.errors import WorkloadError
    from registry.workloads import WorkloadKinds

    try:
        kinds = WorkloadKinds().with_api_versions(
            Deployment=args.deployments, StatefulSet=args.statefulsets, Rollout=args.rollouts
        )
    except WorkloadError as e:
        raise UsageError(str(e)) from e
    config = RuntimeConfig(
        namespaces=tuple(args.namespace or ["default"]),
        log_dir=args.log_dir,
        kinds=kinds,
        groups_dir=args.groups_dir,
    )
    asyncio.run(serve(args.kubeconfig, args.context, config, args.ready_file))
    return 0
