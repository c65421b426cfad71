"""``pymirror exec`` from its options: config, identity and plan, then ``run.run_exec``.

``exec_command(options, command, settings)`` reads the config (``client.config``),
applies the command line (``--target``, ``--namespace``, ``--context``,
``--kubeconfig`` override the file), warns once about ignored mirrord keys, names the
owner (``client.identity``), builds the SplitSession and runs ``command`` in it. The
namespace is ``--namespace``, else ``target.namespace``, else the kubeconfig context's,
else ``default``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from pymirror.client.config import (
    ExecConfig,
    TargetSpec,
    find_config_file,
    load_config,
    parse_target_path,
)
from pymirror.client.identity import identity
from pymirror.client.progress import progress_for
from pymirror.client.run import ExecPlan, run_exec
from pymirror.client.session import session_body, session_name
from pymirror.errors import ConfigError
from pymirror.settings import Settings
from registry.objects import Kube


@dataclass(frozen=True)
class ExecOptions:
    config_file: str | None = None
    target: str | None = None
    namespace: str | None = None
    context: str | None = None
    kubeconfig: str | None = None
    ready_timeout: float = 120.0
    end_timeout: float = 60.0
    grace: float = 10.0
    lease_seconds: int = 30


def resolve_target(options: ExecOptions, config: ExecConfig) -> TargetSpec:
    """``--target`` (keeping the file's namespace) or the file's ``target``."""
    if options.target:
        parsed = parse_target_path(options.target, "--target")
        namespace = config.target.namespace if config.target else None
        return TargetSpec(parsed.kind, parsed.name, parsed.container, namespace)
    if config.target is None:
        raise ConfigError(
            f'{config.source}: no target: set target (e.g. "deployment/meme-app") in the '
            "file, or pass --target deployment/NAME"
        )
    return config.target


def build_plan(options: ExecOptions, config: ExecConfig, settings: Settings) -> ExecPlan:
    """The session to create and how to run it."""
    target = resolve_target(options, config)
    kubeconfig = options.kubeconfig or config.kubeconfig
    who = identity(kubeconfig, options.context or config.kube_context)
    namespace = options.namespace or target.namespace or who.namespace or "default"
    api_version = settings.operator.kinds().resource(target.kind).api_version
    name = session_name(who.username)
    body = session_body(name, target, api_version, config.queues, who, options.lease_seconds)
    return ExecPlan(
        namespace=namespace,
        body=body,
        lease_seconds=options.lease_seconds,
        ready_timeout=options.ready_timeout,
        end_timeout=options.end_timeout,
        grace=options.grace,
        env_overrides=config.env_overrides,
    )


async def exec_command(options: ExecOptions, command: Sequence[str], settings: Settings) -> int:
    """Run ``command`` in a new split session; its exit code."""
    config = load_config(find_config_file(options.config_file))
    if config.ignored:
        print(
            f"pymirror: warning: {config.source}: ignoring mirrord settings pymirror does not "
            f"use: {', '.join(config.ignored)}",
            file=sys.stderr,
        )
    plan = build_plan(options, config, settings)
    kubeconfig = options.kubeconfig or config.kubeconfig
    context = options.context or config.kube_context
    async with Kube.connect(kubeconfig, context) as kube:
        return await run_exec(kube, plan, command, progress_for(sys.stderr))
