"""Nothing lost silently: snap-length cuts counted, the pcap output replaced only once up."""

from __future__ import annotations

import argparse
import asyncio
import os
import stat
import threading
from pathlib import Path

import pytest

from pymirror.commands.mirror import Interrupts
from pymirror.commands.replay import _speed
from tests.support.crafting import KEY, ethernet, ipv4_tcp, pcap_bytes, seg
from traffic.outputs import PcapOutput, same_file
from traffic.packets import ACK, FIN, LINKTYPE_ETHERNET, SYN, tcp_ports_at
from traffic.playback import PlaybackStats, play
from traffic.reassembly import Data, FlowStarted
from traffic.replaying import Replayer, ReplayStats
from traffic.targets import ReplayTarget

pytestmark = pytest.mark.unit

BODY = b"POST /x HTTP/1.1\r\nContent-Length: 400\r\n\r\n" + b"b" * 400


def cut_capture(path: Path, snaplen: int) -> None:
    path.write_bytes(
        pcap_bytes(
            [seg(1, flags=SYN), seg(2, BODY), seg(2 + len(BODY), flags=FIN | ACK)],
            snaplen=snaplen,
        )
    )


async def test_a_packet_cut_by_the_snap_length_is_counted_with_the_bytes_never_captured(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cut.pcap"
    cut_capture(path, 128)
    stats = await play(path, None, speed=None)
    frame = 14 + 20 + 20 + len(BODY)
    assert (stats.truncated_packets, stats.truncated_bytes) == (1, frame - 128)
    assert stats.replay.bytes_sent == 0
    what = stats.undelivered()
    assert what is not None
    assert "1 packets were cut short by the capture's snap length" in what


async def test_a_capture_with_a_snap_length_above_every_packet_loses_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "whole.pcap"
    cut_capture(path, 65535)
    stats = await play(path, None, speed=None)
    assert stats.truncated_packets == 0
    assert stats.replay.bytes_sent == len(BODY)
    assert stats.undelivered() is None


def test_the_ports_of_a_cut_frame_are_read_from_its_headers() -> None:
    frame = ethernet(ipv4_tcp(KEY, 1, ACK, b"x" * 1000))[:60]
    assert tcp_ports_at(LINKTYPE_ETHERNET, frame, 0, len(frame)) == (KEY.sport, KEY.dport)
    assert tcp_ports_at(LINKTYPE_ETHERNET, frame, 0, 14 + 20 + 2) is None


def test_dropped_flows_and_errors_are_undelivered_but_filtered_requests_are_not() -> None:
    filtered = PlaybackStats(requests_filtered=3, replay=ReplayStats(flows=1, bytes_sent=9))
    assert filtered.undelivered() is None
    dropped = PlaybackStats(replay=ReplayStats(flows=2, bytes_dropped=70, flows_dropped=1))
    dropped.replay.reasons["write deadline: the target stopped reading"] += 1
    assert dropped.undelivered() == (
        "70 bytes in 1 flows were dropped (write deadline: the target stopped reading: 1)"
    )
    failed = PlaybackStats(replay=ReplayStats(errors=2))
    assert failed.undelivered() == "2 flows failed with an error"


def test_an_output_that_never_comes_up_leaves_the_existing_file_and_no_temporary(
    tmp_path: Path,
) -> None:
    path = tmp_path / "precious.pcap"
    path.write_bytes(b"precious")
    with PcapOutput(path) as output:
        output.stream.write(b"new capture")
    assert path.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.pcap"]


def test_a_committed_output_replaces_the_file_and_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "capture.pcap"
    path.write_bytes(b"old")
    path.chmod(0o640)
    with PcapOutput(path) as output:
        output.stream.write(b"header")
        output.stream.flush()
        output.commit()
        assert path.read_bytes() == b"header"  # readable at its name while it grows
        output.stream.write(b" and records")
    assert path.read_bytes() == b"header and records"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["capture.pcap"]


def test_a_special_file_output_is_written_in_place_not_replaced() -> None:
    with PcapOutput("/dev/null") as output:
        assert output.committed
        output.stream.write(b"x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_same_file_sees_through_links_and_spellings(tmp_path: Path) -> None:
    path = tmp_path / "in.pcap"
    path.write_bytes(b"x")
    link = tmp_path / "link.pcap"
    link.symlink_to(path)
    assert same_file(path, link)
    assert same_file(path, f"{tmp_path}/./in.pcap")
    assert not same_file(path, tmp_path / "absent.pcap")
    assert not same_file("/dev/null", "/dev/null")  # not a regular file: nothing to wipe


def test_a_second_interrupt_exits_at_once_and_removes_an_output_never_committed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.pcap"
    stop = threading.Event()
    codes: list[int] = []
    with PcapOutput(path) as output:
        interrupts = Interrupts(stop, output, exit_now=codes.append)
        interrupts()
        assert stop.is_set()
        assert codes == []
        assert len(list(tmp_path.iterdir())) == 1  # the temporary file, still there
        interrupts()
        assert codes == [130]
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "0", "-1"])
def test_a_speed_that_is_not_a_positive_finite_number_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _speed(text)


async def test_abandoning_a_flow_whose_task_never_ran_counts_its_bytes_and_does_not_hang() -> None:
    """Ctrl-C in the loop turn that started a flow: its task is cancelled before its first
    step (no connection is ever tried); the replayer still closes, with the bytes counted."""
    replayer = Replayer(ReplayTarget("127.0.0.1", 9))
    async with asyncio.timeout(30):  # a hang, not slowness, is what this bound catches
        async with replayer:
            replayer.handle([FlowStarted(KEY, 1.0, False), Data(KEY, 1.0, b"x" * 100)])
            replayer.abandon("stopped (Ctrl-C) with bytes unsent")
            later = FlowStarted(KEY._replace(sport=1), 1.0, False)
            replayer.handle([Data(KEY, 1.0, b"y" * 10), later])
    stats = replayer.stats
    assert (stats.flows, stats.flows_dropped, stats.bytes_dropped) == (2, 2, 110)
    assert stats.reasons == {"stopped (Ctrl-C) with bytes unsent": 2}
    assert len(replayer) == 0


async def test_every_flush_due_on_a_turn_runs_from_one_callback_even_past_a_failing_one() -> None:
    """The replayer flushes all the turn's sinks from one callback: in the order they were
    scheduled, on the next turn, and one that raises is reported as a failed callback would
    be without keeping the later ones from writing."""
    ran: list[str] = []

    class Sink:
        scheduled = False

        def __init__(self, name: str) -> None:
            self.name = name

        def flush(self) -> None:
            self.scheduled = False
            ran.append(self.name)
            if self.name == "b":
                raise RuntimeError("boom")

    loop = asyncio.get_running_loop()
    errors: list[BaseException] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))
    try:
        async with Replayer(None) as replayer:
            sinks = [Sink(name) for name in "abc"]
            for sink in sinks:
                replayer.schedule_flush(sink)  # type: ignore[arg-type]
            assert all(sink.scheduled for sink in sinks)
            assert ran == []
            await asyncio.sleep(0)
            assert ran == ["a", "b", "c"]
            assert not any(sink.scheduled for sink in sinks)
    finally:
        loop.set_exception_handler(None)
    assert [str(e) for e in errors] == ["boom"]
