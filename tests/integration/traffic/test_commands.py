"""``pymirror mirror`` and ``pymirror replay`` as a user runs them (subprocesses, as root)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.traffic.conftest import ROOT, HttpPeers, Recorder, require_root_tools
from tests.integration.traffic.netns import netns
from tests.support.crafting import KEY, pcap_bytes, seg
from traffic.packets import ACK, FIN, SYN
from traffic.pcaps import PcapDecoder
from traffic.playback import segments
from traffic.reassembly import Data, Reassembler
from traffic.targets import ReplayTarget

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PYMIRROR = [sys.executable, "-m", "pymirror"]


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def test_bad_to_fails_before_any_capture_starts() -> None:
    """The namespace does not exist either: the TargetError proves --to is checked first."""
    argv = [*PYMIRROR, "mirror", "netns:pm-absent-ns", "--port", "80", "--to"]
    unreachable = subprocess.run(
        [*argv, f"127.0.0.1:{closed_port()}"], capture_output=True, timeout=30, cwd=ROOT
    )
    malformed = subprocess.run([*argv, "localhost"], capture_output=True, timeout=30, cwd=ROOT)
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith(b"TargetError: --to 127.0.0.1:"), unreachable.stderr
    assert malformed.returncode == 1
    assert malformed.stderr.startswith(b"TargetError: --to 'localhost'"), malformed.stderr


def test_capture_without_permission_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        # Root without any capability: it still reads the checkout wherever it lies (a
        # clone in a 0700 temp dir is unreadable to another user), but cannot capture.
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all",
         *PYMIRROR, "mirror", "lo", "--port", "80", "--output", "/dev/null"],
        capture_output=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(b"CapturePermissionError: capturing packets needs root")


async def test_mirror_command_streams_pcap_to_stdout_replays_and_stops_on_sigint(
    http_peers: HttpPeers, recorder: tuple[Recorder, ReplayTarget]
) -> None:
    """Start `pymirror mirror netns:SERVER --to ... --output -`, wait for "capture started",
    run 5 clients, send SIGINT: exit 0, a pcap on stdout, a summary on stderr, and 5 flows
    byte-exact at the target."""
    rec, target = recorder
    proc = await asyncio.create_subprocess_exec(
        *PYMIRROR, "--log-format", "json", "mirror", f"netns:{http_peers.pair.server}",
        "--port", str(http_peers.port), "--to", str(target), "--output", "-",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        while b"capture started" not in (line := await proc.stderr.readline()):
            assert line, "pymirror mirror exited before capturing"
    pcap_task = asyncio.ensure_future(proc.stdout.read())
    clients = await asyncio.create_subprocess_exec(
        *http_peers.client_argv(5, 3000), stdout=subprocess.PIPE, cwd=ROOT
    )
    out, _ = await asyncio.wait_for(clients.communicate(), 60)
    results = json.loads(out)
    await rec.wait_for(5, 15)
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        stderr = await proc.stderr.read()
        pcap = await pcap_task
        assert await proc.wait() == 0, stderr
    assert sorted(rec.flows) == sorted(bytes.fromhex(r["sent"]) for r in results)
    assert rec.connections == 5  # the --to check's connection carried the first flow
    assert all(all(r["ok"]) for r in results)
    decoder = PcapDecoder()
    assert len(decoder.feed(pcap)) > 5 * 10
    decoder.finish()
    assert b"flows      5 (5 completed)" in stderr
    assert b"dropped    0 bytes, 0 flows" in stderr


def test_replay_command_dry_run_prints_a_json_summary(tmp_path: Path) -> None:
    path = tmp_path / "c.pcap"
    body = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    path.write_bytes(
        pcap_bytes([seg(1, flags=SYN), seg(2, body), seg(2 + len(body), flags=FIN | ACK)])
    )
    result = subprocess.run(
        [*PYMIRROR, "replay", str(path), "--dry-run", "--speed", "max", "--loop", "2", "--json"],
        capture_output=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["flows"], summary["bytes_sent"], summary["passes"]) == (2, 2 * len(body), 2)
    assert KEY.dport == 80


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--speed", "0", "--dry-run"], 2, b"--speed"),
        (["--speed", "nan", "--dry-run"], 2, b"--speed"),
        (["--speed", "inf", "--dry-run"], 2, b"--speed"),
        ([], 2, b"UsageError: give --to HOST:PORT"),
        (["--dry-run", "--http-path", "(x"], 1, b"HttpFilterError: --http-path"),
    ],
)
def test_replay_command_usage_errors(
    tmp_path: Path, extra: list[str], code: int, message: bytes
) -> None:
    path = tmp_path / "c.pcap"
    path.write_bytes(pcap_bytes([seg(1, flags=SYN)]))
    result = subprocess.run(
        [*PYMIRROR, "replay", str(path), *extra], capture_output=True, timeout=30, cwd=ROOT
    )
    assert result.returncode == code
    assert message in result.stderr


def test_pod_target_with_bad_to_fails_before_touching_the_cluster(tmp_path: Path) -> None:
    """Reaching the cluster would fail with ClusterCaptureError (the kubeconfig does not
    exist); getting TargetError instead proves --to is checked before any injection."""
    result = subprocess.run(
        [*PYMIRROR, "mirror", "pod:shop/api-0", "--port", "80",
         "--kubeconfig", str(tmp_path / "absent-kubeconfig"),
         "--to", f"127.0.0.1:{closed_port()}"],
        capture_output=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(b"TargetError: --to 127.0.0.1:"), result.stderr


async def test_replay_command_on_truncated_pcap_replays_the_rest_then_reports_the_cut(
    tmp_path: Path, recorder: tuple[Recorder, ReplayTarget]
) -> None:
    rec, target = recorder
    body = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    other = KEY._replace(sport=40001)
    path = tmp_path / "cut.pcap"
    data = pcap_bytes(
        [seg(1, flags=SYN), seg(2, body), seg(2 + len(body), flags=FIN | ACK),
         seg(9, flags=SYN, key=other), seg(10, b"GET /b HTTP/1.1\r\n\r\n", key=other)]
    )  # fmt: skip
    path.write_bytes(data[:-5])
    proc = await asyncio.create_subprocess_exec(
        *PYMIRROR, "replay", str(path), "--to", str(target), "--speed", "max",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 1
    assert b"flows     2 (" in out  # the summary comes first
    assert err.startswith(b"PcapTruncatedError: the pcap is truncated"), err
    await rec.wait_for(1, 5)
    assert rec.flows == [body]


def test_replay_command_on_unreadable_file_is_a_pcap_error(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.txt"
    garbage.write_bytes(b"GET / HTTP/1.1\r\n" * 4)
    short = tmp_path / "short.txt"
    short.write_bytes(b"GET / HTTP/1.1\n")
    for path, message in [
        (tmp_path / "absent.pcap", b"PcapError: cannot read "),
        (garbage, b"PcapError: not a pcap file"),
        (short, b"PcapError: not a pcap file"),
    ]:
        result = subprocess.run(
            [*PYMIRROR, "replay", str(path), "--dry-run"],
            capture_output=True, timeout=30, cwd=ROOT,
        )  # fmt: skip
        assert result.returncode == 1
        assert result.stderr.startswith(message), result.stderr


async def test_mirror_command_with_a_to_that_never_reads_drops_and_exits_cleanly(
    http_peers: HttpPeers, tmp_path: Path
) -> None:
    """1. A --to listener accepts connections (kernel backlog) but its process never reads.
    2. `pymirror mirror netns:SERVER --to it --output FILE` runs while 6 clients each POST
       ~600 KB; the replay leg hits its 256 KiB backlog bound or its 1 s write deadline.
    3. The original clients still get every response; SIGINT; the process exits 0 within the
       drain deadline; the summary counts the dropped bytes and flows; the pcap file holds
       every byte the clients sent."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no room to hide bytes in
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    env = {
        **os.environ,
        "PYMIRROR_TRAFFIC__WRITE_TIMEOUT": "1",
        "PYMIRROR_TRAFFIC__FLOW_BACKLOG_BYTES": str(256 << 10),
    }
    pcap = tmp_path / "cap.pcap"
    try:
        proc = await asyncio.create_subprocess_exec(
            *PYMIRROR, "--log-format", "json", "mirror", f"netns:{http_peers.pair.server}",
            "--port", str(http_peers.port), "--to", f"127.0.0.1:{port}", "--output", str(pcap),
            stderr=subprocess.PIPE, cwd=ROOT, env=env,
        )  # fmt: skip
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            while b"capture started" not in (line := await proc.stderr.readline()):
                assert line, "pymirror mirror exited before capturing"
        clients = await asyncio.create_subprocess_exec(
            *http_peers.client_argv(6, 200_000), stdout=subprocess.PIPE, cwd=ROOT
        )
        out, _ = await asyncio.wait_for(clients.communicate(), 60)
        await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            stderr = await proc.stderr.read()
            assert await proc.wait() == 0, stderr
    finally:
        listener.close()
    results = json.loads(out)
    assert all(all(r["ok"]) for r in results)
    sent = sorted(bytes.fromhex(r["sent"]) for r in results)
    summary = dict(
        line.split(maxsplit=1) for line in stderr.decode().splitlines() if line[:1].isalpha()
    )
    dropped_bytes = int(summary["dropped"].split()[0])
    dropped_flows = int(summary["dropped"].split(", ")[1].split()[0])
    assert dropped_bytes > 0
    assert dropped_flows >= 1
    assert "0 dropped by the kernel" in summary["captured"]
    assert pcap_client_streams(pcap, http_peers.port) == sent


