"""Who runs ``pymirror exec``: the session's ``spec.owner`` and the default namespace.

``username`` is the local login (``getpass.getuser``), ``hostname`` this machine's name,
``k8sUsername`` the kubeconfig user of the context in use (``--context``, else the
file's ``current-context``); inside a pod with no kubeconfig it is ``serviceaccount``.
The kubeconfig is read as YAML here (only ``contexts`` and ``current-context``); the
cluster connection itself is ``registry.objects.Kube``'s. ``KUBECONFIG`` may list
several files: the first file that sets a value wins, as kubectl merges them.
``Identity.display()`` (and ``owner_text`` for a ``spec.owner``) is the
``whoami/k8s-user@hostname`` form ``pymirror status`` shows and ``session kill`` signs with.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

UNKNOWN_USER = "unknown"


@dataclass(frozen=True)
class Identity:
    username: str
    hostname: str
    k8s_username: str
    namespace: str | None
    """The context's namespace, if it sets one."""

    def owner(self) -> dict[str, str]:
        """``spec.owner`` (wire form)."""
        return {
            "username": self.username,
            "hostname": self.hostname,
            "k8sUsername": self.k8s_username,
        }

    def display(self) -> str:
        """``whoami/k8s-user@hostname``, as ``pymirror status`` shows an owner and as
        ``pymirror session kill`` signs the ``pymirror.dev/killed`` annotation."""
        return owner_text(self.owner())


def owner_text(owner: Mapping[str, Any]) -> str:
    """A ``spec.owner`` as ``whoami/k8s-user@hostname`` (``?`` for a missing part)."""
    parts = (owner.get(k) or "?" for k in ("username", "k8sUsername", "hostname"))
    username, k8s_username, hostname = parts
    return f"{username}/{k8s_username}@{hostname}"


def kubeconfig_files(path: str | None, env: Mapping[str, str] | None = None) -> list[Path]:
    """The kubeconfig files in merge order."""
    env = os.environ if env is None else env
    if path:
        return [Path(path)]
    if env.get("KUBECONFIG"):
        return [Path(p) for p in env["KUBECONFIG"].split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def _documents(files: list[Path]) -> list[Mapping[str, Any]]:
    docs = []
    for file in files:
        try:
            doc = yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError):
            continue  # Kube.from_kubeconfig reports an unusable file
        if isinstance(doc, Mapping):
            docs.append(doc)
    return docs


def context_of(
    kubeconfig: str | None, context: str | None, env: Mapping[str, str] | None = None
) -> tuple[str | None, str | None]:
    """``(user, namespace)`` of the context in use; Nones when nothing names them."""
    docs = _documents(kubeconfig_files(kubeconfig, env))
    name = context or next((d["current-context"] for d in docs if d.get("current-context")), None)
    for doc in docs:
        for entry in doc.get("contexts") or []:
            if isinstance(entry, Mapping) and entry.get("name") == name:
                ctx = entry.get("context") or {}
                return ctx.get("user") or None, ctx.get("namespace") or None
    return None, None


def identity(
    kubeconfig: str | None, context: str | None, env: Mapping[str, str] | None = None
) -> Identity:
    """The local user, this host and the kubeconfig user of the context in use."""
    env = os.environ if env is None else env
    user, namespace = context_of(kubeconfig, context, env)
    if user is None and kubeconfig is None and env.get("KUBERNETES_SERVICE_HOST"):
        user = "serviceaccount"
    try:
        username = getpass.getuser()
    except (KeyError, OSError):
        username = UNKNOWN_USER
    return Identity(username, socket.gethostname() or UNKNOWN_USER, user or UNKNOWN_USER, namespace)
