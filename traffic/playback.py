"""Offline replay of a pcap file: paced by capture timestamps, optionally filtered by HTTP request.

The file is read ``loop`` times; each pass gets a fresh reassembler, so every
captured client connection becomes one new local connection per pass.
``speed`` scales the capture's clock (2 = twice as fast); ``None`` replays as
fast as the target accepts. Unlike live mirroring, nothing is dropped for
speed: a flow whose backlog is full waits (up to the write deadline).

Packets the capture cut short (a snap length below the packet, ``tcpdump -s
128``) carry no usable payload: they are counted (``truncated_packets``,
``truncated_bytes`` never captured), and their flows have a gap from there.
``undelivered`` says in words what of the capture did not reach the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from traffic.errors import PcapTruncatedError, TrafficError
from traffic.http_requests import NotHttpError, RequestFilter, RequestSplitter
from traffic.packets import (
    ACK,
    FIN,
    FIXED_LAYOUTS,
    RST,
    SYN,
    FlowKey,
    Payload,
    Segment,
    ipv4_tcp_headers,
    parse_at,
    tcp_ports_at,
)
from traffic.pcaps import GLOBAL_HEADER_SIZE, MAX_RECORD, RECORD_HEADER_SIZE, MappedPcap
from traffic.reassembly import Data, Event, FlowEnded, FlowError, FlowStarted, Limits, Reassembler
from traffic.replaying import Replayer, ReplayLimits, ReplayStats
from traffic.summaries import OMIT, Summary
from traffic.targets import ReplayTarget

#: Packets parsed between two turns of the event loop. Fewer per turn would mean more and
#: smaller writes; more (it was 1024, ~16 MiB of 16 KiB segments) leaves the target idle
#: while a burst is parsed and then floods the send buffers: measured 20-35% slower.
_YIELD_EVERY = 256

_SPECIAL = SYN | RST | FIN  # flags that take a segment off the fast path
_MAX_KEYS = 1 << 16  # FlowKeys cached by raw header bytes, per pass


@dataclass
class PlaybackStats(Summary):
    passes: int = 0
    packets: int = 0
    requests_matched: int = 0
    requests_filtered: int = 0
    flows_not_http: int = 0
    filter_timeouts: int = 0
    truncated_packets: int = 0
    """Client->server packets cut short by the capture's snap length: their payload is lost."""
    truncated_bytes: int = 0
    """Bytes of those packets the capture never saved."""
    interrupted: bool = False
    """Stopped early (Ctrl-C): the unsent bytes of open flows were abandoned (counted)."""
    capture_seconds: float = 0.0
    wall_seconds: float = 0.0
    replay: ReplayStats = field(default_factory=ReplayStats)
    error: PcapTruncatedError | None = field(default=None, metadata=OMIT)
    """Set when the file ends inside a record: what came before it was replayed."""

    def undelivered(self) -> str | None:
        """What of the capture did not reach the target, in words; None if all of it did.

        HTTP requests filtered out on purpose are not counted as lost.
        """
        r = self.replay
        parts = []
        if self.truncated_packets:
            parts.append(
                f"{self.truncated_packets} packets were cut short by the capture's snap length "
                f"({self.truncated_bytes} bytes never captured; capture with `tcpdump -s 0`)"
            )
        if r.bytes_dropped or r.flows_dropped:
            parts.append(f"{r.bytes_dropped} bytes in {r.flows_dropped} flows were dropped")
        if r.errors:
            parts.append(f"{r.errors} flows failed with an error")
        if not parts:
            return None
        reasons = "; ".join(f"{k}: {v}" for k, v in r.reasons.items())
        return ", ".join(parts) + (f" ({reasons})" if reasons else "")


def segments(path: Path) -> Iterator[Segment]:
    """TCP segments of a pcap file, in file order.

    An unreadable file or header raises ``PcapError`` here, at the call; a cut-off
    record raises ``PcapTruncatedError`` from the iteration, after the whole ones.
    """
    return _segments(MappedPcap(path))


