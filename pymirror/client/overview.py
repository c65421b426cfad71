"""What ``pymirror status`` reports, as plain data (pure: objects in, records out).

``session_record(obj, now)`` turns one SplitSession into its record and
``split_record(obj, worker, now)`` one QueueSplit (with its worker Deployment, if it
could be read). ``overview(...)`` gathers them, sorted, into the document that
``-o json`` / ``-o yaml`` print unchanged. Its shape is stable (every key always present,
``null`` when unknown; new keys may be added, none removed or renamed)::

    {"apiVersion": "pymirror.dev/v1alpha1", "kind": "Status",
     "scope": {"namespace", "allNamespaces", "operatorNamespace"},
     "sessions": [{"name", "namespace", "uid", "target": {"apiVersion", "kind", "name",
                   "container"}, "targetPath", "owner": {"username", "hostname",
                   "k8sUsername"}, "user", "phase", "sequence", "endReason", "message",
                   "killedBy", "deleting", "created", "ageSeconds", "leaseSeconds",
                   "renewTime", "queues": [{"id", "kind", "mode", "messageFilter",
                   "jqFilter", "original", "temporary", "envVar", "split"}]}],
     "splits": [{"name", "namespace", "kind", "queueId", "original", "target": {...,
                 "namespace", "envVar"}, "targetPath", "fallback", "handBack",
                 "handBackPhase", "handBackRemaining", "activeSessions",
                 "sessions": [{"session", "sequence", "destination", "messageFilter",
                               "jqFilter", "mode", "forwarded"}],
                 "worker": {"name", "replicas", "readyReplicas", "error"},
                 "counters": {"read", "unmatched", "fallback", "failed", "lag",
                              "forwarded"},
                 "temporaryResources": [{"name", "role", "session", "created"}],
                 "created", "ageSeconds"}]}

A session queue's filter comes from the ``spec.queues`` entry of the same id and kind,
else from that kind's ``"*"`` entry (the operator expands ``*`` into one status entry per
queue). Before the operator has planned a session (no ``status.queues``), the spec's
entries are listed with ``original`` etc. null.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pymirror.client.identity import owner_text
from registry.session_models import API_VERSION

KILLED_ANNOTATION = "pymirror.dev/killed"
COUNTER_KEYS = ("read", "unmatched", "fallback", "failed", "lag")

Record = dict[str, Any]


def parse_time(text: Any) -> datetime | None:
    """An RFC 3339 timestamp (``...Z`` or with an offset) as an aware datetime, or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age_seconds(meta: Mapping[str, Any], now: datetime) -> int | None:
    created = parse_time(meta.get("creationTimestamp"))
    return None if created is None else max(int((now - created).total_seconds()), 0)


def target_path(target: Mapping[str, Any]) -> str:
    """``deployment/NAME[/container/C]``, as mirrord writes a target."""
    kind = str(target.get("kind") or "?").lower()
    tail = f"/container/{target['container']}" if target.get("container") else ""
    return f"{kind}/{target.get('name') or '?'}{tail}"


def _target(target: Mapping[str, Any], *extra: str) -> Record:
    keys = ("apiVersion", "kind", "name", "container", *extra)
    return {k: target.get(k) for k in keys}


def _spec_queue(spec_queues: list[Mapping[str, Any]], qid: Any, kind: Any) -> Mapping[str, Any]:
    exact = [q for q in spec_queues if q.get("id") == qid and q.get("kind") == kind]
    star = [q for q in spec_queues if q.get("id") == "*" and q.get("kind") == kind]
    found = exact or star or [q for q in spec_queues if q.get("id") == qid]
    return found[0] if found else {}


def _queue(spec: Mapping[str, Any], state: Mapping[str, Any] | None) -> Record:
    state = state or {}
    return {
        "id": state.get("id", spec.get("id")),
        "kind": state.get("kind") or spec.get("kind"),
        "mode": spec.get("mode") or "steal",
        "messageFilter": dict(spec.get("messageFilter") or {}),
        "jqFilter": spec.get("jqFilter"),
        "original": state.get("original"),
        "temporary": state.get("temporary"),
        "envVar": state.get("envVar"),
        "split": state.get("split"),
    }


