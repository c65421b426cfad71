"""One SplitSession from the developer's side: create, wait for Ready, renew, end.

``ExecSession`` wraps one session object (``registry.session_models.SplitSession``)
through ``registry.objects.Objects``; nothing else touches the cluster:

* ``create(body)`` creates it (``session_body`` builds the spec: target, owner, queues,
  ``leaseSeconds``, ``renewTime``);
* ``wait_ready(within, on_pending)`` follows it with a watch until ``status.phase`` is
  ``Ready`` (returns the status), calling ``on_pending(message)`` whenever the
  operator's ``status.message`` changes; ``SessionFailedError`` (phase Failed, with the
  operator's message), ``SessionEndedError`` (deleted or Ending first) or
  ``ReadyTimeoutError`` (not Ready within ``within`` seconds);
* ``renew_forever(lease)`` writes ``spec.renewTime`` every ``lease/3`` seconds and
  returns an end reason if the object is gone;
* ``watch_end()`` returns the reason once the session is deleted or leaves Ready
  (Ending, Failed) underneath the command;
* ``end(within)`` deletes it and waits (bounded) until it is gone (the operator
  removes its finalizer once the splits let the session go); True when gone.

``session_env`` turns a Ready status into the local process's environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from pymirror.client.config import QueueRequest, TargetSpec
from pymirror.client.identity import Identity
from pymirror.errors import ConfigError, PymirrorError
from registry.errors import NotFoundError, RegistryError
from registry.objects import Obj, Objects
from registry.session_models import API_VERSION

log = structlog.get_logger()

KILLED_ANNOTATION = "pymirror.dev/killed"
_NOT_NAME = re.compile(r"[^a-z0-9-]+")


class SessionFailedError(PymirrorError):
    """The operator refused or could not provision the session (phase Failed)."""


class SessionEndedError(PymirrorError):
    """The session was deleted, expired or killed while it was in use."""


class ReadyTimeoutError(PymirrorError):
    """The session did not become Ready in time."""


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def session_name(username: str) -> str:
    """``exec-<user>-<8 hex>``: a DNS-1123 name unique enough for one namespace."""
    user = _NOT_NAME.sub("-", username.lower()).strip("-")[:40].rstrip("-") or "user"
    return f"exec-{user}-{secrets.token_hex(4)}"


def session_body(
    name: str,
    target: TargetSpec,
    api_version: str,
    queues: tuple[QueueRequest, ...],
    who: Identity,
    lease_seconds: int,
) -> dict[str, Any]:
    """The SplitSession to create (wire form)."""
    spec_target: dict[str, Any] = {"apiVersion": api_version, "kind": target.kind}
    spec_target["name"] = target.name
    if target.container:
        spec_target["container"] = target.container
    return {
        "apiVersion": API_VERSION,
        "kind": "SplitSession",
        "metadata": {"name": name},
        "spec": {
            "target": spec_target,
            "owner": who.owner(),
            "queues": [q.to_spec() for q in queues],
            "leaseSeconds": lease_seconds,
            "renewTime": now_rfc3339(),
        },
    }


def session_env(
    status: Mapping[str, Any], base: Mapping[str, str], overrides: frozenset[str] = frozenset()
) -> dict[str, str]:
    """``base`` plus each ``status.queues[].envVar`` set to its ``value``; ``ConfigError``
    when the config's ``feature.env.override`` would hide one of them."""
    env = dict(base)
    for queue in status.get("queues") or []:
        var, value = queue.get("envVar"), queue.get("value")
        if not var or value is None:
            continue
        if var in overrides:
            raise ConfigError(
                f"feature.env.override sets {var}, the env var of split queue "
                f"{queue.get('id')!r}: the local process would miss its temporary queue; "
                "remove the override"
            )
        env[var] = str(value)
    return env