def _segments(
    pcap: MappedPcap, port: int | None = None, stats: PlaybackStats | None = None
) -> Iterator[Segment]:
    """With ``stats``, packets to ``port`` cut short by the snap length are counted there."""
    # Payloads are views into the mapping, which lives (and is unmapped) with its last view:
    # no explicit close, so views still queued for sending stay valid.
    linktype, buf, view = pcap.linktype, pcap.buffer, memoryview(pcap.buffer)
    record = pcap.header.record.unpack_from
    for ts, start, end in pcap.frames():
        seg = parse_at(linktype, ts, buf, start, end, view)
        if seg is not None:
            yield seg
        elif stats is not None:  # not TCP, or cut short: only the latter is a loss
            _sec, _frac, caplen, wirelen = record(buf, start - RECORD_HEADER_SIZE)
            if wirelen > caplen:
                ports = tcp_ports_at(linktype, buf, start, end)
                if ports is not None and ports[1] == port:
                    stats.truncated_packets += 1
                    stats.truncated_bytes += wirelen - caplen


def server_ports(path: Path) -> Counter[int]:
    """Destination ports of connection openings (SYN without ACK) in a pcap file.

    A truncated file counts up to the cut: the replay itself reports the truncation.
    """
    ports: Counter[int] = Counter()
    source = segments(path)  # a bad header raises here, not below
    with contextlib.suppress(PcapTruncatedError):
        for s in source:
            if s.flags & (SYN | ACK) == SYN:
                ports[s.key.dport] += 1
    return ports


def guess_port(path: Path) -> int:
    ports = server_ports(path)
    if not ports:
        raise TrafficError(
            f"{path} holds no connection opening (SYN), so the server port is unknown; pass --port"
        )
    return ports.most_common(1)[0][0]


