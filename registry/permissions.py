"""The Kubernetes API access of pymirror's three identities, as data (pure).

The Helm chart (``deploy/pymirror/``) grants exactly these rules, and tests compare
the two both ways (tests/integration/deploy/test_rbac.py):

* ``OPERATOR``: what ``pymirror operator`` calls (pymirror/operator/, through the
  adapter ``registry.objects``), with the production kinds (``apps/v1``, core ``v1``);
* ``WORKER``: what a split worker (``pymirror worker sqs|kafka --split``) calls;
* ``USER``: what ``pymirror exec``, ``pymirror status`` and ``pymirror session kill``
  call as the developer (the ClusterRole ``pymirror-user``).

Each rule is ``cluster`` (a ClusterRole: any namespace, because sessions, their
targets and the ConfigMaps those read live in the developers' namespaces) or
``release`` (a Role in the operator's namespace: QueueSplits, the worker
Deployments, MirrordKafkaClientConfigs and the Secrets they load).

``METHOD_VERBS`` maps every method of the adapter (``registry.objects.Objects``) to
the RBAC verbs its requests need; ``access_of`` classifies one HTTP request (method,
path, query) into the ``Access`` RBAC checks, so a test can record what the code
really sends and check it against these rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Scope = Literal["cluster", "release"]

PYMIRROR = "pymirror.dev"
QUEUES = "queues.mirrord.metalbear.co"
APPS = "apps"
ARGO = "argoproj.io"
CORE = ""


@dataclass(frozen=True)
class Rule:
    """``verbs`` on ``resources`` (plural, or ``plural/subresource``) of ``group``."""

    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    scope: Scope
    why: str

    def grants(self, access: Access, release_namespace: str) -> bool:
        """Whether this rule allows ``access`` (a ``release`` rule: only in that namespace)."""
        if self.scope == "release" and access.namespace != release_namespace:
            return False
        return (
            access.group == self.group
            and access.resource in self.resources
            and access.verb in self.verbs
        )


@dataclass(frozen=True)
class Access:
    """One request as RBAC sees it; ``namespace`` None = across every namespace."""

    group: str
    resource: str
    verb: str
    namespace: str | None

    def __str__(self) -> str:
        where = self.namespace or "(all namespaces)"
        group = f".{self.group}" if self.group else ""
        return f"{self.verb} {self.resource}{group} in {where}"


#: Adapter method (``registry.objects.Objects``) -> the verbs of the requests it sends.
#: ``update``/``add_finalizer``/``remove_finalizer`` read then PUT; ``watch`` lists first
#: (without a resourceVersion, and again after a 410) then watches.
METHOD_VERBS: Mapping[str, tuple[str, ...]] = {
    "get": ("get",),
    "list": ("list",),
    "watch": ("list", "watch"),
    "open_watch_stream": ("watch",),
    "create": ("create",),
    "replace": ("update",),
    "patch": ("patch",),
    "apply": ("patch",),
    "json_patch": ("patch",),
    "merge_patch": ("patch",),
    "patch_status": ("patch",),
    "delete": ("delete",),
    "update": ("get", "update"),
    "add_finalizer": ("get", "update"),
    "remove_finalizer": ("get", "update"),
}

OPERATOR: tuple[Rule, ...] = (
    Rule(
        PYMIRROR,
        ("splitsessions",),
        ("get", "list", "watch", "update", "delete"),
        "cluster",
        "watch sessions; add/remove its finalizer (update); delete a session whose lease "
        "lapsed or that was killed",
    ),
    Rule(PYMIRROR, ("splitsessions/status",), ("patch",), "cluster", "session phase, queues"),
    Rule(
        PYMIRROR,
        ("queuesplits",),
        ("get", "list", "watch", "create", "update", "delete"),
        "release",
        "one QueueSplit per split queue/topic: routes, records, hand-back",
    ),
    Rule(PYMIRROR, ("queuesplits/status",), ("patch",), "release", "the split's phase"),
    Rule(
        QUEUES,
        ("mirrordworkloadqueueregistries", "mirrordkafkatopicsconsumers"),
        ("list",),
        "cluster",
        "find the registry / topics consumer of a session's target",
    ),
    Rule(
        QUEUES,
        ("mirrordkafkaclientconfigs",),
        ("get",),
        "release",
        "resolve a Kafka client config (and its parents)",
    ),
    Rule(
        APPS,
        ("deployments", "statefulsets"),
        ("get", "list", "patch"),
        "cluster",
        "read a session's target; patch its env to the fallback and back (JSON patch); "
        "GC lists workloads for orphan patches",
    ),
    Rule(ARGO, ("rollouts",), ("get", "list", "patch"), "cluster", "the same for Rollouts"),
    Rule(
        APPS,
        ("deployments",),
        ("create", "update", "delete"),
        "release",
        "the split-worker Deployments (one per split)",
    ),
    Rule(
        CORE,
        ("configmaps",),
        ("get",),
        "cluster",
        "queue names the target reads through valueFrom/envFrom ConfigMaps",
    ),
    Rule(
        CORE,
        ("secrets",),
        ("get",),
        "release",
        "loadFromSecret of MirrordKafkaClientConfigs (Secrets in the operator's namespace)",
    ),
)

WORKER: tuple[Rule, ...] = (
    Rule(PYMIRROR, ("queuesplits",), ("get", "list", "watch"), "release", "follow its routes"),
    Rule(
        PYMIRROR,
        ("queuesplits/status",),
        ("patch",),
        "release",
        "acknowledge the routes (appliedGeneration), counters, hand-back",
    ),
    Rule(
        QUEUES,
        ("mirrordkafkaclientconfigs",),
        ("get",),
        "release",
        "a Kafka worker resolves its client config (--client-config) itself",
    ),
    Rule(CORE, ("secrets",), ("get",), "release", "loadFromSecret of that client config"),
)

USER: tuple[Rule, ...] = (
    Rule(
        PYMIRROR,
        ("splitsessions",),
        ("create", "get", "list", "watch", "patch", "delete", "deletecollection"),
        "cluster",
        "pymirror exec (create, watch, renew: patch, end: delete); pymirror status (list); "
        "pymirror session kill (get, patch, delete, deletecollection)",
    ),
    Rule(PYMIRROR, ("queuesplits",), ("get", "list", "watch"), "cluster", "pymirror status"),
    Rule(APPS, ("deployments",), ("get",), "cluster", "pymirror status: the worker Deployment"),
)

ROLES: Mapping[str, tuple[Rule, ...]] = {"operator": OPERATOR, "worker": WORKER, "user": USER}


def merged(rules: Iterable[Rule], scope: Scope) -> dict[tuple[str, str], set[str]]:
    """``(group, resource) -> verbs`` of the rules of ``scope``."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        if rule.scope == scope:
            for resource in rule.resources:
                out.setdefault((rule.group, resource), set()).update(rule.verbs)
    return out


def allowed(rules: Sequence[Rule], access: Access, release_namespace: str) -> bool:
    """Whether some rule of ``rules`` grants ``access``."""
    return any(rule.grants(access, release_namespace) for rule in rules)


def access_of(method: str, path: str, query: Iterable[tuple[str, str]] = ()) -> Access:
    """The RBAC view of one request: ``GET /apis/G/V/namespaces/N/P/NAME/SUB`` -> ``get P/SUB``
    of group G in N. ``ValueError`` for a path that is not a resource path."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = CORE, parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        raise ValueError(f"not a resource path: {path!r}")
    namespace: str | None = None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise ValueError(f"not a resource path: {path!r}")
    plural, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2:]
    resource = f"{plural}/{sub[0]}" if sub else plural
    watching = any(k == "watch" and v.lower() in ("1", "true") for k, v in query)
    verb = _verb(method.upper(), named=name is not None, watching=watching)
    return Access(group, resource, verb, namespace)


def _verb(method: str, *, named: bool, watching: bool) -> str:
    if method == "GET":
        return "watch" if watching else ("get" if named else "list")
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch"}
    if method not in verbs:
        raise ValueError(f"no RBAC verb for HTTP {method}")
    return verbs[method]
