"""TCP stream reassembly as a pure, sans-IO core.

Segments go in (``Reassembler.feed``), events come out::

    FlowStarted(key, ts, mid_stream)   first SYN, or first payload of a flow seen mid-stream
    Data(key, ts, data)                the next bytes of the stream, in sequence order
    FlowEnded(key, ts, reason)         "fin", "rst", "idle", "reused" or "capture-end"
    FlowError(key, ts, reason)         a gap that can never be filled (buffer bound, idle, end)

Every started flow gets exactly one ``FlowEnded`` or ``FlowError``. Sequence
numbers are unwrapped to 64-bit stream offsets relative to the next expected
byte, so 32-bit wraparound needs no special case. Out-of-order segments wait
in a per-flow buffer bounded in bytes and segments; bytes already delivered
are trimmed from retransmissions and overlaps, and of two copies starting at
the same offset the longer is kept. A FIN ends the flow only once delivery
reaches its sequence number; a RST ends it at once. Time is the capture
timestamp of the segments (or what the caller passes to ``expire``): the core
never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from traffic.limits import Limits as Limits  # re-exported: the reassembler's bounds
from traffic.packets import FIN, RST, SYN, FlowKey, Payload, Segment

_MASK = 0xFFFFFFFF
_HALF = 0x80000000
#: Flags that take a segment off the in-order fast path of ``Reassembler.feed``.
_SPECIAL = SYN | RST | FIN


class FlowStarted(NamedTuple):
    key: FlowKey
    ts: float
    mid_stream: bool


class Data(NamedTuple):
    key: FlowKey
    ts: float
    data: Payload


class FlowEnded(NamedTuple):
    key: FlowKey
    ts: float
    reason: str


class FlowError(NamedTuple):
    key: FlowKey
    ts: float
    reason: str


Event = FlowStarted | Data | FlowEnded | FlowError


@dataclass
class Stats:
    segments: int = 0
    flows: int = 0
    refused: int = 0
    retransmitted_bytes: int = 0
    delivered_bytes: int = 0


class _Flow:
    __slots__ = ("base", "buf", "buf_bytes", "fin_at", "last_ts", "next")

    def __init__(self, base: int, ts: float) -> None:
        self.base = base  # 32-bit sequence number of stream offset 0
        self.next = 0  # stream offset of the next byte to deliver
        self.buf: dict[int, Payload] = {}  # out-of-order: stream offset -> bytes
        self.buf_bytes = 0
        self.fin_at: int | None = None
        self.last_ts = ts

    def offset(self, seq: int) -> int:
        """Stream offset of 32-bit ``seq``: the one nearest the next expected byte."""
        return self.next + ((seq - self.base - self.next + _HALF) & _MASK) - _HALF


class Reassembler:
    """Per-flow TCP sequencing; feed it segments of the direction(s) you want as byte streams."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.stats = Stats()
        self._flows: dict[FlowKey, _Flow] = {}
        self._ended: dict[FlowKey, float] = {}
        self._swept = 0.0

    def __len__(self) -> int:
        return len(self._flows)

    def feed(self, seg: Segment) -> list[Event]:
        """Events caused by one segment (and by idle flows it proves have expired)."""
        self.stats.segments += 1
        ts, key, seq, flags, payload = seg
        flow = self._flows.get(key)
        if (
            flow is not None
            and payload
            and not flags & _SPECIAL
            and not flow.buf
            and flow.fin_at is None
            and ts - self._swept < 1.0
            and (seq - flow.base - flow.next) & _MASK == 0
        ):
            # The common case, an established flow's next bytes in order: delivered as is.
            flow.last_ts = ts
            flow.next += len(payload)
            self.stats.delivered_bytes += len(payload)
            return [Data(key, ts, payload)]
        events: list[Event] = []
        if ts - self._swept >= 1.0:
            events.extend(self.expire(ts))
        if flow is not None and flags & SYN and (seq + 1) & _MASK != flow.base:
            events.append(self._end(key, flow, ts, "reused"))
            flow = None
        if flow is None:
            flow = self._start(key, seg, events)
            if flow is None:
                return events
        flow.last_ts = ts
        if flags & RST:
            events.append(self._end(key, flow, ts, "rst"))
            return events
        start = flow.offset((seq + 1) & _MASK if flags & SYN else seq)
        if payload:
            self._accept(key, flow, ts, start, payload, events)
            if key not in self._flows:
                return events
        if flags & FIN and flow.fin_at is None:
            flow.fin_at = start + len(payload)
        if flow.fin_at is not None and flow.next >= flow.fin_at:
            events.append(self._end(key, flow, ts, "fin"))
        return events

    def advance(self, key: FlowKey, ts: float, seq: int, size: int) -> bool:
        """``feed``'s in-order fast path without the segment and event objects.

        For a segment of ``size`` > 0 payload bytes at ``seq`` with none of SYN, RST or
        FIN: if it is the next data of an established flow with nothing buffered, it is
        accounted exactly as ``feed`` would and True is returned; the caller then delivers
        the payload itself, as the one ``Data(key, ts, payload)`` event ``feed`` would
        return. Otherwise nothing changes and it returns False: pass the segment to ``feed``.
        """
        flow = self._flows.get(key)
        if (
            flow is None
            or flow.buf
            or flow.fin_at is not None
            or ts - self._swept >= 1.0
            or (seq - flow.base - flow.next) & _MASK
        ):
            return False
        stats = self.stats
        stats.segments += 1
        stats.delivered_bytes += size
        flow.last_ts = ts
        flow.next += size
        return True

    def reset(self, key: FlowKey, ts: float) -> list[Event]:
        """The peer reset the connection (a RST seen in the other direction)."""
        flow = self._flows.get(key)
        return [] if flow is None else [self._end(key, flow, ts, "rst")]

    def expire(self, now: float) -> list[Event]:
        """End flows idle since ``now - idle_timeout``; forget old tombstones."""
        self._swept = now
        cutoff = now - self.limits.idle_timeout
        events: list[Event] = [
            self._end(key, flow, now, "idle")
            for key, flow in list(self._flows.items())
            if flow.last_ts < cutoff
        ]
        linger = now - self.limits.linger
        for key in [k for k, t in self._ended.items() if t < linger]:
            del self._ended[key]
        return events

    def close(self, ts: float) -> list[Event]:
        """End every open flow: the capture is over."""
        return [self._end(key, flow, ts, "capture-end") for key, flow in list(self._flows.items())]

    def _start(self, key: FlowKey, seg: Segment, events: list[Event]) -> _Flow | None:
        flags = seg.flags
        if flags & RST or not (flags & SYN or seg.payload):
            return None  # nothing to start from: a bare ACK/FIN/RST of an unknown flow
        if not flags & SYN and key in self._ended:
            return None  # a late segment of a flow that already ended
        if len(self._flows) >= self.limits.max_flows:
            self.stats.refused += 1
            return None
        self._ended.pop(key, None)
        flow = _Flow((seg.seq + 1) & _MASK if flags & SYN else seg.seq, seg.ts)
        self._flows[key] = flow
        self.stats.flows += 1
        events.append(FlowStarted(key, seg.ts, not flags & SYN))
        return flow

    def _accept(
        self,
        key: FlowKey,
        flow: _Flow,
        ts: float,
        start: int,
        payload: Payload,
        events: list[Event],
    ) -> None:
        end = start + len(payload)
        nxt = flow.next
        if end <= nxt:
            self.stats.retransmitted_bytes += len(payload)
            return
        if start < nxt:
            self.stats.retransmitted_bytes += nxt - start
            payload = payload[nxt - start :]
            start = nxt
        if start == nxt and not flow.buf:
            flow.next = end
            self.stats.delivered_bytes += len(payload)
            events.append(Data(key, ts, payload))
            return
        old = flow.buf.get(start)
        if old is None or len(old) < len(payload):
            flow.buf[start] = payload
            flow.buf_bytes += len(payload) - (len(old) if old else 0)
        if start == nxt:
            self._drain(key, flow, ts, events)
        limits = self.limits
        if flow.buf_bytes > limits.max_buffer_bytes or len(flow.buf) > limits.max_buffer_segments:
            events.append(
                self._end(
                    key, flow, ts, f"out-of-order buffer over its bound ({flow.buf_bytes} bytes)"
                )
            )

    def _drain(self, key: FlowKey, flow: _Flow, ts: float, events: list[Event]) -> None:
        """Deliver the buffered segments that now follow on: one ``Data`` each, not joined,
        so that payloads stay views (of an mmap'd pcap) and are not copied."""
        nxt = flow.next
        for start in sorted(flow.buf):
            if start > nxt:
                break
            data = flow.buf.pop(start)
            flow.buf_bytes -= len(data)
            end = start + len(data)
            if end > nxt:
                chunk = data[nxt - start :] if start < nxt else data
                self.stats.delivered_bytes += len(chunk)
                events.append(Data(key, ts, chunk))
                nxt = end
        flow.next = nxt

    def _end(self, key: FlowKey, flow: _Flow, ts: float, reason: str) -> FlowEnded | FlowError:
        del self._flows[key]
        self._ended[key] = ts
        if flow.buf or reason.startswith("out-of-order"):
            pending = flow.buf_bytes
            flow.buf.clear()
            if reason.startswith("out-of-order"):
                return FlowError(key, ts, reason)
            return FlowError(
                key, ts, f"{reason} with a gap at offset {flow.next}: {pending} bytes undeliverable"
            )
        return FlowEnded(key, ts, reason)
