"""A TCP proxy in front of a real Kafka broker that stalls or cuts connections on command.

Kafka clients bootstrap, then connect to the address the broker *advertises* in
its Metadata and FindCoordinator answers. The proxy keeps clients on itself by
rewriting that address in every answer: both test brokers advertise
``127.0.0.1:<their port>``, so the proxy replaces the four port bytes that follow
the host string ``127.0.0.1`` with its own port - same length, so no frame size
or offset changes, whatever the protocol version (compact strings included).
Frames are read whole (the 4-byte length prefix), so a rewrite never straddles
two reads.

Commands (call them from the test's event loop):

* :meth:`KafkaProxy.stall` - stop passing bytes both ways (connections stay
  open; requests time out on the client side); :meth:`KafkaProxy.resume`;
* :meth:`KafkaProxy.cut` - close every open connection at once (clients see a
  reset and reconnect; new connections are accepted);
* :attr:`KafkaProxy.frames` - frames passed from the broker so far: tests wait
  on progress through it, never on a wall-clock budget.

Loopback only; for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field

_HOST = b"127.0.0.1"


@dataclass
class KafkaProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``upstream_port``."""

    upstream_port: int
    upstream_host: str = "127.0.0.1"
    port: int = 0
    #: Frames passed from the broker to clients (a progress counter).
    frames: int = 0
    #: Connections cut by :meth:`cut` so far.
    cuts: int = 0
    _server: asyncio.Server | None = None
    _open: asyncio.Event = field(default_factory=asyncio.Event)
    _pipes: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> KafkaProxy:
        self._open.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._open.set()
        self._close_all()
        for task in list(self._pipes):
            task.cancel()
        for task in list(self._pipes):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> KafkaProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- commands ------------------------------------------------------------

    def stall(self) -> None:
        """Hold every byte, both ways, until :meth:`resume`."""
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def cut(self) -> None:
        """Close every connection now (the clients reconnect through the proxy)."""
        self.cuts += 1
        self._close_all()

    # --- plumbing --------------------------------------------------------------

    def _close_all(self) -> None:
        for writer in list(self._writers):
            transport = writer.transport
            with contextlib.suppress(Exception):
                transport.abort()  # a reset, not a polite close
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        rewrite = (
            _HOST + struct.pack(">i", self.upstream_port),
            _HOST + struct.pack(">i", self.port),
        )
        to_broker = asyncio.create_task(self._pipe(reader, up_writer, None))
        to_client = asyncio.create_task(self._pipe(up_reader, writer, rewrite))
        self._pipes.update((to_broker, to_client))
        try:
            await asyncio.wait({to_broker, to_client}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (to_broker, to_client):
                task.cancel()
                self._pipes.discard(task)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        rewrite: tuple[bytes, bytes] | None,
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, OSError):
            while True:
                head = await reader.readexactly(4)
                (size,) = struct.unpack(">i", head)
                body = await reader.readexactly(size)
                if rewrite is not None:
                    body = body.replace(*rewrite)
                await self._open.wait()
                if writer.transport.is_closing():
                    return
                writer.write(head + body)
                await writer.drain()
                if rewrite is not None:
                    self.frames += 1
