"""TCP segments parsed out of link-layer frames, with ``struct`` at fixed offsets.

``parse_frame`` is the hot path of both the live capture and the pcap reader:
it reads only the fields reassembly needs, at fixed offsets, and returns
``None`` for anything that is not a complete TCP segment (ARP, UDP, IP
fragments, frames cut short by the snap length).
"""

from __future__ import annotations

import ipaddress
import mmap
import struct
from typing import NamedTuple

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10

_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_VLAN_TYPES = (0x8100, 0x88A8)
_IPV6_SKIPPABLE = (0, 43, 60)  # hop-by-hop, routing, destination options

Frame = bytes | mmap.mmap
"""Anything a frame is read from: a record's bytes, or a whole mmap'd pcap file."""

_u16 = struct.Struct(">H").unpack_from
_tcp = struct.Struct(">HHII").unpack_from
#: An IPv4 header's fixed part in one call: version/ihl, tos, total length, id,
#: flags/fragment offset, ttl, protocol, checksum, source, destination.
_ipv4 = struct.Struct(">BBHHHBBH4s4s").unpack_from
#: A TCP header up to its flags: ports, seq, ack, data offset, flags.
_tcp_head = struct.Struct(">HHIIBB").unpack_from
_tuple_new = tuple.__new__  # builds the NamedTuples below without a Python-level __new__


class FlowKey(NamedTuple):
    """One direction of a TCP connection: packed source/destination addresses and ports."""

    src: bytes
    sport: int
    dst: bytes
    dport: int

    def reversed(self) -> FlowKey:
        return FlowKey(self.dst, self.dport, self.src, self.sport)

    def __str__(self) -> str:
        return f"{_fmt(self.src, self.sport)}->{_fmt(self.dst, self.dport)}"


def _fmt(addr: bytes, port: int) -> str:
    ip = ipaddress.ip_address(addr)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


Payload = bytes | memoryview
"""Segment payload: bytes, or a zero-copy view into an mmap'd pcap (offline replay)."""


class Segment(NamedTuple):
    """The parts of one TCP segment that reassembly uses; ``ts`` in seconds since the epoch."""

    ts: float
    key: FlowKey
    seq: int
    flags: int
    payload: Payload


def network_offset(linktype: int, frame: Frame, start: int = 0, n: int | None = None) -> int:
    """Offset of the IP header of the frame at ``frame[start:n]``, or -1 if it carries no IP."""
    n = len(frame) if n is None else n
    if linktype == LINKTYPE_ETHERNET:
        if n < start + 14:
            return -1
        ethertype = _u16(frame, start + 12)[0]
        off = start + 14
        while ethertype in _VLAN_TYPES and n >= off + 4:
            ethertype = _u16(frame, off + 2)[0]
            off += 4
        return off if ethertype in (_ETH_IPV4, _ETH_IPV6) else -1
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return start
    if linktype == LINKTYPE_LINUX_SLL:
        if n < start + 16:
            return -1
        return start + 16 if _u16(frame, start + 14)[0] in (_ETH_IPV4, _ETH_IPV6) else -1
    if linktype == LINKTYPE_LINUX_SLL2:
        if n < start + 20:
            return -1
        return start + 20 if _u16(frame, start)[0] in (_ETH_IPV4, _ETH_IPV6) else -1
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        return start + 4 if n >= start + 4 else -1
    return -1


#: The untagged frame layouts of :func:`network_offset`, for callers that read IPv4 at a
#: fixed offset (offline replay's fast path): link type -> (offset of the 0x0800
#: ethertype to check, or -1 for none; offset of the IP header). VLAN-tagged and other
#: frames are not covered: read those with :func:`network_offset`.
FIXED_LAYOUTS = {
    LINKTYPE_ETHERNET: (12, 14),
    LINKTYPE_LINUX_SLL: (14, 16),
    LINKTYPE_LINUX_SLL2: (0, 20),
    LINKTYPE_RAW: (-1, 0),
    LINKTYPE_IPV4: (-1, 0),
    LINKTYPE_IPV6: (-1, 0),
    LINKTYPE_NULL: (-1, 4),
    LINKTYPE_LOOP: (-1, 4),
}
#: An IPv4 header without options and a TCP header up to its flags, in one call: version/ihl,
#: total length, fragment, protocol, (addresses skipped), ports, seq, data offset, flags.
#: The caller checks what :func:`parse_ip` checks (version 4, IHL 5, TCP, not a fragment,
#: the lengths within the frame) before trusting the values.
ipv4_tcp_headers = struct.Struct(">BxH2xHxB2x8xHHI4xBB").unpack_from


