"""Offline replay of crafted pcaps to a loopback target: pacing, loops, HTTP filters, dry run."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.traffic.conftest import Recorder
from tests.traffic.crafting import KEY, pcap_bytes, seg
from traffic.http_requests import RequestFilter
from traffic.packets import ACK, FIN, SYN, Segment
from traffic.playback import play
from traffic.targets import Target

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

GAP = 0.3


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


async def test_speed_one_keeps_capture_gaps_between_connections(
    recorder: tuple[Recorder, Target], tmp_path: Path
) -> None:
    rec, target = recorder
    path = write_pcap(tmp_path, [flow(i, 100.0 + GAP * i, [request(f"/r{i}")]) for i in range(4)])
    stats = await play(path, target, speed=1.0)
    await rec.wait_for(4, 5)
    gaps = [b - a for a, b in zip(rec.first_byte_at, rec.first_byte_at[1:], strict=False)]
    assert all(abs(g - GAP) < 0.1 for g in gaps), gaps
    assert stats.replay.flows == 4
    assert stats.replay.bytes_dropped == 0


async def test_speed_max_is_not_paced_and_speed_two_halves_the_gaps(
    recorder: tuple[Recorder, Target], tmp_path: Path
) -> None:
    rec, target = recorder
    path = write_pcap(tmp_path, [flow(i, 100.0 + 2.0 * i, [request(f"/r{i}")]) for i in range(4)])
    fast = await play(path, target, speed=None)
    assert fast.wall_seconds < 1.0  # the capture spans 6 s
    await rec.wait_for(4, 5)
    rec.first_byte_at.clear()
    path = write_pcap(tmp_path, [flow(i, 100.0 + 0.4 * i, [request(f"/r{i}")]) for i in range(3)])
    await play(path, target, speed=2.0)
    await rec.wait_for(7, 5)
    gaps = [b - a for a, b in zip(rec.first_byte_at, rec.first_byte_at[1:], strict=False)]
    assert all(abs(g - 0.2) < 0.08 for g in gaps), gaps


async def test_loop_replays_every_flow_once_per_pass_byte_exact(
    recorder: tuple[Recorder, Target], tmp_path: Path
) -> None:
    rec, target = recorder
    bodies = [request("/a", body=b"x" * 70_000), request("/b", body=b"y" * 10)]
    path = write_pcap(tmp_path, [flow(1, 1.0, [bodies[0][:30_000], bodies[0][30_000:], bodies[1]])])
    stats = await play(path, target, speed=None, loop=3)
    await rec.wait_for(3, 5)
    assert rec.flows == [bodies[0] + bodies[1]] * 3
    assert stats.passes == 3


async def test_http_filters_send_only_matching_requests_with_negative_lookahead(
    recorder: tuple[Recorder, Target], tmp_path: Path
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
    stats = await play(path, Target("127.0.0.1", port), speed=None)
    assert stats.replay.errors == 1
    assert stats.replay.bytes_dropped == len(request("/x"))
