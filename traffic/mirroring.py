"""Live mirroring: capture thread -> pcap output, and -> reassembly -> replay on the event loop.

::

    capture thread:  source.batches() --> PcapWriter (file or stdout, flushed per batch)
                                     \\-> Handoff.put()  (bounded; full: batch dropped, counted)
    event loop:      Handoff.get() -> parse_frame -> Reassembler -> Replayer.handle (never blocks)

The capture thread never waits for the loop, so neither a slow ``--to`` nor a
busy loop can stall the capture or the pcap output; the replay leg loses
packets instead, and the flows that lose packets end with a ``FlowError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

import structlog

from traffic.capturing import Source
from traffic.packets import RST, parse_frame
from traffic.pcaps import PcapWriter, Record
from traffic.reassembly import Limits, Reassembler
from traffic.replaying import Replayer, ReplayLimits, ReplayStats
from traffic.summaries import OMIT, Summary
from traffic.targets import ReplayTarget

log = structlog.get_logger()

_ABANDONED = "stopped (Ctrl-C) with bytes unsent"


@dataclass
class MirrorStats(Summary):
    packets: int = 0
    """Frames the source delivered (all written to the pcap output, if any)."""
    handoff_dropped: int = 0
    """Frames the replay leg never saw because it was behind (capture thread never waits)."""
    kernel_drops: int = 0
    truncated_packets: int = 0
    """Frames cut short by the source's snap length (a pcap file captured with ``-s N``):
    their flows have a gap, which the replay counts as dropped."""
    truncated_bytes: int = 0
    """Bytes of those frames the source never saved."""
    segments: int = 0
    replay: ReplayStats = field(default_factory=ReplayStats)
    error: BaseException | None = field(default=None, metadata=OMIT)


class Handoff:
    """A bounded batch queue from the capture thread to the event loop; ``put`` never blocks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_packets: int) -> None:
        self._loop = loop
        self._max = max_packets
        self._lock = threading.Lock()
        self._items: list[tuple[int, list[Record]]] = []
        self._count = 0
        self._ready = asyncio.Event()
        self.closed = False
        self.error: BaseException | None = None
        self.dropped = 0

    def put(self, linktype: int, batch: list[Record]) -> None:
        with self._lock:
            if self._count + len(batch) > self._max:
                self.dropped += len(batch)
                return
            wake = not self._items
            self._items.append((linktype, batch))
            self._count += len(batch)
        if wake:
            self._wake()

    def close(self, error: BaseException | None = None) -> None:
        with self._lock:
            self.closed = True
            self.error = error
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already gone
            self._loop.call_soon_threadsafe(self._ready.set)

    async def get(self, wait: float) -> list[tuple[int, list[Record]]] | None:
        """The batches so far (maybe none after ``wait`` s); None once closed and empty."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._ready.wait()
        with self._lock:
            self._ready.clear()
            items, self._items, self._count = self._items, [], 0
            if not items and self.closed:
                return None
        return items


def _count_truncated(batch: list[Record], stats: MirrorStats) -> None:
    for record in batch:
        if record.wirelen > len(record.data):
            stats.truncated_packets += 1
            stats.truncated_bytes += record.wirelen - len(record.data)


def _capture(
    source: Source,
    output: BinaryIO | None,
    handoff: Handoff,
    stop: threading.Event,
    stats: MirrorStats,
    count: int | None,
    on_output_ready: Callable[[], None] | None,
) -> None:
    """The capture thread: pcap output first, then the best-effort handoff."""
    writer: PcapWriter | None = None
    try:
        if output is not None and source.linktype is not None:
            writer = PcapWriter(output, source.linktype)
            writer.flush()
            if on_output_ready is not None:
                on_output_ready()
        for batch in source.batches(stop):
            if not batch:
                continue
            if count is not None:
                batch = batch[: count - stats.packets]
            linktype = source.linktype
            assert linktype is not None
            if output is not None:
                if writer is None:
                    writer = PcapWriter(output, linktype)
                    writer.flush()
                    if on_output_ready is not None:
                        on_output_ready()
                for record in batch:
                    writer.write(record.ts, record.data, record.wirelen)
                writer.flush()
            stats.packets += len(batch)
            _count_truncated(batch, stats)
            handoff.put(linktype, batch)
            if count is not None and stats.packets >= count:
                break
    except BaseException as e:  # handed to the event loop, raised there
        handoff.close(e)
        return
    finally:
        stats.kernel_drops = source.kernel_drops()
    handoff.close()


async def mirror(
    source: Source,
    port: int,
    target: ReplayTarget | None,
    output: BinaryIO | None = None,
    *,
    stop: threading.Event | None = None,
    duration: float | None = None,
    count: int | None = None,
    reassembly: Limits | None = None,
    replay: ReplayLimits | None = None,
    max_pending_packets: int = 65536,
    on_progress: Callable[[MirrorStats], None] | None = None,
    on_output_ready: Callable[[], None] | None = None,
    abandon_on_stop: bool = False,
    connection: socket.socket | None = None,
) -> MirrorStats:
    """Capture inbound TCP on ``port`` from ``source`` until stopped; replay it to ``target``.

    Stops on ``stop`` being set, after ``duration`` seconds, after ``count``
    packets, or when the source ends. A source error lands in ``stats.error``.
    ``on_output_ready`` is called on the capture thread once the pcap header is
    written to ``output`` (the capture is up). At the end, open flows get the
    drain deadline to flush; with ``abandon_on_stop``, a stop through ``stop``
    (the user's Ctrl-C) abandons their unsent bytes at once instead (counted).
    ``connection``, already connected to ``target``, carries the first flow.
    """
    stop = stop or threading.Event()
    loop = asyncio.get_running_loop()
    stats = MirrorStats()
    handoff = Handoff(loop, max_pending_packets)
    reassembler = Reassembler(reassembly)
    thread = threading.Thread(
        target=_capture,
        args=(source, output, handoff, stop, stats, count, on_output_ready),
        name="pymirror-capture",
        daemon=True,
    )
    deadline = None if duration is None else loop.time() + duration
    last_ts, last_wall = 0.0, time.monotonic()
    closing = False
    abandoned = timed_out = False
    async with Replayer(target, replay, connection=connection) as replayer:
        stats.replay = replayer.stats
        thread.start()
        log.info("capture started", port=port, to=str(target) if target else None)
        while (items := await handoff.get(0.2)) is not None:
            for linktype, batch in items:
                for record in batch:
                    seg = parse_frame(linktype, record.ts, record.data)
                    if seg is None:
                        continue
                    stats.segments += 1
                    if seg.key.dport == port:
                        replayer.handle(reassembler.feed(seg))
                    elif seg.key.sport == port and seg.flags & RST:
                        replayer.handle(reassembler.reset(seg.key.reversed(), seg.ts))
                    last_ts, last_wall = seg.ts, time.monotonic()
            # Idle expiry in capture time, advanced by the wall clock between packets.
            replayer.handle(reassembler.expire(last_ts + time.monotonic() - last_wall))
            if on_progress is not None:
                on_progress(stats)
            if not closing and (stop.is_set() or (deadline is not None and loop.time() > deadline)):
                closing = True
                timed_out = not stop.is_set()
                stop.set()
                source.interrupt()
            if abandon_on_stop and stop.is_set() and not timed_out and not abandoned:
                abandoned = True  # the caller's stop (Ctrl-C): no waiting for a slow --to
                replayer.abandon(_ABANDONED)
        if abandon_on_stop and stop.is_set() and not timed_out and not abandoned:
            abandoned = True  # the capture thread saw the stop first and ended the loop
            replayer.abandon(_ABANDONED)
        await asyncio.to_thread(thread.join, 5.0)
        if not thread.is_alive():
            source.close()
        stats.handoff_dropped = handoff.dropped
        replayer.handle(reassembler.close(last_ts + time.monotonic() - last_wall))
    if handoff.error is not None and not (closing and isinstance(handoff.error, OSError)):
        stats.error = handoff.error
    log.info("mirror finished", **stats.as_dict())
    return stats
