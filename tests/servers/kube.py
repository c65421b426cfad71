"""A real Kubernetes API server for tests: etcd + the upstream apiextensions-apiserver.

No full kube-apiserver can be installed here; apiextensions-apiserver serves
CustomResourceDefinitions and custom objects with the real server code
(schema validation, watch, server-side apply, JSON patch, optimistic
concurrency), but no core/v1 or apps/v1 (see tests/kube/README.md). Both
binaries are built by scripts/install-kube-apiserver.sh into
``$PYMIRROR_CACHE/kube``.

Authentication is by client certificate: a throw-away CA signs the serving
certificate and a client certificate in group ``system:masters``, which the
delegated authorizer always allows. The delegated authn/authz kubeconfig
points at an address nothing listens on, so no request ever depends on it.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.servers.process import CACHE, ManagedProcess, ServerError, free_port

KUBE_DIR = CACHE / "kube"
APISERVER = KUBE_DIR / "apiextensions-apiserver"
ETCD = KUBE_DIR / "etcd"
INSTALL_HINT = "run scripts/install-kube-apiserver.sh (builds etcd + apiextensions-apiserver)"
DISABLED_ADMISSION = (
    "NamespaceLifecycle",  # no core/v1 Namespaces here: any namespace name is accepted
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
)


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


# --- certificates -------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def write_pki(directory: Path) -> Pki:
    """A CA, a serving cert for 127.0.0.1/localhost and a system:masters client cert."""
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pymirror-test-ca")])
    ca = (
        _builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    def leaf(
        name: x509.Name, usage: x509.ObjectIdentifier, san: x509.SubjectAlternativeName | None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _key()
        builder = (
            _builder(name, ca_name, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(aki, critical=False)
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server, server_key = leaf(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]),
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        ),
    )
    client, client_key = leaf(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "pymirror-test"),
            ]
        ),
        ExtendedKeyUsageOID.CLIENT_AUTH,
        None,
    )
    pki = Pki(
        ca_file=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )
    _write_cert(pki.ca_file, ca)
    _write_cert(pki.server_cert, server)
    _write_key(pki.server_key, server_key)
    _write_cert(pki.client_cert, client)
    _write_key(pki.client_key, client_key)
    return pki


# --- kubeconfigs --------------------------------------------------------------------------


def write_kubeconfig(path: Path, url: str, ca_file: Path, cert_file: Path, key_file: Path) -> None:
    """A kubeconfig for the `kubernetes` Python client (and any other client)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "pymirror-test",
                "cluster": {"server": url, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [
            {
                "name": "pymirror-test",
                "user": {"client-certificate": str(cert_file), "client-key": str(key_file)},
            }
        ],
        "contexts": [
            {
                "name": "pymirror-test",
                "context": {"cluster": "pymirror-test", "user": "pymirror-test"},
            }
        ],
        "current-context": "pymirror-test",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _write_dummy_delegation(path: Path) -> None:
    """Delegated authn/authz config pointing at a port nothing listens on (never contacted:
    lookups are skipped and system:masters is always allowed)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "none",
                "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True},
            }
        ],
        "users": [{"name": "none", "user": {"token": "unused"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "current-context": "none",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


# --- probes -------------------------------------------------------------------------------


def _get(url: str, context: ssl.SSLContext | None = None, timeout: float = 1.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def etcd_healthy(client_url: str) -> bool:
    try:
        status, body = _get(f"{client_url}/health")
    except OSError:
        return False
    return status == 200 and '"health":"true"' in body.replace(" ", "")


def client_context(api: KubeApi) -> ssl.SSLContext:
    """An SSL context that trusts the test CA and presents the system:masters client cert."""
    context = ssl.create_default_context(cafile=str(api.ca_file))
    context.load_cert_chain(str(api.cert_file), str(api.key_file))
    return context


def apiserver_live(api: KubeApi, context: ssl.SSLContext) -> bool:
    """True when /livez says ok (readyz stays red by design on this server)."""
    try:
        status, _ = _get(f"{api.url}/livez", context)
    except OSError:
        return False
    return status == 200


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
    pki = write_pki(workdir)
    client_port, peer_port = free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    etcd_argv = [
        str(etcd_bin),
        f"--name={name}",
        f"--data-dir={workdir / 'etcd'}",
        f"--listen-client-urls={etcd_url}",
        f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster={name}={peer_url}",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]
    etcd = ManagedProcess(f"{name}-etcd", etcd_argv, lambda: etcd_healthy(etcd_url), timeout=30)
    etcd.start()

    port = free_port()
    url = f"https://127.0.0.1:{port}"
    kubeconfig = workdir / "kubeconfig"
    write_kubeconfig(kubeconfig, url, pki.ca_file, pki.client_cert, pki.client_key)
    api = KubeApi(url, pki.ca_file, pki.client_cert, pki.client_key, kubeconfig)
    delegation = workdir / "delegation.kubeconfig"
    _write_dummy_delegation(delegation)
    apiserver_argv = [
        str(apiserver_bin),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={workdir / 'certs'}",
        f"--tls-cert-file={pki.server_cert}",
        f"--tls-private-key-file={pki.server_key}",
        f"--client-ca-file={pki.ca_file}",
        f"--kubeconfig={delegation}",  # core API for informers: never reachable, unused
        f"--authentication-kubeconfig={delegation}",
        f"--authorization-kubeconfig={delegation}",
        "--authentication-skip-lookup",
        f"--disable-admission-plugins={','.join(DISABLED_ADMISSION)}",
        "--enable-priority-and-fairness=false",
        "--enable-garbage-collector=false",
    ]
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
