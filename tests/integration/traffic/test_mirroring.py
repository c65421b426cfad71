"""Live mirroring on real traffic in network namespaces the tests create and delete."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.integration.traffic.conftest import ROOT, HttpPeers, Recorder
from tests.integration.traffic.netns import netns
from tests.support.crafting import pcap_bytes
from tests.support.crafting import seg as crafted
from traffic.capturing import RawSocketSource, StreamSource
from traffic.mirroring import MirrorStats, mirror
from traffic.namespaces import run_in_netns
from traffic.packets import SYN, parse_ip
from traffic.pcaps import PcapDecoder, Record
from traffic.playback import segments
from traffic.reassembly import Data, Reassembler
from traffic.replaying import ReplayLimits
from traffic.taps import tcpdump_command
from traffic.targets import ReplayTarget

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def run_clients(peers: HttpPeers, n: int, size: int) -> list[dict[str, object]]:
    proc = await asyncio.create_subprocess_exec(
        *peers.client_argv(n, size), stdout=subprocess.PIPE, cwd=ROOT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0
    results: list[dict[str, object]] = json.loads(out)
    return results


def sent_streams(results: list[dict[str, object]]) -> list[bytes]:
    assert all(all(r["ok"]) for r in results), "an original client missed a response"  # type: ignore[arg-type]
    return sorted(bytes.fromhex(str(r["sent"])) for r in results)


def pcap_streams(path: Path, port: int) -> list[bytes]:
    r = Reassembler()
    flows: dict[object, bytearray] = {}
    for seg in segments(path):
        if seg.key.dport == port:
            for event in r.feed(seg):
                if isinstance(event, Data):
                    flows.setdefault(event.key, bytearray()).extend(event.data)
    return sorted(bytes(b) for b in flows.values())


async def mirror_while(
    source: RawSocketSource | StreamSource,
    port: int,
    target: ReplayTarget | None,
    output: Path,
    clients: asyncio.Future[list[dict[str, object]]] | None,
    peers: HttpPeers,
    n: int,
    size: int,
    replay: ReplayLimits | None = None,
) -> tuple[MirrorStats, list[dict[str, object]]]:
    """Mirror while ``n`` clients run; stop half a second after the last one finished."""
    stop = threading.Event()
    with output.open("wb") as out:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(
                mirror(source, port, target, out, stop=stop, replay=replay), name="mirror"
            )
            await asyncio.sleep(0.2)
            results = await run_clients(peers, n, size)
            await asyncio.sleep(0.5)
            stop.set()
            source.interrupt()
            async with asyncio.timeout(30):
                stats = await task
    return stats, results


async def test_live_mirror_replays_each_concurrent_client_flow_byte_exact_in_order(
    http_peers: HttpPeers, recorder: tuple[Recorder, ReplayTarget], tmp_path: Path
) -> None:
    """100 concurrent keep-alive clients each POST three bodies into the server namespace; the
    capture runs inside that namespace; every flow reaches the loopback target byte-exact and
    in order, the original clients get every response, and the pcap holds the same bytes."""
    rec, target = recorder
    source = RawSocketSource(http_peers.port, netns=http_peers.pair.server)
    assert source.kernel_filter
    stats, results = await mirror_while(
        source, http_peers.port, target, tmp_path / "cap.pcap", None, http_peers, 100, 20_000
    )
    sent = sent_streams(results)
    assert len(sent) == 100
    await rec.wait_for(100, 20)
    assert sorted(rec.flows) == sent
    assert stats.replay.flows == 100
    assert stats.replay.bytes_dropped == 0
    assert stats.replay.response_bytes > 0
    assert stats.error is None
    assert pcap_streams(tmp_path / "cap.pcap", http_peers.port) == sent


async def test_target_that_never_reads_loses_flows_but_not_capture_or_pcap(
    http_peers: HttpPeers, tmp_path: Path
) -> None:
    """The --to target accepts connections (kernel backlog) but never reads. The replay leg
    hits its backlog bound or write deadline and drops with counters; the clients, the capture
    and the pcap are unaffected, and mirror returns."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    target = ReplayTarget("127.0.0.1", listener.getsockname()[1])
    limits = ReplayLimits(
        max_flow_backlog=256 << 10,
        write_timeout=1.0,
        connect_timeout=1.0,
        drain_timeout=1.0,
        send_buffer=64 << 10,
    )
    source = RawSocketSource(http_peers.port, netns=http_peers.pair.server)
    try:
        async with asyncio.timeout(60):
            stats, results = await mirror_while(
                source,
                http_peers.port,
                target,
                tmp_path / "cap.pcap",
                None,
                http_peers,
                8,
                200_000,
                limits,
            )
    finally:
        listener.close()
    sent = sent_streams(results)
    assert stats.replay.flows_dropped >= 1
    assert stats.replay.bytes_dropped > 0
    assert stats.kernel_drops == 0
    assert pcap_streams(tmp_path / "cap.pcap", http_peers.port) == sent


