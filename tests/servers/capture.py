"""Packet capture for tests: tcpdump inside a network namespace the test creates.

``tcpdump`` and ``ip`` come from Debian (scripts/install-tcpdump.sh); both need
root. A namespace is created with a unique name and always deleted, also when
the test fails. Every wait here is bounded in time and every loop in count.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.servers.process import ServerError

INSTALL_HINT = "run scripts/install-tcpdump.sh"
SBIN = ("/usr/sbin", "/sbin", "/usr/bin")


def tool_path(name: str) -> Path:
    """``tcpdump`` or ``ip`` (also found in sbin dirs missing from PATH), or a ServerError."""
    found = shutil.which(name) or next(
        (f"{d}/{name}" for d in SBIN if os.access(f"{d}/{name}", os.X_OK)), None
    )
    if found is None:
        raise ServerError(f"{name} is not installed; {INSTALL_HINT}")
    return Path(found)


def require_root() -> None:
    if os.geteuid() != 0:
        raise ServerError("packet capture needs root (network namespaces, raw sockets)")


def ip(*args: str) -> str:
    done = subprocess.run(
        [str(tool_path("ip")), *args], capture_output=True, text=True, timeout=10, check=False
    )
    if done.returncode != 0:
        raise ServerError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def namespaces() -> set[str]:
    """Names of the network namespaces that exist now."""
    return {line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()}


@contextlib.contextmanager
def netns() -> Iterator[str]:
    """A fresh network namespace with ``lo`` up; deleted on exit (also on failure)."""
    require_root()
    name = f"pmsmoke{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(
            [str(tool_path("ip")), "netns", "del", name], capture_output=True, timeout=10
        )


SENDER = """
import socket, sys, time
port, payload, n = int(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    for _ in range(n):
        s.sendto(payload, ("127.0.0.1", port))
        time.sleep(0.1)
"""


def capture_udp(
    ns: str, port: int, payload: bytes, tcpdump: Path | None = None, timeout: float = 10.0
) -> bytes:
    """Capture one UDP datagram to 127.0.0.1:``port`` on ``lo`` inside ``ns``; return the pcap.

    tcpdump runs in the namespace with ``-c 1``; a sender in the namespace repeats the
    datagram every 0.1 s (at most ``timeout`` s) until tcpdump has written one packet.
    Raises ServerError naming tcpdump if it fails, dies, or captures nothing in time.
    """
    tcpdump = tcpdump or tool_path("tcpdump")
    argv = [str(tool_path("ip")), "netns", "exec", ns, str(tcpdump)]
    argv += ["-i", "lo", "-U", "-n", "-c", "1", "-w", "-", "udp", "and", "dst", "port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sender: subprocess.Popen[bytes] | None = None
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + timeout
        # tcpdump says "listening on lo" once its socket and filter are in place.
        banner = b""
        while b"listening on" not in banner:
            left = deadline - time.monotonic()
            if proc.poll() is not None or left <= 0:
                break
            if select.select([proc.stderr], [], [], min(left, 0.5))[0]:
                banner += os.read(proc.stderr.fileno(), 4096)
        if b"listening on" in banner:
            n = str(max(1, int(timeout / 0.1)))
            sender_argv = [sys.executable, "-c", SENDER, str(port), payload.decode(), n]
            sender = subprocess.Popen([str(tool_path("ip")), "netns", "exec", ns, *sender_argv])
        try:
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=5)
            raise ServerError(
                f"tcpdump (pid {proc.pid}) captured nothing in {timeout:.0f} s in netns {ns}: "
                f"{(banner + err).decode(errors='replace').strip()}"
            ) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if sender is not None:
            sender.kill()
            sender.wait(5)
    if proc.returncode != 0:
        raise ServerError(
            f"tcpdump (pid {proc.pid}) failed ({proc.returncode}) in netns {ns}: "
            f"{(banner + err).decode(errors='replace').strip()}"
        )
    return out


def tcpdump_version(tcpdump: Path) -> str:
    """First line of ``tcpdump --version``; ServerError naming tcpdump if it fails."""
    done = subprocess.run(
        [str(tcpdump), "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    text = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise ServerError(f"tcpdump at {tcpdump} failed ({done.returncode}): {text}")
    return text.splitlines()[0]
