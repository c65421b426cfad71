"""Crafted pcaps: decoding, truncation, link types, and reassembly rules read back from files."""

from __future__ import annotations

import io
import socket
import struct

import dpkt
import pytest

from tests.support.crafting import KEY, ethernet, ipv4_tcp, pcap_bytes, seg
from traffic.errors import PcapError, PcapTruncatedError
from traffic.packets import (
    ACK,
    FIN,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_RAW,
    SYN,
    FlowKey,
    parse_frame,
)
from traffic.pcaps import PcapDecoder, read_records
from traffic.reassembly import Data, Event, FlowEnded, FlowError, Reassembler

pytestmark = pytest.mark.unit

ISN = 77


def replay_pcap(data: bytes) -> list[Event]:
    r = Reassembler()
    events: list[Event] = []
    for linktype, rec in read_records(io.BytesIO(data)):
        s = parse_frame(linktype, rec.ts, rec.data)
        assert s is not None
        events.extend(r.feed(s))
    events.extend(r.close(99.0))
    return events


PCAP_CASES = {
    "out-of-order": [
        seg(ISN, flags=SYN),
        seg(ISN + 4, b"defg"),
        seg(ISN + 1, b"abc"),
        seg(ISN + 8, flags=FIN | ACK),
    ],
    "overlap-both-ways": [
        seg(ISN, flags=SYN),
        seg(ISN + 3, b"cdef"),
        seg(ISN + 1, b"abcd"),
        seg(ISN + 6, b"fg"),
        seg(ISN + 8, flags=FIN | ACK),
    ],
    "retransmission": [
        seg(ISN, flags=SYN),
        seg(ISN + 1, b"abc"),
        seg(ISN + 1, b"abc"),
        seg(ISN + 4, b"defg", flags=FIN | ACK),
    ],
    "wraparound": [
        seg(0xFFFFFFFD, flags=SYN),
        seg(0xFFFFFFFE, b"ab"),
        seg(0, b"cdefg"),
        seg(5, flags=FIN | ACK),
    ],
    "fin-before-pending": [
        seg(ISN, flags=SYN),
        seg(ISN + 4, b"defg", flags=FIN | ACK),
        seg(ISN + 1, b"abc"),
    ],
    "mid-stream": [seg(123456, b"abcdefg"), seg(123463, flags=FIN | ACK)],
}


@pytest.mark.parametrize("name", sorted(PCAP_CASES))
def test_crafted_pcap_reassembles_to_the_sent_bytes(name: str) -> None:
    events = replay_pcap(pcap_bytes(PCAP_CASES[name]))
    assert b"".join(e.data for e in events if isinstance(e, Data)) == b"abcdefg"
    assert [e for e in events if isinstance(e, FlowEnded | FlowError)] == [
        FlowEnded(KEY, 1.0, "fin")
    ]


def test_crafted_pcap_with_rst_ends_flow_with_rst() -> None:
    data = pcap_bytes([seg(ISN, flags=SYN), seg(ISN + 1, b"ab"), seg(ISN + 3, flags=0x04)])
    events = replay_pcap(data)
    assert events[-1] == FlowEnded(KEY, 1.0, "rst")


@pytest.mark.parametrize("cut", [1, 10, 23, 24 + 5, 24 + 16 + 3])
def test_truncated_pcap_is_reported_not_hidden(cut: int) -> None:
    data = pcap_bytes([seg(ISN, flags=SYN), seg(ISN + 1, b"abc")])
    with pytest.raises(PcapTruncatedError):
        list(read_records(io.BytesIO(data[: len(data) - cut])))


def test_truncated_pcap_still_yields_whole_records_before_the_cut() -> None:
    data = pcap_bytes([seg(ISN, flags=SYN), seg(ISN + 1, b"abc")])
    records = read_records(io.BytesIO(data[:-2]))
    assert next(records)[1].wirelen > 0
    with pytest.raises(PcapTruncatedError, match="1 whole records"):
        next(records)


def test_empty_input_is_a_truncated_pcap() -> None:
    with pytest.raises(PcapTruncatedError, match="empty"):
        list(read_records(io.BytesIO(b"")))


def test_pcapng_and_garbage_are_rejected_with_a_clear_message() -> None:
    with pytest.raises(PcapError, match="pcapng"):
        PcapDecoder().feed(b"\x0a\x0d\x0d\x0a" + b"\0" * 40)
    with pytest.raises(PcapError, match="not a pcap"):
        PcapDecoder().feed(b"GET / HTTP/1.1\r\n" * 3)


def test_decoder_handles_byte_by_byte_feeding() -> None:
    data = pcap_bytes([seg(ISN, flags=SYN), seg(ISN + 1, b"abc")])
    decoder = PcapDecoder()
    records = [r for i in range(len(data)) for r in decoder.feed(data[i : i + 1])]
    decoder.finish()
    assert len(records) == 2


def test_dpkt_reads_our_pcap_and_we_read_big_endian_nanosecond_pcaps() -> None:
    data = pcap_bytes([seg(ISN, flags=SYN, ts=1.25)])
    ((ts, frame),) = list(dpkt.pcap.Reader(io.BytesIO(data)))
    assert ts == pytest.approx(1.25)
    big = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)
    big += struct.pack(">IIII", 3, 500_000_000, len(frame), len(frame)) + frame
    ((linktype, record),) = list(read_records(io.BytesIO(big)))
    assert (linktype, record.ts, record.data) == (1, 3.5, frame)


def test_parse_frame_reads_ipv4_over_raw_sll_and_vlan_ethernet() -> None:
    packet = ipv4_tcp(KEY, 5, ACK, b"payload")
    sll = b"\0\0\0\1\0\6" + b"\0" * 8 + b"\x08\x00" + packet
    vlan = b"\x02" * 12 + b"\x81\x00\x00\x05\x08\x00" + packet
    for linktype, frame in [
        (LINKTYPE_RAW, packet),
        (LINKTYPE_LINUX_SLL, sll),
        (1, vlan),
        (1, ethernet(packet)),
    ]:
        s = parse_frame(linktype, 0.0, frame)
        assert s is not None
        assert (s.key, s.seq, s.payload) == (KEY, 5, b"payload")


def test_parse_frame_strips_ethernet_padding_and_skips_cut_frames() -> None:
    frame = ethernet(ipv4_tcp(KEY, 5, ACK, b"")) + b"\0" * 6
    s = parse_frame(1, 0.0, frame)
    assert s is not None
    assert s.payload == b""
    assert parse_frame(1, 0.0, ethernet(ipv4_tcp(KEY, 5, ACK, b"abcdef"))[:-2]) is None


def test_parse_frame_reads_ipv6_with_extension_header() -> None:
    src, dst = (
        socket.inet_pton(socket.AF_INET6, "fd00::1"),
        socket.inet_pton(socket.AF_INET6, "fd00::2"),
    )
    tcp = struct.pack(">HHIIBBHHH", 1234, 80, 9, 0, 5 << 4, ACK, 100, 0, 0) + b"v6"
    hop = bytes([6, 0]) + b"\0" * 6  # hop-by-hop options, next header TCP
    ip6 = struct.pack(">IHBB16s16s", 6 << 28, len(hop) + len(tcp), 0, 64, src, dst)
    s = parse_frame(LINKTYPE_RAW, 0.0, ip6 + hop + tcp)
    assert s is not None
    assert s.key == FlowKey(src, 1234, dst, 80)
    assert s.payload == b"v6"
    assert str(s.key) == "[fd00::1]:1234->[fd00::2]:80"
