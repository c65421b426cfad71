"""A local Kubernetes API server: etcd + the upstream apiextensions-apiserver.

No full kube-apiserver is installable here; apiextensions-apiserver is real
Kubernetes server code for CustomResourceDefinitions and custom objects
(validation, watch, server-side apply, the status subresource) but serves no
core/v1 or apps/v1, so the sandbox installs stand-in CRDs for Deployments,
StatefulSets and Secrets (:mod:`pymirror.sandbox.assets`). Both binaries are
built by ``install-kube-apiserver.sh`` into ``$PYMIRROR_CACHE/kube``.

Clients authenticate with a client certificate: a throw-away CA signs the
serving certificate (127.0.0.1, localhost) and a client certificate in group
``system:masters``, which the delegated authorizer always allows. The
delegated authn/authz kubeconfig points at a port nothing listens on and is
never contacted. Everything here is plain functions (certificates, argv,
probes), so both the sandbox and the test fixtures can start the pair.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DISABLED_ADMISSION = (
    "NamespaceLifecycle",  # no core/v1 Namespaces: any namespace name is accepted
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
)


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def write_pki(directory: Path, *, days: int = 30, name: str = "pymirror-sandbox") -> Pki:
    """A CA, a serving cert for 127.0.0.1/localhost and a system:masters client cert."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-ca")])
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    ca = (
        _builder(ca_name, ca_name, ca_key, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    def leaf(
        subject: x509.Name, eku: x509.ObjectIdentifier, san: x509.SubjectAlternativeName | None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _key()
        builder = (
            _builder(subject, ca_name, key, days)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
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
                x509.NameAttribute(NameOID.COMMON_NAME, name),
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
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.server_key, server_key)
    pki.client_cert.write_bytes(client.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.client_key, client_key)
    return pki


def write_kubeconfig(
    path: Path, url: str, pki: Pki, *, name: str = "pymirror-sandbox", namespace: str | None = None
) -> None:
    """A kubeconfig with one cluster, user and (current) context called ``name``."""
    context: dict[str, str] = {"cluster": name, "user": name}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": url, "certificate-authority": str(pki.ca_file)}}
        ],
        "users": [
            {
                "name": name,
                "user": {
                    "client-certificate": str(pki.client_cert),
                    "client-key": str(pki.client_key),
                },
            }
        ],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def write_dummy_delegation(path: Path) -> None:
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


def etcd_argv(
    etcd: Path, data_dir: Path, client_port: int, peer_port: int, name: str = "sandbox"
) -> list[str]:
    client_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    return [
        str(etcd),
        f"--name={name}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster={name}={peer_url}",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver_argv(apiserver: Path, etcd_url: str, port: int, pki: Pki, workdir: Path) -> list[str]:
    """The apiextensions-apiserver command line (writes its delegation kubeconfig to workdir)."""
    workdir.mkdir(parents=True, exist_ok=True)
    delegation = workdir / "delegation.kubeconfig"
    write_dummy_delegation(delegation)
    return [
        str(apiserver),
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


# --- probes -------------------------------------------------------------------------------


def http_get(
    url: str, context: ssl.SSLContext | None = None, timeout: float = 1.0
) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def etcd_healthy(client_url: str) -> bool:
    try:
        status, body = http_get(f"{client_url}/health")
    except OSError:
        return False
    return status == 200 and '"health":"true"' in body.replace(" ", "")


def client_context(pki: Pki) -> ssl.SSLContext:
    """Trusts the CA and presents the system:masters client certificate."""
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return context


def apiserver_live(url: str, context: ssl.SSLContext) -> bool:
    """True when /livez says ok (readyz stays red by design on this server)."""
    try:
        status, _ = http_get(f"{url}/livez", context)
    except OSError:
        return False
    return status == 200
