"""A real Kubernetes API server for tests: etcd + the upstream apiextensions-apiserver.

No full kube-apiserver can be installed here; apiextensions-apiserver serves
CustomResourceDefinitions and custom objects with the real server code
(schema validation, watch, server-side apply, JSON patch, optimistic
concurrency), but no core/v1 or apps/v1 (see tests/kube/README.md). Both
binaries are built by scripts/install-kube-apiserver.sh into
``$PYMIRROR_CACHE/kube``.

Certificates, command lines and probes are the sandbox's
(:mod:`pymirror.sandbox.kube_server`): the tests start the same pair the way
``pymirror sandbox up`` does, as managed processes of their own.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pymirror.sandbox import kube_server
from tests.servers.process import CACHE, ManagedProcess, ServerError, free_port

KUBE_DIR = CACHE / "kube"
APISERVER = KUBE_DIR / "apiextensions-apiserver"
ETCD = KUBE_DIR / "etcd"
INSTALL_HINT = "run scripts/install-kube-apiserver.sh (builds etcd + apiextensions-apiserver)"


@dataclass(frozen=True)
class KubeApi:
    """Where a test finds the API server, and the files a client needs to talk to it."""

    url: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    kubeconfig: Path


def binaries() -> tuple[Path, Path]:
    """(etcd, apiextensions-apiserver); ServerError naming the install script if missing."""
    missing = [str(p) for p in (ETCD, APISERVER) if not p.is_file()]
    if missing:
        raise ServerError(
            f"Kubernetes API server not installed ({', '.join(missing)}); {INSTALL_HINT}"
        )
    return ETCD, APISERVER


def versions() -> str:
    """The VERSIONS file the install script wrote (for logs and CI output)."""
    try:
        return (KUBE_DIR / "VERSIONS").read_text().strip()
    except OSError:
        return "(unknown: no VERSIONS file)"


# --- probes -------------------------------------------------------------------------------


def client_context(api: KubeApi) -> ssl.SSLContext:
    """An SSL context that trusts the test CA and presents the system:masters client cert."""
    context = ssl.create_default_context(cafile=str(api.ca_file))
    context.load_cert_chain(str(api.cert_file), str(api.key_file))
    return context


def apiserver_live(api: KubeApi, context: ssl.SSLContext) -> bool:
    """True when /livez says ok (readyz stays red by design on this server)."""
    return kube_server.apiserver_live(api.url, context)


# --- the running pair ---------------------------------------------------------------------


@dataclass
class RunningKube:
    """A started etcd + apiextensions-apiserver pair and their work directory."""

    api: KubeApi
    etcd: ManagedProcess
    apiserver: ManagedProcess
    workdir: Path

    def check(self) -> None:
        """Raise ServerError naming the process if either died or the API stopped answering."""
        for proc in (self.etcd, self.apiserver):
            if not proc.alive():
                raise ServerError(
                    f"{proc.name} (pid {proc.pid}) is not running; "
                    f"log {proc.log_path}:\n{proc.log_tail()}"
                )
        if not apiserver_live(self.api, client_context(self.api)):
            raise ServerError(
                f"{self.apiserver.name} at {self.api.url} does not answer /livez; "
                f"log {self.apiserver.log_path}:\n{self.apiserver.log_tail()}"
            )

    def stop(self) -> None:
        try:
            self.apiserver.stop()
        finally:
            self.etcd.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)


def start_kube(name: str = "kube") -> RunningKube:
    """Start etcd, then the API server against it; return when /livez answers."""
    etcd_bin, apiserver_bin = binaries()
    workdir = Path(tempfile.mkdtemp(prefix="pymirror-kube-"))
    try:
        return _start(name, etcd_bin, apiserver_bin, workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _start(name: str, etcd_bin: Path, apiserver_bin: Path, workdir: Path) -> RunningKube:
    pki = kube_server.write_pki(workdir, days=2, name="pymirror-test")
    client_port, peer_port = free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{client_port}"
    etcd_argv = kube_server.etcd_argv(etcd_bin, workdir / "etcd", client_port, peer_port, name)
    etcd = ManagedProcess(
        f"{name}-etcd", etcd_argv, lambda: kube_server.etcd_healthy(etcd_url), timeout=30
    )
    etcd.start()

    port = free_port()
    url = f"https://127.0.0.1:{port}"
    kubeconfig = workdir / "kubeconfig"
    kube_server.write_kubeconfig(kubeconfig, url, pki, name="pymirror-test")
    api = KubeApi(url, pki.ca_file, pki.client_cert, pki.client_key, kubeconfig)
    apiserver_argv = kube_server.apiserver_argv(apiserver_bin, etcd_url, port, pki, workdir)
    context = client_context(api)
    apiserver = ManagedProcess(
        f"{name}-apiserver", apiserver_argv, lambda: apiserver_live(api, context), timeout=60
    )
    try:
        apiserver.start()
    except BaseException:
        etcd.stop()
        raise
    return RunningKube(api, etcd, apiserver, workdir)


def etcd_version() -> str:
    """`etcd --version`, first line."""
    etcd_bin, _ = binaries()
    out = subprocess.run(
        [str(etcd_bin), "--version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    return out.splitlines()[0] if out else ""
