"""The replay leg: one local connection per captured flow, fed by reassembly events.

``Replayer.handle`` never blocks and never awaits: it writes to the flow's
transport, or queues the bytes until the connection is up. Each flow owns a
bounded backlog (queued plus unsent bytes); a target too slow to keep it under
the bound, or one that lets a write sit unsent past the write deadline, loses
that flow: the connection is aborted and the rest of the flow is dropped and
counted. So a slow ``--to`` costs replayed flows, never capture or pcap output.
Responses are read and discarded. A flow's connection closes when its flow
ends (aborted on RST) and the flow is forgotten. ``abandon`` (Ctrl-C) stops at
once: unsent bytes are dropped and counted, nothing waits for the target. The
connection that proved ``--to`` reachable can be handed in (``connection=``):
it carries the first flow, so the target sees no extra, empty connection.

It stays one module above ~400 lines because ``_Sink`` and ``Replayer`` are one
mechanism: each sink's protocol callbacks update the replayer's stats under its
limits while the replayer's task drives that sink's connect, flush, deadline and
close, so a split would only turn their private protocol into a public one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

import structlog

from traffic.limits import ReplayLimits as ReplayLimits  # re-exported: the replay bounds
from traffic.packets import FlowKey, Payload
from traffic.reassembly import Data, Event, FlowEnded, FlowError, FlowStarted
from traffic.summaries import Summary
from traffic.targets import ReplayTarget

log = structlog.get_logger()

_IOV_MAX = 1024  # writev's limit on buffers per call (Linux UIO_MAXIOV)


@dataclass
class ReplayStats(Summary):
    flows: int = 0
    flows_completed: int = 0
    flows_dropped: int = 0
    errors: int = 0
    bytes_sent: int = 0
    bytes_dropped: int = 0
    response_bytes: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


class _Sink(asyncio.Protocol):
    """One captured flow's local connection and its backlog.

    ``feed`` only queues; the queue goes out in one write per event-loop turn
    (``flush``, scheduled once per turn by ``Replayer.schedule_flush``), so the
    many small segments of a busy flow cost one syscall together instead of one each.
    """

    def __init__(self, replayer: Replayer, key: FlowKey) -> None:
        self.replayer = replayer
        self.key = key
        self.bound = replayer.limits.max_flow_backlog  # of backlog(), bytes
        self.transport: asyncio.Transport | None = None
        self.fd = -1  # the connection's socket, for gathering writes
        self.ready = False  # connected: queued bytes may go out
        self.scheduled = False  # a flush is due on this loop turn
        self.paused = False  # the transport holds unsent bytes (write buffer limit 0)
        self.pending: list[Payload] = []
        self.pending_bytes = 0
        self.ended: str | None = None
        self.failed: str | None = None
        self.wake = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()
        self.lost = asyncio.Event()
        self.target_closed = False  # closed cleanly by the target with nothing unsent
        self.completed = False  # counted in flows_completed
        self.task: asyncio.Task[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.set_write_buffer_limits(high=0)  # paused == something still unsent
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.replayer.limits.send_buffer)
        self.transport = transport
        self.fd = sock.fileno() if sock is not None else -1

    def pause_writing(self) -> None:
        self.paused = True
        self.drained.clear()
        self.wake.set()  # the flow's task starts the write deadline

    def resume_writing(self) -> None:
        self.paused = False
        self.drained.set()
        self.wake.set()

    def data_received(self, data: bytes) -> None:
        self.replayer.stats.response_bytes += len(data)

    def eof_received(self) -> bool:
        # The target closed its side: fine if it took all this flow sends (an HTTP/1.0
        # server after its answer); bytes still queued now, or fed later, are dropped.
        self.target_closed = True
        if self.failed is None and self.ended is None and self.pending_bytes:
            self.fail("the target closed the connection", error=True)
        self.wake.set()
        return False  # close our side too (once the transport's buffer is out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        self.paused = False
        self.drained.set()
        if self.failed is not None or self.ended is not None:
            return
        if exc is not None or self.backlog():
            self.fail("the target closed the connection", error=True)
        else:
            self.target_closed = True  # an error only if the flow has more to send
            self.wake.set()

    def backlog(self) -> int:
        """Bytes queued here plus bytes the transport has not sent yet."""
        if self.paused and self.transport is not None:
            return self.pending_bytes + self.transport.get_write_buffer_size()
        return self.pending_bytes

    def feed(self, data: Payload) -> bool:
        """Queue ``data``; returns whether the backlog is now over half its bound.

        The first branch is the common case, a healthy flow with room, checked with the
        fewest lookups: offline replay calls this once per segment. Every other case
        (failed, closed by the target, over the bound) takes the second.
        """
        size = len(data)
        if self.failed is None and not self.target_closed:
            backlog = self.pending_bytes + size
            if self.paused and self.transport is not None:
                backlog += self.transport.get_write_buffer_size()
            if backlog <= self.bound:
                self.pending.append(data)
                self.pending_bytes += size
                if self.ready and not self.scheduled:
                    self.replayer.schedule_flush(self)
                return backlog > self.bound // 2
        if self.target_closed and self.failed is None:
            self.fail("the target closed the connection", error=True)
        elif self.failed is None:
            self.fail("slow target: flow backlog over its bound")
        self.replayer.stats.bytes_dropped += size
        return False

    def flush(self) -> None:
        """Write everything queued, as one write."""
        self.scheduled = False
        if not self.pending or self.failed is not None or not self.ready:
            return
        transport = self.transport
        assert transport is not None
        pending, size = self.pending, self.pending_bytes
        self.pending = []
        self.pending_bytes = 0
        self.replayer.stats.bytes_sent += size
        sent = 0
        if not self.paused and self.fd >= 0 and len(pending) > 1 and not transport.is_closing():
            # Nothing is buffered in the transport, so the socket is ours to write: one
            # gathering writev of the queued views instead of a join (a copy) and a send.
            try:
                sent = os.writev(self.fd, pending[:_IOV_MAX])
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # the transport's own write below meets the error and reports it
            if sent == size:
                return
        # The rest goes to the transport view by view (it buffers what the socket does not
        # take): no join, which would copy every queued byte once more.
        first = 0
        while sent and sent >= len(pending[first]):
            sent -= len(pending[first])
            first += 1
        write = transport.write
        write(memoryview(pending[first])[sent:] if sent else pending[first])
        for data in pending[first + 1 :]:
            write(data)

    def fail(self, reason: str, *, error: bool = False) -> None:
        if self.failed is not None:
            return
        self.failed = reason
        stats = self.replayer.stats
        buffered = self.transport.get_write_buffer_size() if self.transport is not None else 0
        unsent = self.pending_bytes + buffered
        stats.bytes_sent -= buffered
        stats.bytes_dropped += unsent
        self.pending.clear()
        self.pending_bytes = 0
        if error:
            stats.errors += 1
        else:
            stats.flows_dropped += 1
        stats.reasons[reason] += 1
        log.debug("replay flow dropped", flow=str(self.key), reason=reason, unsent=unsent)
        self.wake.set()
        self.drained.set()


class Replayer:
    """Replays reassembled flows to ``target`` (or only counts them when ``target`` is None)."""

    def __init__(
        self,
        target: ReplayTarget | None,
        limits: ReplayLimits | None = None,
        *,
        connection: socket.socket | None = None,
    ) -> None:
        """``connection``, already connected to ``target`` (``--to``'s reachability check),
        carries the first flow; it is closed unused if the target closed it first."""
        self.target = target
        self.limits = limits or ReplayLimits()
        self.stats = ReplayStats()
        self._sinks: dict[FlowKey, _Sink] = {}  # the current flow of each 4-tuple
        self._running: set[_Sink] = set()  # every sink whose task runs (incl. closing ones)
        self._refused: set[FlowKey] = set()
        self._tg: asyncio.TaskGroup | None = None
        self._closed = False
        self._abandoned: str | None = None
        self._spare = connection
        self._idle = asyncio.Event()
        self._idle.set()
        self._flushes: list[_Sink] = []  # sinks with a flush due on this loop turn, in order
        self.loop: asyncio.AbstractEventLoop  # set on entering, like the task group

    async def __aenter__(self) -> Replayer:
        if self._closed:
            raise RuntimeError("a Replayer cannot be reopened")
        self.loop = asyncio.get_running_loop()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        self._closed = True
        if self._spare is not None:  # nothing was replayed: the check's connection closes
            self._spare.close()
            self._spare = None
        if exc is None:
            await self.drain()
        elif isinstance(exc, asyncio.CancelledError):
            await self._tg.__aexit__(exc_type, exc, tb)
            return
        else:
            for sink in list(self._running):
                sink.fail("replay stopped by an error")
        # The body's own error propagates unchanged (not wrapped in an ExceptionGroup).
        await self._tg.__aexit__(None, None, None)

    def __len__(self) -> int:
        return len(self._running)

    def handle(self, events: list[Event]) -> None:
        """Apply reassembly events; never blocks."""
        for event in events:
            if type(event) is Data:
                self.send(event.key, event.data)
            elif isinstance(event, FlowStarted):
                self._start(event.key)
            elif isinstance(event, FlowEnded | FlowError):
                self._end(event)

    def send(self, key: FlowKey, data: Payload) -> bool:
        """``handle([Data(key, ts, data)])`` without the event object (offline replay's fast
        path); returns ``backlogged(key)`` afterwards. Never blocks."""
        sink = self._sinks.get(key)
        if sink is not None:
            return sink.feed(data)
        if self.target is None and key not in self._refused:
            self.stats.bytes_sent += len(data)
        else:
            self.stats.bytes_dropped += len(data)
        return False

    def schedule_flush(self, sink: _Sink) -> None:
        """Flush ``sink`` on this loop turn. All the turn's flushes run from one callback:
        at --speed max every busy flow has one each turn, and an asyncio handle apiece was
        a measurable share of the replay's Python time."""
        sink.scheduled = True
        if not self._flushes:
            self.loop.call_soon(self._flush_due)
        self._flushes.append(sink)

    def _flush_due(self) -> None:
        due, self._flushes = self._flushes, []
        for sink in due:
            try:
                sink.flush()
            except Exception as exc:  # reported as the loop reports a failed callback
                self.loop.call_exception_handler(
                    {"message": "replay flush failed", "exception": exc, "protocol": sink}
                )

    def backlogged(self, key: FlowKey) -> bool:
        """Whether ``key``'s backlog is over half its bound (then ``await room(key)``)."""
        sink = self._sinks.get(key)
        return sink is not None and self._over_half(sink)

    def _over_half(self, sink: _Sink) -> bool:
        return sink.backlog() > sink.bound // 2

    async def room(self, key: FlowKey) -> None:
        """Wait until ``key``'s backlog is under half its bound (offline replay's back-pressure)."""
        sink = self._sinks.get(key)
        half = self.limits.max_flow_backlog // 2
        if sink is None or sink.backlog() <= half:
            return
        try:
            async with asyncio.timeout(self.limits.write_timeout + self.limits.connect_timeout):
                while sink.failed is None and sink.backlog() > half:
                    sink.wake.clear()
                    if sink.scheduled:
                        await asyncio.sleep(0)  # its flush runs on this turn
                    else:
                        await sink.wake.wait()  # connected, paused or resumed
        except TimeoutError:
            sink.fail("write deadline: the target stopped reading")

    async def drain(self) -> None:
        """Let open flows flush for up to ``drain_timeout``, then abort the rest."""
        sinks = list(self._running)
        for sink in sinks:
            if sink.ended is None:
                sink.ended = "capture-end"
                sink.wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.limits.drain_timeout):
                await self._idle.wait()
        for sink in list(self._running):
            sink.fail("drain deadline at shutdown")
        await self._idle.wait()

    def abandon(self, reason: str) -> None:
        """Stop now (Ctrl-C): every open flow's unsent bytes are dropped and counted under
        ``reason``, connections close without waiting for the target, new flows are refused."""
        self._abandoned = reason
        for sink in list(self._running):
            if sink.failed is None and not sink.completed:
                if sink.backlog():
                    sink.fail(reason)
                else:  # all it was given is out: it ends here, as at the end of a capture
                    sink.completed = True
                    self.stats.flows_completed += 1
            if sink.task is not None:
                sink.task.cancel()

    def _start(self, key: FlowKey) -> None:
        self.stats.flows += 1
        if self.target is None:
            return
        if self._abandoned is not None:
            self._refused.add(key)
            self.stats.flows_dropped += 1
            self.stats.reasons[self._abandoned] += 1
            return
        if len(self._running) >= self.limits.max_connections:
            self._refused.add(key)
            self.stats.flows_dropped += 1
            self.stats.reasons["too many concurrent flows"] += 1
            return
        sink = _Sink(self, key)
        self._sinks[key] = sink
        self._running.add(sink)
        self._idle.clear()
        assert self._tg is not None, "use the Replayer as an async context manager"
        sink.task = self._tg.create_task(self._run(sink), name=f"replay {key}")
        sink.task.add_done_callback(lambda _task: self._forget(sink))

    def _end(self, event: FlowEnded | FlowError) -> None:
        self._refused.discard(event.key)
        if isinstance(event, FlowError):
            self.stats.reasons[f"capture: {event.reason.split(' (')[0]}"] += 1
        sink = self._sinks.get(event.key)
        if sink is None:
            if self.target is None:
                self.stats.flows_completed += isinstance(event, FlowEnded)
            return
        sink.ended = event.reason
        sink.wake.set()

    def _take_spare(self) -> socket.socket | None:
        """The check's connection, if it is still open (the target may have timed it out)."""
        sock, self._spare = self._spare, None
        if sock is None:
            return None
        try:
            if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                sock.close()  # closed by the target while it waited: connect anew
                return None
        except BlockingIOError:
            pass  # open and quiet: the usual case
        except OSError:
            sock.close()
            return None
        return sock  # open (anything the target already sent belongs to this flow)

    async def _half_close(self, sink: _Sink) -> None:
        """Send FIN and keep reading until the target closes too (bounded), as a client would.

        Closing at once would make the kernel answer late responses with a RST.
        """
        transport = sink.transport
        if sink.ended == "rst" or transport is None or sink.lost.is_set():
            return
        if transport.is_closing() or not transport.can_write_eof():
            return
        transport.write_eof()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.limits.drain_timeout):
                await sink.lost.wait()

    async def _run(self, sink: _Sink) -> None:
        assert self.target is not None
        limits = self.limits
        loop = asyncio.get_running_loop()
        try:
            try:
                async with asyncio.timeout(limits.connect_timeout):
                    if (spare := self._take_spare()) is not None:
                        await loop.create_connection(lambda: sink, sock=spare)
                    else:
                        await loop.create_connection(
                            lambda: sink, self.target.host, self.target.port
                        )
            except (OSError, TimeoutError) as e:
                sink.fail(f"connect to {self.target} failed: {e or 'timeout'}", error=True)
                return
            sink.ready = True
            sink.wake.set()  # for room(): what was queued while connecting can go out now
            while sink.failed is None:
                sink.flush()  # what was queued while connecting, or before the flow ended
                if not sink.drained.is_set():
                    try:
                        async with asyncio.timeout(limits.write_timeout):
                            await sink.drained.wait()
                    except TimeoutError:
                        sink.fail("write deadline: the target stopped reading")
                    continue
                if sink.ended is not None:
                    sink.completed = True
                    self.stats.flows_completed += 1
                    await self._half_close(sink)
                    break
                sink.wake.clear()
                await sink.wake.wait()
        finally:
            transport = sink.transport
            if transport is not None:
                if sink.failed is not None or sink.ended == "rst":
                    transport.abort()
                else:
                    with contextlib.suppress(OSError):
                        transport.close()
            self._forget(sink)

    def _forget(self, sink: _Sink) -> None:
        """The flow's task is over (also if cancelled before it ever ran): drop its sink."""
        if self._sinks.get(sink.key) is sink:
            del self._sinks[sink.key]
        self._running.discard(sink)
        if not self._running:
            self._idle.set()