def parse_frame(linktype: int, ts: float, frame: Frame) -> Segment | None:
    """The TCP segment in ``frame`` (a ``linktype`` frame), or None if it carries none."""
    off = 14 if linktype == LINKTYPE_ETHERNET and frame[12:14] == b"\x08\x00" else -1
    if off < 0:
        off = network_offset(linktype, frame)
        if off < 0:
            return None
    return parse_ip(ts, frame, off)


def parse_at(
    linktype: int, ts: float, buf: Frame, start: int, end: int, view: memoryview | None = None
) -> Segment | None:
    """Like ``parse_frame`` for the frame at ``buf[start:end]`` (e.g. in an mmap'd pcap).

    With ``view`` (a memoryview of ``buf``) the payload is a view, not a copy.
    """
    if (
        linktype == LINKTYPE_ETHERNET
        and end - start >= 14
        and buf[start + 12] == 0x08
        and buf[start + 13] == 0x00
    ):
        off = start + 14
    else:
        off = network_offset(linktype, buf, start, end)
        if off < 0:
            return None
    return parse_ip(ts, buf, off, end, view)


def parse_ip(
    ts: float, frame: Frame, off: int = 0, n: int | None = None, view: memoryview | None = None
) -> Segment | None:
    """The TCP segment in the IPv4/IPv6 packet at ``frame[off:n]``, or None."""
    n = len(frame) if n is None else n
    if n < off + 20:
        return None
    version = frame[off] >> 4
    if version == 4:
        vihl, _tos, total, _id, fragment, _ttl, proto, _sum, src, dst = _ipv4(frame, off)
        ihl = (vihl & 0x0F) * 4
        if proto != 6 or fragment & 0x3FFF or ihl < 20:
            return None  # not TCP, or an IP fragment
        end = off + total
        t = off + ihl
        if end > n or n < t + 20:
            return None  # cut by the snap length: payload incomplete
        sport, dport, seq, _ack, doff, flags = _tcp_head(frame, t)
        doff = (doff >> 4) * 4
        if doff < 20 or t + doff > end:
            return None
        payload = frame[t + doff : end] if view is None else view[t + doff : end]
        key = _tuple_new(FlowKey, (src, sport, dst, dport))
        return _tuple_new(Segment, (ts, key, seq, flags, payload))
    if version == 6:
        if n < off + 40:
            return None
        nxt = frame[off + 6]
        end = off + 40 + _u16(frame, off + 4)[0]
        src = frame[off + 8 : off + 24]
        dst = frame[off + 24 : off + 40]
        t = off + 40
        while nxt in _IPV6_SKIPPABLE and n >= t + 8:
            nxt = frame[t]
            t += (frame[t + 1] + 1) * 8
        if nxt != 6:
            return None
    else:
        return None
    if end > n or n < t + 20:
        return None  # cut by the snap length: payload incomplete
    sport, dport, seq, _ack = _tcp(frame, t)
    doff = (frame[t + 12] >> 4) * 4
    if doff < 20 or t + doff > end:
        return None
    payload = frame[t + doff : end] if view is None else view[t + doff : end]
    return Segment(ts, FlowKey(src, sport, dst, dport), seq, frame[t + 13], payload)


def tcp_ports_at(linktype: int, buf: Frame, start: int, end: int) -> tuple[int, int] | None:
    """``(sport, dport)`` of a TCP frame at ``buf[start:end]`` even if its payload is cut off
    (a snap length shorter than the frame), or None when not even the ports are there."""
    off = network_offset(linktype, buf, start, end)
    if off < 0 or end < off + 20:
        return None
    version = buf[off] >> 4
    if version == 4:
        if buf[off + 9] != 6 or _u16(buf, off + 6)[0] & 0x1FFF:
            return None
        t = off + (buf[off] & 0x0F) * 4
    elif version == 6 and end >= off + 40 and buf[off + 6] == 6:
        t = off + 40
    else:
        return None
    if end < t + 4:
        return None
    return _u16(buf, t)[0], _u16(buf, t + 2)[0]
