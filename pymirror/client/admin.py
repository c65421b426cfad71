"""``pymirror status`` and ``pymirror session kill|kill-all`` from their options.

``status_command(options, settings, stream)`` prints the status document
(:mod:`pymirror.client.listing`, :mod:`pymirror.client.status_view`);
``kill_command`` / ``kill_all_command`` end sessions (:mod:`pymirror.client.killing`)
signed with the caller's identity (``whoami/k8s-user@hostname``,
:mod:`pymirror.client.identity`). The namespace is ``-n``, else the kubeconfig context's,
else ``default``; ``-A`` is every namespace. The operator's namespace (where the
QueueSplits and worker Deployments are) is ``--operator-namespace``, else
``PYMIRROR_OPERATOR__NAMESPACE`` (``pymirror-system`` by default; ``pymirror sandbox env``
sets it), and the Deployment kind's apiVersion comes from
``PYMIRROR_OPERATOR__WORKLOAD_KINDS``, as for the operator.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from pymirror.client.identity import context_of, identity
from pymirror.client.killing import kill_all, kill_one
from pymirror.client.listing import Scope, read_overview
from pymirror.client.status_view import Output, render
from pymirror.settings import Settings
from registry.objects import Kube


@dataclass(frozen=True)
class ClusterOptions:
    namespace: str | None = None
    all_namespaces: bool = False
    context: str | None = None
    kubeconfig: str | None = None

    def resolved_namespace(self) -> str | None:
        """``-n``, else the context's namespace, else ``default``; None with ``-A``."""
        if self.all_namespaces:
            return None
        if self.namespace:
            return self.namespace
        return context_of(self.kubeconfig, self.context)[1] or "default"

    def connect(self) -> Kube:
        return Kube.connect(self.kubeconfig, self.context)


async def status_command(
    options: ClusterOptions,
    settings: Settings,
    output: Output = "table",
    operator_namespace: str | None = None,
    stream: TextIO | None = None,
) -> int:
    scope = Scope(
        namespace=options.resolved_namespace(),
        operator_namespace=operator_namespace or settings.operator.namespace,
        deployments=settings.operator.worker_resource(),
    )
    async with options.connect() as kube:
        doc = await read_overview(kube, scope)
    render(doc, output, stream or sys.stdout)
    return 0


def _who(options: ClusterOptions) -> str:
    return identity(options.kubeconfig, options.context).display()


async def kill_command(options: ClusterOptions, session: str, stream: TextIO | None = None) -> int:
    """``--id NAME`` (in the resolved namespace) or ``--id NAMESPACE/NAME``."""
    namespace, _, name = session.rpartition("/")
    namespace = namespace or options.resolved_namespace() or "default"
    who = _who(options)
    async with options.connect() as kube:
        ref = await kill_one(kube, namespace, name, who)
    out = stream or sys.stdout
    print(f"session {ref} killed by {who} (the operator ends it: endReason Killed)", file=out)
    return 0


async def kill_all_command(options: ClusterOptions, stream: TextIO | None = None) -> int:
    namespace = options.resolved_namespace()
    who = _who(options)
    async with options.connect() as kube:
        report = await kill_all(kube, namespace, who)
    out = stream or sys.stdout
    for ref in report.killed:
        print(f"session {ref} killed by {who}", file=out)
    for ref in report.already_ending:
        print(f"session {ref} was already being deleted; left alone", file=out)
    for ref in report.gone:
        print(f"session {ref} was gone before it could be killed", file=out)
    if not (report.killed or report.already_ending or report.gone):
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"no sessions in {where}: nothing to kill", file=out)
    return 0