class _HttpGate:
    """Per-flow request splitting and filtering between the reassembler and the replayer."""

    def __init__(self, rfilter: RequestFilter, stats: PlaybackStats) -> None:
        self.filter = rfilter
        self.stats = stats
        self.splitters: dict[FlowKey, RequestSplitter | None] = {}
        self.started: set[FlowKey] = set()

    def apply(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if isinstance(event, FlowStarted):
                self.splitters[event.key] = RequestSplitter()
            elif isinstance(event, Data):
                splitter = self.splitters.get(event.key)
                if splitter is None:
                    continue
                try:
                    requests = splitter.feed(event.data)
                except NotHttpError:
                    self.splitters[event.key] = None
                    self.stats.flows_not_http += 1
                    continue
                for request in requests:
                    if not self.filter.matches(request):
                        self.stats.requests_filtered += 1
                        continue
                    self.stats.requests_matched += 1
                    if event.key not in self.started:
                        self.started.add(event.key)
                        out.append(FlowStarted(event.key, event.ts, False))
                    out.append(Data(event.key, event.ts, request.raw))
            elif isinstance(event, FlowEnded | FlowError):
                self.splitters.pop(event.key, None)
                if event.key in self.started:
                    self.started.discard(event.key)
                    out.append(event)
        self.stats.filter_timeouts = self.filter.timeouts
        return out


async def play(
    path: Path,
    target: ReplayTarget | None,
    *,
    port: int | None = None,
    speed: float | None = 1.0,
    loop: int = 1,
    rfilter: RequestFilter | None = None,
    reassembly: Limits | None = None,
    replay: ReplayLimits | None = None,
    on_progress: Callable[[PlaybackStats], None] | None = None,
    stop: asyncio.Event | None = None,
    connection: socket.socket | None = None,
) -> PlaybackStats:
    """Replay ``path`` to ``target`` (``None``: dry run, count only) and return the summary.

    ``stop`` set (Ctrl-C) ends the replay at once: open flows' unsent bytes are abandoned
    and counted, and ``stats.interrupted`` is set. ``connection``, a socket already
    connected to ``target`` (the reachability check's), carries the first flow.
    """
    if speed is not None and not (0 < speed < math.inf):
        raise TrafficError(f"--speed must be a positive number or 'max', not {speed}")
    port = port if port is not None else guess_port(path)
    stats = PlaybackStats()
    started = time.monotonic()
    async with Replayer(target, replay, connection=connection) as replayer:
        stats.replay = replayer.stats
        passes = asyncio.ensure_future(
            _passes(path, replayer, stats, port, speed, loop, rfilter, reassembly, on_progress)
        )
        if stop is not None:
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({passes, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
            if not passes.done():
                passes.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await passes
                stats.interrupted = True
                replayer.abandon("stopped (Ctrl-C) with bytes unsent")
        if not stats.interrupted:
            await passes
    stats.wall_seconds = time.monotonic() - started
    if on_progress is not None:
        on_progress(stats)
    return stats


async def _passes(
    path: Path,
    replayer: Replayer,
    stats: PlaybackStats,
    port: int,
    speed: float | None,
    loop: int,
    rfilter: RequestFilter | None,
    reassembly: Limits | None,
    on_progress: Callable[[PlaybackStats], None] | None,
) -> None:
    wall_base = time.monotonic()
    for _ in range(loop):
        stats.passes += 1
        reassembler = Reassembler(reassembly)
        gate = _HttpGate(rfilter, stats) if rfilter is not None and rfilter.active else None
        # A cut-off last record ends the pass; what came before it was replayed.
        pcap = MappedPcap(path)
        span = await _pass(
            pcap, reassembler, replayer, gate, stats, port, speed, wall_base, on_progress
        )
        closing = reassembler.close(span[1] if span is not None else 0.0)
        replayer.handle(gate.apply(closing) if gate is not None else closing)
        if span is not None:
            first_ts, last_ts = span
            stats.capture_seconds += last_ts - first_ts
            if speed is not None:
                wall_base += (last_ts - first_ts) / speed
        wall_base = max(wall_base, time.monotonic())
        if stats.error is not None:
            break


async def _pass(
    pcap: MappedPcap,
    reassembler: Reassembler,
    replayer: Replayer,
    gate: _HttpGate | None,
    stats: PlaybackStats,
    port: int,
    speed: float | None,
    wall_base: float,
    on_progress: Callable[[PlaybackStats], None] | None,
) -> tuple[float, float] | None:
    """One pass over the file; returns the capture time span of the replayed packets.

    Most packets of a capture are plain IPv4 segments of an established flow, in order
    (or segments of other ports, skipped): those take the fast path, which reads their
    headers with one ``struct`` call and hands a view of the payload to the replayer,
    building no ``Segment``, ``FlowKey`` or event. Everything else (SYN, FIN, RST, IPv6,
    IP options, out of order, a new flow, an HTTP filter) takes the general path, which
    parses the frame into a ``Segment`` and feeds the reassembler; both give the same
    events in the same order. The records are walked here as ``MappedPcap.frames`` walks
    them, without its generator: a resume and a tuple per packet, measurable at this rate.
    """
    linktype, buf, view = pcap.linktype, pcap.buffer, memoryview(pcap.buffer)
    record, scale, size = pcap.header.record.unpack_from, pcap.header.scale, len(buf)
    # Payloads are views into the mapping, which lives (and is unmapped) with its last view:
    # no explicit close, so views still queued for sending stay valid.
    feed, advance = reassembler.feed, reassembler.advance
    handle, send, backlogged = replayer.handle, replayer.send, replayer.backlogged
    layout = FIXED_LAYOUTS.get(linktype) if gate is None else None
    ethertype_at, ip_at = layout if layout is not None else (-1, -1)
    keys: dict[bytes, FlowKey] = {}  # raw addresses and ports -> their FlowKey
    first_ts: float | None = None
    last_ts = 0.0
    pos = GLOBAL_HEADER_SIZE
    # Packet and record counts are kept in locals (an attribute update per packet is
    # measurable at this rate) and written back at every yield and when the pass ends.
    packets, records = stats.packets, pcap.records
    try:
        while size - pos >= RECORD_HEADER_SIZE:
            sec, frac, caplen, _wirelen = record(buf, pos)
            start = pos + RECORD_HEADER_SIZE
            end = start + caplen
            if end > size or caplen > MAX_RECORD:
                break
            records += 1
            pos = end
            ts = sec + frac * scale
            data: Payload | None = None
            ip = start + ip_at
            if (
                ip_at >= 0
                and ip + 40 <= end
                and (
                    ethertype_at < 0
                    or (buf[start + ethertype_at] == 8 and buf[start + ethertype_at + 1] == 0)
                )
            ):
                vihl, total, frag, proto, sport, dport, seq, doff, flags = ipv4_tcp_headers(buf, ip)
                ip_end = ip + total
                lo = ip + 20 + (doff >> 4) * 4
                if (
                    vihl == 0x45
                    and proto == 6
                    and not frag & 0x3FFF
                    and ip_end <= end
                    and doff >= 0x50
                    and lo <= ip_end
                ):  # a whole IPv4 TCP segment without IP options: what parse_at returns
                    if dport != port and (sport != port or not flags & RST):
                        packets += 1
                        continue  # neither to the server nor a reset from it
                    if dport == port and lo < ip_end and not flags & _SPECIAL:
                        raw = buf[ip + 12 : ip + 24]  # source, destination, ports
                        cached = keys.get(raw)
                        if cached is None:
                            if len(keys) >= _MAX_KEYS:
                                keys.clear()
                            cached = keys[raw] = FlowKey(raw[:4], sport, raw[4:8], dport)
                        key = cached
                        if advance(key, ts, seq, ip_end - lo):
                            packets += 1
                            data = view[lo:ip_end]
            if data is None:
                seg = parse_at(linktype, ts, buf, start, end, view)
                if seg is None:
                    _count_truncated(pcap, port, stats, start, end)
                    continue
                packets += 1
                key = seg.key
                if key.dport == port:
                    events = feed(seg)
                elif key.sport == port and seg.flags & RST:
                    events = reassembler.reset(key.reversed(), ts)
                else:
                    continue
                if first_ts is None:
                    first_ts = ts
                last_ts = ts
                if gate is not None:
                    events = gate.apply(events)
                if not events:
                    continue
            else:
                last_ts = ts
            if speed is not None:
                assert first_ts is not None
                delay = wall_base + (ts - first_ts) / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if data is not None:
                full = send(key, data)
            else:
                handle(events)
                full = backlogged(key)
            if full:
                await replayer.room(key)
            # Let the queued writes go out every _YIELD_EVERY packets: one gathering write
            # per flow for several segments, while the target reads in parallel.
            if packets % _YIELD_EVERY == 0:
                stats.packets, pcap.records = packets, records
                await asyncio.sleep(0)
                if on_progress is not None:
                    on_progress(stats)
    finally:  # also when cancelled (Ctrl-C): the summary counts what was read
        stats.packets, pcap.records = packets, records
    try:
        pcap.check_end(pos)
    except PcapTruncatedError as e:
        stats.error = e
    return None if first_ts is None else (first_ts, last_ts)


def _count_truncated(
    pcap: MappedPcap, port: int, stats: PlaybackStats, start: int, end: int
) -> None:
    """A frame that is not a TCP segment: count it if it is one to ``port`` cut short by the
    snap length (its payload is lost), not if it is simply not TCP."""
    buf = pcap.buffer
    _sec, _frac, caplen, wirelen = pcap.header.record.unpack_from(buf, start - RECORD_HEADER_SIZE)
    if wirelen > caplen:
        ports = tcp_ports_at(pcap.linktype, buf, start, end)
        if ports is not None and ports[1] == port:
            stats.truncated_packets += 1
            stats.truncated_bytes += wirelen - caplen