async def test_pcap_stream_from_tcpdump_is_mirrored(
    http_peers: HttpPeers, recorder: tuple[Recorder, ReplayTarget], tmp_path: Path
) -> None:
    """The cluster path without a cluster: the tap's exact tcpdump command, run in the server
    namespace, streams pcap on stdout; that stream is the source."""
    rec, target = recorder
    tcpdump = subprocess.Popen(  # noqa: ASYNC220 - a long-lived process read by a thread
        http_peers.pair.exec_argv(http_peers.pair.server, *tcpdump_command(http_peers.port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert tcpdump.stderr is not None
        assert tcpdump.stdout is not None
        lines = [tcpdump.stderr.readline() for _ in range(2)]
        assert any(b"listening on" in line for line in lines), lines
        source = StreamSource.from_fd(tcpdump.stdout.fileno(), interrupt=tcpdump.terminate)
        stats, results = await mirror_while(
            source, http_peers.port, target, tmp_path / "cap.pcap", None, http_peers, 10, 5_000
        )
    finally:
        tcpdump.kill()
        tcpdump.wait(10)
        for pipe in (tcpdump.stdout, tcpdump.stderr):
            if pipe is not None:
                pipe.close()
    sent = sent_streams(results)
    await rec.wait_for(10, 10)
    assert sorted(rec.flows) == sent
    assert stats.error is None
    assert source.linktype in (113, 276)


def test_packet_captured_in_a_fresh_namespace() -> None:
    """Foundation smoke test: a raw socket in a namespace made for this test sees a SYN there."""
    with netns() as ns:
        source = RawSocketSource(9, interface="lo", netns=ns)
        server = run_in_netns(ns, lambda: socket.create_server(("127.0.0.1", 9)))
        client = run_in_netns(ns, lambda: socket.socket())
        try:
            client.connect(("127.0.0.1", 9))
            stop = threading.Event()
            records = next(b for b in source.batches(stop) if b)
        finally:
            client.close()
            server.close()
            source.close()
    assert records[0].data[9] == 6  # IPv4 protocol: TCP
    assert int.from_bytes(records[0].data[22:24], "big") == 9


def test_kernel_filter_keeps_only_the_port_and_one_copy_of_each_lo_frame() -> None:
    """Traffic to port 9 and to port 10 on ``lo`` of a fresh namespace: the attached BPF
    program (the real kernel, not the unit test's interpreter) passes only port 9, once."""
    with netns() as ns:
        source = RawSocketSource(9, interface="lo", netns=ns)
        assert source.kernel_filter
        servers = [
            run_in_netns(ns, functools.partial(socket.create_server, ("127.0.0.1", p)))
            for p in (9, 10)
        ]
        clients: list[socket.socket] = []
        records: list[Record] = []
        try:
            for port in (10, 9, 10):
                client = run_in_netns(ns, socket.socket)
                clients.append(client)
                client.connect(("127.0.0.1", port))
                client.sendall(bytes([port]) * 90)
            stop = threading.Event()
            for batch in itertools.islice(source.batches(stop), 20):  # 100 ms polls: 2 s at most
                records += batch
                if any(payload(r) for r in records):
                    break
        finally:
            for s in [*clients, *servers]:
                s.close()
            source.close()
    assert records
    assert all(9 in (int.from_bytes(r.data[20:22]), int.from_bytes(r.data[22:24])) for r in records)
    assert len({r.data for r in records}) == len(records), "a frame was seen twice on lo"
    assert [payload(r) for r in records if payload(r)] == [b"\x09" * 90]


def payload(record: Record) -> bytes:
    seg = parse_ip(0.0, record.data)
    assert seg is not None
    return bytes(seg.payload)


def test_frames_carry_the_kernel_receive_time_not_the_read_time() -> None:
    """Two segments sent 0.3 s apart, read together 0.3 s after the second: their pcap
    timestamps are 0.3 s apart (the kernel's receive times), not equal (the read time)."""
    with netns() as ns:
        source = RawSocketSource(9, interface="lo", netns=ns)
        server = run_in_netns(ns, functools.partial(socket.create_server, ("127.0.0.1", 9)))
        client = run_in_netns(ns, socket.socket)
        records: list[Record] = []
        try:
            client.connect(("127.0.0.1", 9))
            conn, _ = server.accept()
            client.sendall(b"first")
            time.sleep(0.3)
            sent_second = time.time()
            client.sendall(b"second")
            time.sleep(0.3)
            stop = threading.Event()
            for batch in itertools.islice(source.batches(stop), 20):  # 100 ms polls: 2 s at most
                records += batch
                if any(payload(r) == b"second" for r in records):
                    break
            conn.close()
        finally:
            client.close()
            server.close()
            source.close()
    stamps = {payload(r): r.ts for r in records if payload(r)}
    assert 0.2 < stamps[b"second"] - stamps[b"first"] < 0.6, stamps
    assert abs(stamps[b"second"] - sent_second) < 0.1, (stamps, sent_second)


async def test_busy_replay_leg_drops_at_the_handoff_but_pcap_output_keeps_every_packet(
    tmp_path: Path,
) -> None:
    """The event loop (the replay leg) stalls for 0.5 s on its first wake-up while the
    capture thread reads 3000 packets: the bounded handoff (100 packets) drops and counts
    what does not fit, and the pcap output still gets all 3000 packets."""
    crafted_segments = [crafted(1, flags=SYN)]
    crafted_segments += [crafted(2 + 10 * i, b"x" * 10) for i in range(2999)]
    source_file = tmp_path / "in.pcap"
    source_file.write_bytes(pcap_bytes(crafted_segments))
    stalled: list[bool] = []

    def stall_once(stats: MirrorStats) -> None:
        if not stalled:
            stalled.append(True)
            time.sleep(0.5)  # a busy event loop, on purpose

    fd = os.open(source_file, os.O_RDONLY)
    source = StreamSource(lambda: os.read(fd, 4096), close=lambda: os.close(fd))
    out = tmp_path / "out.pcap"
    with out.open("wb") as output:
        async with asyncio.timeout(30):
            stats = await mirror(
                source, 80, None, output, max_pending_packets=100, on_progress=stall_once
            )
    assert stats.packets == 3000
    assert stats.handoff_dropped > 0
    assert stats.error is None
    decoder = PcapDecoder()
    assert len(decoder.feed(out.read_bytes())) == 3000
    decoder.finish()
