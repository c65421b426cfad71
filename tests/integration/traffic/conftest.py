"""Fixtures of the traffic tests: a recording replay target on loopback, namespaced HTTP peers."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.traffic.netns import NetnsPair, netns_pair
from traffic.targets import ReplayTarget

ROOT = Path(__file__).resolve().parents[3]
HTTP_PORT = 8080


@dataclass
class Recorder:
    """A replay target: keeps each connection's bytes, answers every chunk with a few bytes."""

    flows: list[bytes] = field(default_factory=list)
    first_byte_at: list[float] = field(default_factory=list)
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    """Every chunk read, with its arrival time (monotonic), across connections."""
    connections: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        data = bytearray()
        while chunk := await reader.read(65536):
            now = time.monotonic()
            if not data:
                self.first_byte_at.append(now)
            self.chunks.append((now, chunk))
            data += chunk
            writer.write(b"ok\n")  # responses the replayer must read and discard
        if data:  # the --to reachability probe connects and sends nothing
            self.flows.append(bytes(data))
            self.changed.set()
        writer.close()

    async def wait_for(self, n: int, within: float) -> None:
        async with asyncio.timeout(within):
            while len(self.flows) < n:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, ReplayTarget]]:
    rec = Recorder()
    server = await asyncio.start_server(rec.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield rec, ReplayTarget("127.0.0.1", port)


def _missing_tools() -> list[str]:
    return [
        tool
        for tool in ("ip", "tcpdump")
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
    ]


@functools.cache
def require_root_tools() -> None:
    """Root, ``ip`` and ``tcpdump``; the tools come from the project's own (idempotent)
    install script, so a fresh machine needs nothing installed by hand."""
    if os.geteuid() != 0:
        pytest.fail("traffic integration tests need root (network namespaces, raw sockets)")
    if _missing_tools():
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "install-tcpdump.sh")],
            check=False,
            capture_output=True,
            timeout=600,
        )
    if missing := _missing_tools():
        pytest.fail(f"{', '.join(missing)} missing after scripts/install-tcpdump.sh")


@dataclass(frozen=True)
class HttpPeers:
    pair: NetnsPair
    port: int

    def client_argv(self, n: int, size: int) -> list[str]:
        return self.pair.exec_argv(
            self.pair.client,
            sys.executable,
            "-m",
            "tests.integration.traffic.http_peers",
            "client",
            self.pair.server_ip,
            str(self.port),
            str(n),
            str(size),
        )


@pytest.fixture
def http_peers() -> Iterator[HttpPeers]:
    """An HTTP server in one fresh namespace, reachable from a second over veth."""
    require_root_tools()
    with netns_pair() as pair:
        server = subprocess.Popen(
            pair.exec_argv(
                pair.server,
                sys.executable,
                "-m",
                "tests.integration.traffic.http_peers",
                "server",
                str(HTTP_PORT),
            ),
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            assert server.stdout is not None
            assert server.stdout.readline() == b"ready\n", (
                "HTTP server in the namespace did not start"
            )
            yield HttpPeers(pair, HTTP_PORT)
        finally:
            server.kill()
            server.wait(10)
            server.stdout.close()
