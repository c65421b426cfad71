"""What the client commands tell a developer when the cluster refuses or cannot answer.

``pymirror status`` and ``pymirror session kill`` make each API call through
``guarded(call, verb, resource, namespace, transport)``, which turns the registry's
errors into the client's, each naming the problem and the fix:

* ``ForbiddenError`` (403) -> ``AccessDeniedError``: which verb on which resource in
  which namespace RBAC refuses, and that the ClusterRole ``pymirror-user`` grants it;
* ``NotFoundError`` (404) on a collection -> ``CrdsMissingError``: the API server does
  not serve pymirror's kinds (the CRDs are not installed);
* ``UnavailableError`` (connection refused, timeouts, 5xx) and ``UnauthorizedError``
  -> ``ClusterUnreachableError``, naming the kubeconfig and context in use.

All three are ``PymirrorError`` s with exit code 1. ``denied_message`` is the pure core
(unit-tested with tables).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from pymirror.errors import PymirrorError
from registry.errors import ForbiddenError, NotFoundError, UnauthorizedError, UnavailableError
from registry.resources import Resource

T = TypeVar("T")

#: The ClusterRole the Helm chart ships for developers (docs/exec.md, docs/install.md).
USER_ROLE = "pymirror-user"


class AccessDeniedError(PymirrorError):
    """RBAC refuses a verb the command needs; the message names it and the role granting it."""


class CrdsMissingError(PymirrorError):
    """The API server does not serve pymirror's kinds: the CRDs are not installed."""


class ClusterUnreachableError(PymirrorError):
    """The API server cannot be reached, or refuses the credentials."""


def denied_message(verb: str, resource: Resource, namespace: str | None, server: str) -> str:
    """The message of an ``AccessDeniedError`` (``namespace`` None: every namespace)."""
    where = f"in namespace {namespace}" if namespace else "across all namespaces"
    bind = (
        f"kubectl create rolebinding {USER_ROLE} --clusterrole={USER_ROLE} "
        f"--user=<you> -n {namespace}"
        if namespace
        else f"kubectl create clusterrolebinding {USER_ROLE} --clusterrole={USER_ROLE} --user=<you>"
    )
    return (
        f"RBAC refuses verb {verb!r} on {resource} {where}; the ClusterRole {USER_ROLE} "
        f"(installed by the Helm chart) grants it: ask your cluster admin to bind it ({bind}). "
        f"The API server said: {server}"
    )


def crds_missing_message(resource: Resource, transport: str) -> str:
    return (
        f"the API server of {transport} does not serve {resource}: pymirror's CRDs are not "
        "installed there. Install them (kubectl apply -f crds/, or the Helm chart with "
        "crds.install=true), or point --kubeconfig/--context at the cluster that runs "
        "the pymirror operator"
    )


def unreachable_message(transport: str, server: str) -> str:
    return (
        f"cannot reach the Kubernetes API server of {transport}: {server}. Check that the "
        "cluster is up and that --kubeconfig/--context (or KUBECONFIG) name it"
    )


async def guarded(
    call: Awaitable[T],
    verb: str,
    resource: Resource,
    namespace: str | None,
    transport: str,
) -> T:
    """``await call``, its errors translated (see the module docstring)."""
    try:
        return await call
    except ForbiddenError as e:
        raise AccessDeniedError(denied_message(verb, resource, namespace, str(e))) from e
    except NotFoundError as e:
        if verb in ("list", "deletecollection", "watch"):
            raise CrdsMissingError(crds_missing_message(resource, transport)) from e
        raise
    except (UnavailableError, UnauthorizedError) as e:
        raise ClusterUnreachableError(unreachable_message(transport, str(e))) from e
