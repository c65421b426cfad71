"""`pymirror mirror` and `pymirror replay` never lose a user's data or time silently.

Subprocesses as a user runs them: an existing --output survives a capture that cannot
start, Ctrl-C does not wait for a stalled --to, and a replay that did not deliver
everything says so in its summary and its exit status.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.traffic.conftest import ROOT, Recorder, require_root_tools
from tests.integration.traffic.test_commands import PYMIRROR
from tests.support.crafting import KEY, pcap_bytes, seg
from traffic.packets import ACK, FIN, SYN
from traffic.targets import ReplayTarget

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PRECIOUS = b"an earlier capture the user wants to keep\n" * 100


def big_flow(size: int, chunk: int = 16 << 10) -> bytes:
    """One client connection carrying ``size`` bytes in ``chunk``-byte segments, no FIN."""
    body = bytes(range(256)) * (size // 256)
    segments = [seg(1, flags=SYN)]
    segments += [seg(2 + i, body[i : i + chunk]) for i in range(0, len(body), chunk)]
    return pcap_bytes(segments)


@pytest.fixture
def never_reads() -> Iterator[socket.socket]:
    """A --to listener whose connections are accepted by the kernel and never read."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no room to hide bytes in
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield listener
    finally:
        listener.close()


def unread_bytes(conn: socket.socket) -> int:
    return int(struct.unpack("i", fcntl.ioctl(conn, termios.FIONREAD, b"\0\0\0\0"))[0])


async def until_bytes_arrive(listener: socket.socket) -> list[socket.socket]:
    """Accept --to connections until one holds unread bytes (polled every 50 ms)."""
    listener.setblocking(False)
    conns: list[socket.socket] = []
    async with asyncio.timeout(60):
        while not any(unread_bytes(c) for c in conns):
            try:
                conns.append(listener.accept()[0])
            except BlockingIOError:
                await asyncio.sleep(0.05)
    return conns


# 20. A capture that cannot start leaves an existing --output as it was.


@pytest.mark.parametrize("target", ["netns:pm-absent-ns", "iface:nosuch0", "pcap:NOTAPCAP"])
def test_a_capture_that_cannot_start_leaves_an_existing_output_file_as_it_was(
    tmp_path: Path, target: str
) -> None:
    if target.startswith("iface:"):
        require_root_tools()  # fails on the interface, not on the permission to capture
    precious = tmp_path / "precious.pcap"
    precious.write_bytes(PRECIOUS)
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"GET / HTTP/1.1\r\n" * 4)
    target = target.replace("NOTAPCAP", str(notes))
    result = subprocess.run(
        [*PYMIRROR, "mirror", target, "--port", "80", "--output", str(precious)],
        capture_output=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    error = result.stderr.splitlines()[-1]  # a pcap input is found bad after its summary
    assert error.startswith((b"CaptureError: ", b"PcapError: ")), result.stderr
    assert precious.read_bytes() == PRECIOUS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "precious.pcap"]


