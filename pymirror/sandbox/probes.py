"""Loopback ports and the readiness probes of moto, the Kafka broker and the operator's
metrics (network I/O)."""

from __future__ import annotations

import socket
import struct
import urllib.error

from pymirror.sandbox.kube_server import http_get


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def kafka_api_versions_ok(port: int, timeout: float = 1.0) -> bool:
    """A Kafka ApiVersions v0 request answered without error."""
    client_id = b"pymirror-sandbox"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = b""
            while len(head) < 10:
                chunk = s.recv(10 - len(head))
                if not chunk:
                    return False
                head += chunk
    except OSError:
        return False
    _size, correlation, error = struct.unpack(">iih", head)
    return bool(correlation == 7 and error == 0)


def moto_ready(url: str) -> bool:
    try:
        status, _ = http_get(f"{url}/moto-api/")
    except (OSError, urllib.error.URLError):
        return False
    return status == 200


def metrics_ok(url: str) -> bool:
    """A Prometheus ``/metrics`` endpoint answers 200 (the operator's)."""
    try:
        status, _ = http_get(url)
    except (OSError, urllib.error.URLError):
        return False
    return status == 200