def _ended_reason(obj: Obj) -> str | None:
    """Why ``obj`` is no longer usable (deleting, Ending or Failed), or None."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    phase = status.get("phase")
    killed = (meta.get("annotations") or {}).get(KILLED_ANNOTATION)
    if phase not in ("Ending", "Failed") and not meta.get("deletionTimestamp"):
        return None
    ended = phase in ("Ending", "Failed")
    parts = [f"phase {phase}" if ended else "being deleted"]
    if status.get("endReason"):
        parts.append(f"endReason {status['endReason']}")
    if killed:
        parts.append(f"killed by {killed}")
    message = status.get("message")  # the end's message; while still Ready, a stale one
    if ended and message and not (killed and message == f"killed by {killed}"):
        parts.append(str(message))
    return "; ".join(parts)


def _why(obj: Obj) -> str:
    """`` (killed by X)`` for a deleted object that carried the kill annotation."""
    killed = ((obj.get("metadata") or {}).get("annotations") or {}).get(KILLED_ANNOTATION)
    return f" (killed by {killed})" if killed else ""


class ExecSession:
    """One SplitSession created by this client (see the module docstring)."""

    def __init__(self, objects: Objects, name: str) -> None:
        self.objects = objects
        self.name = name
        self.resource_version: str | None = None
        """The last resourceVersion seen; watches resume from it."""

    @property
    def ref(self) -> str:
        return f"{self.objects.namespace}/{self.name}"

    async def create(self, body: Mapping[str, Any]) -> Obj:
        obj = await self.objects.create(body)
        self._seen(obj)
        return obj

    def _seen(self, obj: Obj) -> None:
        self.resource_version = str((obj.get("metadata") or {}).get("resourceVersion") or "")

    def _changes(self) -> Any:
        """Events of this object from the last resourceVersion seen."""
        return self.objects.watch(
            resource_version=self.resource_version or None,
            field_selector=f"metadata.name={self.name}",
        )

    async def wait_ready(self, within: float, on_pending: Callable[[str], None]) -> dict[str, Any]:
        """The status once Ready (see the module docstring for the errors)."""
        shown: str | None = None
        try:
            async with asyncio.timeout(within):
                obj = await self._get_or_end()
                while (status := self._pending_status(obj)) is not None:
                    message = status.get("message")
                    if message != shown:
                        on_pending(str(message or "waiting for the operator"))
                        shown = message
                    obj = await self._next(obj)
                return dict(obj.get("status") or {})
        except TimeoutError:
            raise ReadyTimeoutError(
                f"session {self.ref} was not Ready within {within:g} s (last message: "
                f"{shown or 'none: is the operator running and watching this namespace?'}); "
                "raise --ready-timeout or check `pymirror operator` logs"
            ) from None

    def _pending_status(self, obj: Obj) -> dict[str, Any] | None:
        """The status while still Pending; None once Ready; the errors of ``wait_ready``."""
        status: dict[str, Any] = obj.get("status") or {}
        phase = status.get("phase")
        if phase == "Ready":
            return None
        if phase == "Failed":
            raise SessionFailedError(
                f"session {self.ref} failed: "
                f"{status.get('message') or 'the operator gave no message'}"
            )
        reason = _ended_reason(obj)
        if reason is not None:
            raise SessionEndedError(f"session {self.ref} ended before Ready: {reason}")
        return status

    async def _get_or_end(self) -> Obj:
        try:
            obj = await self.objects.get(self.name)
        except NotFoundError:
            raise SessionEndedError(f"session {self.ref} was deleted") from None
        self._seen(obj)
        return obj

    async def _next(self, current: Obj) -> Obj:
        """The next version of the object (``SessionEndedError`` when it is deleted)."""
        async with self._changes() as events:
            async for event in events:
                if event.type == "DELETED":
                    raise SessionEndedError(f"session {self.ref} was deleted{_why(event.object)}")
                self._seen(event.object)
                changed: Obj = event.object
                return changed
        return current  # pragma: no cover - a watch does not end by itself

    async def watch_end(self) -> str:
        """Once the session is deleted, Ending or Failed: why."""
        obj = await self._get_or_none()
        while obj is not None:
            reason = _ended_reason(obj)
            if reason is not None:
                return f"session {self.ref} ended: {reason}"
            try:
                obj = await self._next(obj)
            except SessionEndedError as e:
                return str(e)
        return f"session {self.ref} was deleted"

    async def _get_or_none(self) -> Obj | None:
        try:
            return await self._get_or_end()
        except SessionEndedError:
            return None

    async def renew_forever(self, lease_seconds: int) -> str:
        """Renew every ``lease_seconds / 3``; returns why it stopped (the object is gone)."""
        period = lease_seconds / 3
        while True:
            await asyncio.sleep(period)
            try:
                await self.renew()
            except NotFoundError:
                return f"session {self.ref} was deleted (the lease renewal found no object)"
            except RegistryError as e:
                if not e.retriable:
                    raise
                log.warning("lease renewal failed; retrying", session=self.ref, error=str(e))

    async def renew(self) -> Obj:
        obj = await self.objects.merge_patch(self.name, {"spec": {"renewTime": now_rfc3339()}})
        return obj

    async def end(self, within: float) -> bool:
        """Delete and wait until the object is gone (at most ``within`` s); True when gone."""
        try:
            deleted = await self.objects.delete(self.name, missing_ok=True)
        except RegistryError as e:
            log.warning("cannot delete the session", session=self.ref, error=str(e))
            return False
        if deleted is None or deleted.get("kind") == "Status":
            return True  # gone at once (no finalizer)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                obj = await self._get_or_none()
                while obj is not None:
                    try:
                        obj = await self._next(obj)
                    except SessionEndedError:
                        return True
                return True
        return False