def session_record(obj: Mapping[str, Any], now: datetime) -> Record:
    """One SplitSession's record (see the module docstring)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    spec_queues = [q for q in spec.get("queues") or [] if isinstance(q, Mapping)]
    states = [q for q in status.get("queues") or [] if isinstance(q, Mapping)]
    if states:
        queues = [_queue(_spec_queue(spec_queues, s.get("id"), s.get("kind")), s) for s in states]
    else:
        queues = [_queue(q, None) for q in spec_queues]
    owner = spec.get("owner") or {}
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "target": _target(spec.get("target") or {}),
        "targetPath": target_path(spec.get("target") or {}),
        "owner": {k: owner.get(k) for k in ("username", "hostname", "k8sUsername")},
        "user": owner_text(owner),
        "phase": status.get("phase"),
        "sequence": status.get("sequence"),
        "endReason": status.get("endReason"),
        "message": status.get("message"),
        "killedBy": (meta.get("annotations") or {}).get(KILLED_ANNOTATION),
        "deleting": bool(meta.get("deletionTimestamp")),
        "created": meta.get("creationTimestamp"),
        "ageSeconds": age_seconds(meta, now),
        "leaseSeconds": spec.get("leaseSeconds"),
        "renewTime": spec.get("renewTime"),
        "queues": queues,
    }


def worker_record(
    name: str | None, deployment: Mapping[str, Any] | None, error: str | None
) -> Record:
    """The split's worker Deployment: desired and ready replicas (None when unknown)."""
    status = (deployment or {}).get("status") or {}
    spec = (deployment or {}).get("spec") or {}
    replicas = status.get("replicas", spec.get("replicas")) if deployment is not None else None
    ready = status.get("readyReplicas", 0) if deployment is not None else None
    return {"name": name, "replicas": replicas, "readyReplicas": ready, "error": error}


def split_record(obj: Mapping[str, Any], worker: Record, now: datetime) -> Record:
    """One QueueSplit's record, ``worker`` from :func:`worker_record`."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    counters = status.get("counters") or {}
    forwarded: Mapping[str, Any] = counters.get("forwarded") or {}
    hand_back = status.get("handBack") or {}
    routes = sorted(
        (r for r in spec.get("routes") or [] if isinstance(r, Mapping)),
        key=lambda r: (r.get("sequence") or 0, str(r.get("session"))),
    )
    target = spec.get("target") or {}
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "kind": spec.get("kind"),
        "queueId": spec.get("queueId"),
        "original": spec.get("original"),
        "target": _target(target, "namespace", "envVar"),
        "targetPath": target_path(target),
        "fallback": spec.get("fallback"),
        "handBack": bool(spec.get("handBack")),
        "handBackPhase": hand_back.get("phase"),
        "handBackRemaining": hand_back.get("remaining"),
        "activeSessions": status.get("activeSessions"),
        "sessions": [
            {
                "session": r.get("session"),
                "sequence": r.get("sequence"),
                "destination": r.get("destination"),
                "messageFilter": dict(r.get("messageFilter") or {}),
                "jqFilter": r.get("jqFilter"),
                "mode": r.get("mode") or "steal",
                "forwarded": forwarded.get(str(r.get("session"))),
            }
            for r in routes
        ],
        "worker": worker,
        "counters": {
            **{k: counters.get(k) for k in COUNTER_KEYS},
            "forwarded": dict(forwarded),
        },
        "temporaryResources": [
            {k: t.get(k) for k in ("name", "role", "session", "created")}
            for t in status.get("temporaryResources") or []
            if isinstance(t, Mapping)
        ],
        "created": meta.get("creationTimestamp"),
        "ageSeconds": age_seconds(meta, now),
    }


def overview(
    sessions: Iterable[Record],
    splits: Iterable[Record],
    *,
    namespace: str | None,
    operator_namespace: str | None,
) -> Record:
    """The whole document, sessions in (namespace, sequence, name) order, splits by
    (namespace, name)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Status",
        "scope": {
            "namespace": namespace,
            "allNamespaces": namespace is None,
            "operatorNamespace": operator_namespace,
        },
        "sessions": sorted(
            sessions,
            key=lambda s: (str(s["namespace"]), s["sequence"] or 1 << 62, str(s["name"])),
        ),
        "splits": sorted(splits, key=lambda s: (str(s["namespace"]), str(s["name"]))),
    }
