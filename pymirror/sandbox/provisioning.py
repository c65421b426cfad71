"""Provisioning the API server pair: building its binaries once, installing the CRDs."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from pymirror.sandbox import assets
from pymirror.sandbox.errors import SandboxError
from pymirror.sandbox.progress import Progress

FIELD_MANAGER = "pymirror-sandbox"


def ensure_kube_binaries(cache: Path, progress: Progress) -> tuple[Path, Path]:
    """etcd and apiextensions-apiserver, built by the install script if missing."""
    etcd, apiserver = assets.kube_binaries(cache)
    if etcd.is_file() and apiserver.is_file():
        return etcd, apiserver
    script = assets.install_script()
    progress(f"building etcd + apiextensions-apiserver with {script} (minutes, once)")
    env = {**os.environ, "PYMIRROR_CACHE": str(cache)}
    with subprocess.Popen(
        ["bash", str(script)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            progress(f"  | {line.rstrip()}")
    if proc.returncode != 0 or not (etcd.is_file() and apiserver.is_file()):
        raise SandboxError(f"{script} failed (exit {proc.returncode}); see its output above")
    return etcd, apiserver


def install_crds(kubeconfig: Path, paths: Sequence[Path], timeout: float = 60.0) -> list[str]:
    """Server-side apply every CRD in ``paths``; wait until each is Established."""
    from registry.kube import KubeTransport

    transport = KubeTransport.from_kubeconfig(kubeconfig)
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
    names = []
    try:
        for file in paths:
            for doc in yaml.safe_load_all(file.read_text()):
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                name = doc["metadata"]["name"]
                transport.request(
                    "PATCH",
                    path,
                    what=f"apply CRD {name}",
                    params={"name": name},
                    query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                    body=doc,
                    content_type="application/apply-patch+yaml",
                )
                names.append(name)
        pending = set(names)
        deadline = time.monotonic() + timeout
        while pending:
            for name in sorted(pending):
                crd = transport.request("GET", path, what=f"get CRD {name}", params={"name": name})
                conditions = (crd.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    pending.discard(name)
            if pending and time.monotonic() > deadline:
                raise SandboxError(f"CRDs not Established after {timeout:.0f} s: {sorted(pending)}")
            if pending:
                time.sleep(0.1)
    finally:
        transport.close()
    return names
