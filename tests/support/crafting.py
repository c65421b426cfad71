"""Hand-made TCP segments, frames and pcaps for the traffic tests (struct only, no scapy)."""

from __future__ import annotations

import io
import socket
import struct

from traffic.packets import ACK, LINKTYPE_ETHERNET, FlowKey, Segment
from traffic.pcaps import PcapWriter

CLIENT = socket.inet_aton("10.0.0.1")
SERVER = socket.inet_aton("10.0.0.2")
KEY = FlowKey(CLIENT, 40000, SERVER, 80)


def seg(
    seq: int, payload: bytes = b"", flags: int = ACK, ts: float = 1.0, key: FlowKey = KEY
) -> Segment:
    return Segment(ts, key, seq & 0xFFFFFFFF, flags, payload)


def ipv4_tcp(key: FlowKey, seq: int, flags: int, payload: bytes, ack: int = 0) -> bytes:
    """An IPv4 packet carrying one TCP segment (checksums left zero; nothing here checks them)."""
    tcp = struct.pack(
        ">HHIIBBHHH", key.sport, key.dport, seq & 0xFFFFFFFF, ack, 5 << 4, flags, 65535, 0, 0
    )
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 6, 0, key.src, key.dst)
    return ip + tcp + payload


def ethernet(packet: bytes) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + packet


def pcap_bytes(
    segments: list[Segment], linktype: int = LINKTYPE_ETHERNET, snaplen: int | None = None
) -> bytes:
    """A pcap of ``segments``; with ``snaplen``, each record keeps only its first ``snaplen``
    bytes (its original length kept in the record header), as ``tcpdump -s SNAPLEN`` writes."""
    out = io.BytesIO()
    writer = PcapWriter(out, linktype)
    for s in segments:
        packet = ipv4_tcp(s.key, s.seq, s.flags, bytes(s.payload))
        frame = ethernet(packet) if linktype == LINKTYPE_ETHERNET else packet
        writer.write(s.ts, frame[:snaplen], len(frame))
    return out.getvalue()
