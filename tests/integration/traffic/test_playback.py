"""Offline replay of crafted pcaps to a loopback target: pacing, loops, HTTP filters, dry run."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
from pathlib import Path

import pytest

from tests.integration.traffic.conftest import Recorder
from tests.support.crafting import KEY, pcap_bytes, seg
from traffic.errors import PcapTruncatedError
from traffic.http_requests import RequestFilter
from traffic.packets import ACK, FIN, LINKTYPE_ETHERNET, LINKTYPE_RAW, SYN, Segment
from traffic.playback import play
from traffic.replaying import ReplayLimits
from traffic.targets import ReplayTarget

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

GAP = 0.5
TOLERANCE = 0.2


def request(path: str, header: str = "X-Env: dev", body: bytes = b"") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: svc\r\n{header}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def flow(n: int, ts: float, payloads: list[bytes]) -> list[Segment]:
    key = KEY._replace(sport=40000 + n)
    isn = 1000 * n
    out = [seg(isn, flags=SYN, ts=ts, key=key)]
    offset = 1
    for p in payloads:
        out.append(seg(isn + offset, p, ts=ts, key=key))
        offset += len(p)
    out.append(seg(isn + offset, flags=FIN | ACK, ts=ts + 0.01, key=key))
    return out


def write_pcap(tmp_path: Path, flows: list[list[Segment]]) -> Path:
    segments = sorted((s for f in flows for s in f), key=lambda s: s.ts)
    path = tmp_path / "capture.pcap"
    path.write_bytes(pcap_bytes(segments))
    return path


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_speed_one_keeps_capture_gaps_between_connections_and_requests(
    recorder: tuple[Recorder, ReplayTarget], tmp_path: Path
) -> None:
    """Four connections GAP s apart, then one keep-alive connection whose second request
    was captured GAP s after its first: at --speed 1 the target sees the same gaps
    (within a tolerance generous enough for a loaded 2-core machine)."""
    rec, target = recorder
    flows = [flow(i, 100.0 + GAP * i, [request(f"/r{i}")]) for i in range(4)]
    key = KEY._replace(sport=41000)
    first, second = request("/first"), request("/second")
    t0 = 100.0 + GAP * 4
    flows.append(
        [
            seg(7000, flags=SYN, ts=t0, key=key),
            seg(7001, first, ts=t0, key=key),
            seg(7001 + len(first), second, ts=t0 + GAP, key=key),
            seg(7001 + len(first) + len(second), flags=FIN | ACK, ts=t0 + GAP, key=key),
        ]
    )
    path = write_pcap(tmp_path, flows)
    stats = await play(path, target, speed=1.0)
    await rec.wait_for(5, 10)
    between_connections = gaps(rec.first_byte_at)
    assert all(abs(g - GAP) < TOLERANCE for g in between_connections), between_connections
    arrivals = {data: at for at, data in rec.chunks}
    assert abs(arrivals[second] - arrivals[first] - GAP) < TOLERANCE, arrivals
    assert stats.wall_seconds > 4 * GAP
    assert stats.replay.flows == 5
    assert stats.replay.bytes_dropped == 0


async def test_speed_max_is_not_paced_and_speed_two_halves_the_gaps(
    recorder: tuple[Recorder, ReplayTarget], tmp_path: Path
) -> None:
    rec, target = recorder
    path = write_pcap(tmp_path, [flow(i, 100.0 + 2.0 * i, [request(f"/r{i}")]) for i in range(4)])
    fast = await play(path, target, speed=None)
    assert fast.capture_seconds > 6.0
    assert fast.wall_seconds < 1.5  # unpaced: nowhere near the 6 s the capture spans
    await rec.wait_for(4, 5)
    assert all(g < 0.5 for g in gaps(rec.first_byte_at)), rec.first_byte_at
    rec.first_byte_at.clear()
    path = write_pcap(
        tmp_path, [flow(i, 100.0 + 2 * GAP * i, [request(f"/r{i}")]) for i in range(3)]
    )
    await play(path, target, speed=2.0)
    await rec.wait_for(7, 5)
    halved = gaps(rec.first_byte_at)
    assert all(abs(g - GAP) < TOLERANCE for g in halved), halved


async def test_loop_replays_every_flow_once_per_pass_byte_exact(
    recorder: tuple[Recorder, ReplayTarget], tmp_path: Path
) -> None:
    rec, target = recorder
    bodies = [request("/a", body=b"x" * 70_000), request("/b", body=b"y" * 10)]
    path = write_pcap(tmp_path, [flow(1, 1.0, [bodies[0][:30_000], bodies[0][30_000:], bodies[1]])])
    stats = await play(path, target, speed=None, loop=3)
    await rec.wait_for(3, 5)
    assert rec.flows == [bodies[0] + bodies[1]] * 3
    assert stats.passes == 3


async def test_http_filters_send_only_matching_requests_with_negative_lookahead(
    recorder: tuple[Recorder, ReplayTarget], tmp_path: Path
) -> None:
    rec, target = recorder
    wanted = request("/api/orders", header="X-Env: dev-alice", body=b"{}")
    path = write_pcap(
        tmp_path,
        [
            flow(1, 1.0, [request("/health"), wanted, request("/api/x", header="X-Env: prod")]),
            flow(2, 1.1, [request("/health")]),
            flow(3, 1.2, [b"\x16\x03\x01 not http at all\r\n\r\n"]),
        ],
    )
    rfilter = RequestFilter.build(path=r"^(?!/health)", header=r"(?i)^x-env:\s*dev-")
    stats = await play(path, target, speed=None, rfilter=rfilter)
    await rec.wait_for(1, 5)
    assert rec.flows == [wanted]
    assert (stats.requests_matched, stats.requests_filtered, stats.flows_not_http) == (1, 3, 1)


async def test_dry_run_counts_without_connecting(tmp_path: Path) -> None:
    path = write_pcap(tmp_path, [flow(i, 1.0 + i, [request("/x", body=b"abc")]) for i in range(3)])
    stats = await play(path, None, speed=None)
    assert stats.replay.flows == 3
    assert stats.replay.bytes_sent == 3 * len(request("/x", body=b"abc"))


async def test_unreachable_target_mid_replay_counts_errors(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here any more
    path = write_pcap(tmp_path, [flow(1, 1.0, [request("/x")])])
    stats = await play(path, ReplayTarget("127.0.0.1", port), speed=None)
    assert stats.replay.errors == 1
    assert stats.replay.bytes_dropped == len(request("/x"))


async def test_truncated_pcap_replays_what_precedes_the_cut_and_reports_it(
    recorder: tuple[Recorder, ReplayTarget], tmp_path: Path
) -> None:
    """The file ends inside the last record: the flows before the cut are replayed, the
    truncation is in the summary (not hidden), and nothing after it is guessed."""
    rec, target = recorder
    whole = request("/whole")
    path = write_pcap(tmp_path, [flow(1, 1.0, [whole]), flow(2, 2.0, [request("/cut")])])
    fin_record = 16 + 14 + 20 + 20  # record header, Ethernet, IPv4, TCP: the last record
    path.write_bytes(path.read_bytes()[: -fin_record - 10])  # into the /cut data segment
    stats = await play(path, target, speed=None)
    assert isinstance(stats.error, PcapTruncatedError)
    assert "truncated" in str(stats.error)
    await rec.wait_for(1, 5)
    assert rec.flows == [whole]


async def test_slow_target_makes_offline_replay_wait_not_drop(tmp_path: Path) -> None:
    """A target that reads 64 KiB every 5 ms takes a 6 MiB flow more slowly than the file
    offers it; with a 512 KiB backlog bound the replay waits for room (it never drops
    offline) and the target gets every byte in order."""
    body = random.Random(5).randbytes(6 << 20)
    pieces = [body[i : i + 16384] for i in range(0, len(body), 16384)]
    path = write_pcap(tmp_path, [flow(1, 1.0, pieces)])
    received = bytearray()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            received.extend(chunk)
            await asyncio.sleep(0.005)
        writer.close()

    server = await asyncio.start_server(slow, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        limits = ReplayLimits(max_flow_backlog=512 << 10, send_buffer=64 << 10)
        async with asyncio.timeout(30):
            stats = await play(path, ReplayTarget("127.0.0.1", port), speed=None, replay=limits)
    assert stats.replay.bytes_dropped == 0
    assert stats.replay.flows_completed == 1
    assert bytes(received) == body


async def test_target_closing_after_its_answer_is_an_error_only_if_bytes_remain(
    tmp_path: Path,
) -> None:
    """An HTTP/1.0-style target answers one request and closes. Flow 1 (one request, FIN
    captured 0.3 s later) completes without error; flow 2 (a second request 0.3 s after
    the first) counts one error and the second request's bytes as dropped."""
    one, two = request("/one"), request("/two")

    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\n\r\n")
        writer.close()

    k1, k2 = KEY._replace(sport=42001), KEY._replace(sport=42002)
    flows = [
        [seg(10, flags=SYN, ts=1.0, key=k1), seg(11, one, ts=1.0, key=k1),
         seg(11 + len(one), flags=FIN | ACK, ts=1.3, key=k1)],
        [seg(50, flags=SYN, ts=1.0, key=k2), seg(51, one, ts=1.0, key=k2),
         seg(51 + len(one), two, ts=1.3, key=k2),
         seg(51 + len(one) + len(two), flags=FIN | ACK, ts=1.3, key=k2)],
    ]  # fmt: skip
    path = write_pcap(tmp_path, flows)
    server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
    async with server:
        target = ReplayTarget("127.0.0.1", server.sockets[0].getsockname()[1])
        async with asyncio.timeout(20):
            stats = await play(path, target, speed=1.0)
    r = stats.replay
    assert (r.flows, r.flows_completed, r.errors) == (2, 1, 1), r
    assert r.bytes_dropped == len(two)
    assert r.reasons == {"the target closed the connection": 1}