def pcap_client_streams(path: Path, port: int) -> list[bytes]:
    flows: dict[object, bytearray] = {}
    r = Reassembler()
    for s in segments(path):
        if s.key.dport == port:
            for event in r.feed(s):
                if isinstance(event, Data):
                    flows.setdefault(event.key, bytearray()).extend(event.data)
    return sorted(bytes(b) for b in flows.values())


def test_mirror_command_stops_after_count_packets_and_after_duration(tmp_path: Path) -> None:
    """--count cuts a pcap stream after N packets; --duration ends a quiet live capture."""
    source, out = tmp_path / "in.pcap", tmp_path / "out.pcap"
    source.write_bytes(pcap_bytes([seg(1 + i, b"x") for i in range(10)]))
    counted = subprocess.run(
        [*PYMIRROR, "mirror", f"pcap:{source}", "--port", "80", "--count", "3", "-o", str(out)],
        capture_output=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert counted.returncode == 0, counted.stderr
    decoder = PcapDecoder()
    assert len(decoder.feed(out.read_bytes())) == 3
    require_root_tools()
    with netns() as ns:
        timed = subprocess.run(
            [*PYMIRROR, "mirror", f"netns:{ns}", "--port", "80", "--duration", "0.5",
             "--output", str(out), "--json"],
            capture_output=True, timeout=30, cwd=ROOT,
        )  # fmt: skip
    assert timed.returncode == 0, timed.stderr
    assert json.loads(timed.stderr.splitlines()[-1])["packets"] == 0
    assert len(out.read_bytes()) == 24  # a pcap global header and nothing else


async def test_ctrl_c_stops_an_idle_pcap_stream_promptly(tmp_path: Path) -> None:
    """`pymirror mirror pcap:-` reads a pipe that stays open and silent after its header
    (tcpdump with no traffic): SIGINT ends it within a couple of seconds, exit 0."""
    read_end, write_end = os.pipe()
    os.write(write_end, pcap_bytes([seg(1, flags=SYN)]))
    try:
        proc = await asyncio.create_subprocess_exec(
            *PYMIRROR, "--log-format", "json", "mirror", "pcap:-", "--port", "80",
            "--output", str(tmp_path / "out.pcap"),
            stdin=read_end, stderr=subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            while b"capture started" not in (line := await proc.stderr.readline()):
                assert line, "pymirror mirror exited before capturing"
        await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(30):
            stderr = await proc.stderr.read()
            assert await proc.wait() == 0, stderr
        assert asyncio.get_running_loop().time() - started < 3.0
        assert b"captured   1 packets" in stderr
    finally:
        os.close(read_end)
        os.close(write_end)