@pytest.mark.parametrize("spelling", ["same", "symlink", "dotted", "stdin"])
def test_writing_a_capture_over_its_own_pcap_input_is_a_usage_error(
    tmp_path: Path, spelling: str
) -> None:
    source = tmp_path / "in.pcap"
    data = pcap_bytes([seg(1, flags=SYN), seg(2, b"GET / HTTP/1.1\r\n\r\n")])
    source.write_bytes(data)
    (tmp_path / "link.pcap").symlink_to(source)
    output = {
        "same": str(source),
        "symlink": str(tmp_path / "link.pcap"),
        "dotted": f"{tmp_path}/./in.pcap",
        "stdin": str(source),
    }[spelling]
    target = "pcap:-" if spelling == "stdin" else f"pcap:{source}"
    with source.open("rb") as stdin:
        result = subprocess.run(
            [*PYMIRROR, "mirror", target, "--port", "80", "--output", output],
            stdin=stdin, capture_output=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(b"UsageError: --output "), result.stderr
    assert b"own input" in result.stderr
    assert source.read_bytes() == data


def test_a_capture_that_starts_replaces_the_existing_output_file_keeping_its_mode(
    tmp_path: Path,
) -> None:
    source, out = tmp_path / "in.pcap", tmp_path / "out.pcap"
    source.write_bytes(pcap_bytes([seg(1 + i, b"x") for i in range(4)]))
    out.write_bytes(PRECIOUS)
    out.chmod(0o640)
    result = subprocess.run(
        [*PYMIRROR, "mirror", f"pcap:{source}", "--port", "80", "--output", str(out)],
        capture_output=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == source.read_bytes()  # same header and records
    assert out.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.pcap", "out.pcap"]


def test_mirror_of_a_pcap_cut_by_its_snap_length_counts_the_cut_packets(tmp_path: Path) -> None:
    """A capture taken with ``-s 100``: the request packet is cut (its body never saved).
    ``mirror pcap:FILE`` counts it and the bytes lost, in the summary and in ``--json``."""
    body = b"POST /x HTTP/1.1\r\nContent-Length: 400\r\n\r\n" + b"b" * 400
    source = tmp_path / "cut.pcap"
    segments = [seg(1, flags=SYN), seg(2, body), seg(2 + len(body), flags=FIN | ACK)]
    source.write_bytes(pcap_bytes(segments, snaplen=100))
    frame = 14 + 20 + 20 + len(body)
    for extra in ([], ["--json"]):
        result = subprocess.run(
            [*PYMIRROR, "mirror", f"pcap:{source}", "--port", "80", "-o", str(tmp_path / "o.pcap"),
             *extra],
            capture_output=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        if extra:
            summary = json.loads(result.stderr.splitlines()[-1])
            assert (summary["truncated_packets"], summary["truncated_bytes"]) == (1, frame - 100)
        else:
            assert (
                f"truncated  1 packets cut short by the capture's snap length "
                f"({frame - 100} bytes never captured".encode()
            ) in result.stderr


# 21. Ctrl-C on mirror with a stalled --to exits without waiting for the write deadline.


async def test_ctrl_c_on_mirror_with_a_stalled_to_exits_at_once_counting_the_abandoned_bytes(
    tmp_path: Path, never_reads: socket.socket
) -> None:
    """A pcap stream delivers one 2 MB client connection and stays open; --to accepts and
    never reads, so the replay write stalls. The write deadline is 120 s: after SIGINT the
    process exits well before it (bounded at 60 s), with exit 0 and a summary that counts
    the unsent bytes as abandoned at Ctrl-C (not as dropped by a deadline)."""
    read_end, write_end = os.pipe()
    pcap = big_flow(2 << 20)
    env = {**os.environ, "PYMIRROR_TRAFFIC__WRITE_TIMEOUT": "120"}
    port = never_reads.getsockname()[1]
    try:
        proc = await asyncio.create_subprocess_exec(
            *PYMIRROR, "--log-format", "json", "mirror", "pcap:-", "--port", "80",
            "--to", f"127.0.0.1:{port}", "--output", str(tmp_path / "out.pcap"),
            stdin=read_end, stderr=subprocess.PIPE, cwd=ROOT, env=env,
        )  # fmt: skip
        assert proc.stderr is not None
        writer = asyncio.ensure_future(asyncio.to_thread(os.write, write_end, pcap))
        conns = await until_bytes_arrive(never_reads)
        await writer  # the whole pcap is in the pipe: the stall is in the replay leg
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):  # well before the 120 s write deadline
            stderr = await proc.stderr.read()
            assert await proc.wait() == 0, stderr
    finally:
        os.close(read_end)
        os.close(write_end)
    for conn in conns:
        conn.close()
    summary = dict(
        line.split(maxsplit=1) for line in stderr.decode().splitlines() if line[:1].isalpha()
    )
    dropped_bytes = int(summary["dropped"].split()[0])
    assert dropped_bytes > 1 << 20  # at most the socket buffers' worth was delivered
    assert "stopped (Ctrl-C) with bytes unsent: 1" in summary["reasons"], stderr
    assert "write deadline" not in summary["reasons"]


# 22. replay says what it did not deliver, and exits 1; Ctrl-C prints the summary.


async def test_replaying_a_capture_cut_by_its_snap_length_reports_the_cut_and_exits_1(
    tmp_path: Path, recorder: tuple[Recorder, ReplayTarget]
) -> None:
    """`tcpdump -s 128`: the request's record keeps 128 of its bytes. Nothing of it can be
    replayed; the summary counts the cut packet and the exit status is 1."""
    rec, target = recorder
    body = b"POST /orders HTTP/1.1\r\nContent-Length: 500\r\n\r\n" + b"o" * 500
    path = tmp_path / "cut.pcap"
    path.write_bytes(
        pcap_bytes(
            [seg(1, flags=SYN), seg(2, body), seg(2 + len(body), flags=FIN | ACK)], snaplen=128
        )
    )
    proc = await asyncio.create_subprocess_exec(
        *PYMIRROR, "replay", str(path), "--to", str(target), "--speed", "max",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 1, (out, err)
    assert b"truncated 1 packets cut short by the capture" in out
    assert err.startswith(b"ReplayIncompleteError: not everything in "), err
    assert b"1 packets were cut short by the capture's snap length" in err
    assert rec.flows == []


async def test_replaying_to_a_target_that_never_reads_reports_the_dropped_flow_and_exits_1(
    tmp_path: Path, never_reads: socket.socket
) -> None:
    """3 MB in one connection to a --to that never reads: the write deadline (0.5 s) drops
    the flow; the summary counts it and the exit status is 1 with the reason."""
    path = tmp_path / "big.pcap"
    path.write_bytes(big_flow(3 << 20))
    env = {
        **os.environ,
        "PYMIRROR_TRAFFIC__WRITE_TIMEOUT": "0.5",
        "PYMIRROR_TRAFFIC__FLOW_BACKLOG_BYTES": str(256 << 10),
    }
    port = never_reads.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        *PYMIRROR, "replay", str(path), "--to", f"127.0.0.1:{port}", "--speed", "max",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 1, (out, err)
    assert err.startswith(b"ReplayIncompleteError: not everything in "), err
    assert b"in 1 flows were dropped" in err
    dropped = next(line for line in out.splitlines() if line.startswith(b"dropped"))
    assert int(dropped.split()[1]) > 0


async def test_ctrl_c_on_replay_prints_the_summary_and_exits_130(
    tmp_path: Path, recorder: tuple[Recorder, ReplayTarget]
) -> None:
    """The second connection of the capture starts a day after the first, at --speed 1:
    once the first has reached the target, SIGINT stops the wait; the summary is printed."""
    rec, target = recorder
    body = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
    later = KEY._replace(sport=40001)
    path = tmp_path / "slow.pcap"
    path.write_bytes(
        pcap_bytes(
            [seg(1, flags=SYN), seg(2, body), seg(2 + len(body), flags=FIN | ACK),
             seg(9, flags=SYN, key=later, ts=86_400.0),
             seg(10, b"GET /later HTTP/1.1\r\n\r\n", key=later, ts=86_400.0)]
        )
    )  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *PYMIRROR, "replay", str(path), "--to", str(target),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    await rec.wait_for(1, 60)
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 130, (out, err)
    assert b"flows     1 (1 completed)" in out
    assert b"stopped   by Ctrl-C before the end of the capture" in out
    assert b"replay interrupted (Ctrl-C)" in err
    assert rec.flows == [body]


async def test_replay_opens_no_extra_connection_to_check_the_target(
    tmp_path: Path, recorder: tuple[Recorder, ReplayTarget]
) -> None:
    """The --to check's connection carries the capture's one client connection: the target
    sees exactly one connection, with the captured bytes."""
    rec, target = recorder
    body = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    path = tmp_path / "one.pcap"
    path.write_bytes(
        pcap_bytes([seg(1, flags=SYN), seg(2, body), seg(2 + len(body), flags=FIN | ACK)])
    )
    result = await asyncio.create_subprocess_exec(
        *PYMIRROR, "replay", str(path), "--to", str(target), "--speed", "max",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await result.communicate()
    assert result.returncode == 0, (out, err)
    await rec.wait_for(1, 30)
    assert rec.flows == [body]
    assert rec.connections == 1


async def test_replaying_an_unreadable_file_fails_before_the_target_sees_a_connection(
    tmp_path: Path, recorder: tuple[Recorder, ReplayTarget]
) -> None:
    rec, target = recorder
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"GET / HTTP/1.1\r\n" * 4)
    for port in ([], ["--port", "80"]):
        proc = await asyncio.create_subprocess_exec(
            *PYMIRROR, "replay", str(notes), "--to", str(target), *port,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        async with asyncio.timeout(60):
            _out, err = await proc.communicate()
        assert proc.returncode == 1
        assert err.startswith(b"PcapError: not a pcap file"), err
    assert rec.connections == 0
