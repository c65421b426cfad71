"""Network namespaces for tests: created with unique names, always deleted."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass(frozen=True)
class NetnsPair:
    """Server and client namespaces joined by a veth pair."""

    server: str
    client: str
    server_ip: str
    client_ip: str

    def exec_argv(self, ns: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]


@contextlib.contextmanager
def netns(name: str | None = None) -> Iterator[str]:
    """A fresh namespace with ``lo`` up, deleted on exit (also on failure)."""
    name = name or f"pmt{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


@contextlib.contextmanager
def netns_pair() -> Iterator[NetnsPair]:
    tag = uuid.uuid4().hex[:6]
    octet = int(tag[:2], 16) % 200 + 20
    with netns(f"pms{tag}") as server, netns(f"pmc{tag}") as client:
        ip("link", "add", f"vs{tag}", "type", "veth", "peer", "name", f"vc{tag}")
        ip("link", "set", f"vs{tag}", "netns", server)
        ip("link", "set", f"vc{tag}", "netns", client)
        server_ip, client_ip = f"10.{octet}.0.1", f"10.{octet}.0.2"
        ip("-n", server, "addr", "add", f"{server_ip}/24", "dev", f"vs{tag}")
        ip("-n", client, "addr", "add", f"{client_ip}/24", "dev", f"vc{tag}")
        ip("-n", server, "link", "set", f"vs{tag}", "up")
        ip("-n", client, "link", "set", f"vc{tag}", "up")
        yield NetnsPair(server, client, server_ip, client_ip)