async def test_reused_client_port_becomes_a_second_local_connection(
    recorder: tuple[Recorder, ReplayTarget], tmp_path: Path
) -> None:
    """The same 4-tuple carries two connections one after the other (a new SYN, a new
    ISN): each becomes its own local connection, even while the first is still closing."""
    rec, target = recorder
    first, second = request("/first"), request("/second")
    segments = [
        seg(100, flags=SYN, ts=1.0), seg(101, first, ts=1.0),
        seg(101 + len(first), flags=FIN | ACK, ts=1.0),
        seg(90_000, flags=SYN, ts=1.0), seg(90_001, second, ts=1.0),
        seg(90_001 + len(second), flags=FIN | ACK, ts=1.0),
    ]  # fmt: skip
    path = tmp_path / "reuse.pcap"
    path.write_bytes(pcap_bytes(segments))
    stats = await play(path, target, speed=None)
    await rec.wait_for(2, 5)
    assert sorted(rec.flows) == sorted([first, second])
    assert (stats.replay.flows, stats.replay.flows_completed) == (2, 2)


@pytest.mark.parametrize("linktype", [LINKTYPE_ETHERNET, LINKTYPE_RAW])
async def test_fast_and_general_paths_together_deliver_each_flow_byte_exact(
    recorder: tuple[Recorder, ReplayTarget], tmp_path: Path, linktype: int
) -> None:
    """Interleaved flows at --speed max: in-order segments take the fast path, while swapped
    (out-of-order) ones, a retransmission, the server's replies and another port's traffic
    take the general one; every flow's bytes arrive exactly as captured, in order."""
    rec, target = recorder
    rnd = random.Random(7)
    expected, segments = [], []
    for n in range(4):
        key = KEY._replace(sport=41000 + n)
        body = rnd.randbytes(60_000)
        expected.append(body)
        parts = [seg(n, flags=SYN, key=key)]
        chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]
        for i, chunk in enumerate(chunks):
            parts.append(seg(n + 1 + i * 1000, chunk, key=key))
        parts[10], parts[11] = parts[11], parts[10]
        parts.insert(20, parts[15])  # a retransmission
        parts.insert(30, seg(5, b"reply", key=key.reversed()))
        parts.insert(31, seg(9, b"other port", key=key._replace(dport=8080)))
        parts.append(seg(n + 1 + len(body), flags=FIN | ACK, key=key))
        segments.append(parts)
    ordered = [s for group in itertools.zip_longest(*segments) for s in group if s is not None]
    path = tmp_path / "capture.pcap"
    path.write_bytes(pcap_bytes(ordered, linktype))
    stats = await play(path, target, port=80, speed=None)
    await rec.wait_for(4, 10)
    assert sorted(rec.flows) == sorted(expected)
    assert stats.packets == len(ordered)
    assert stats.replay.bytes_sent == 4 * 60_000
    assert stats.replay.flows_completed == 4
