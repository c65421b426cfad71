"""Smoke: tcpdump captures a packet in a network namespace the test creates and removes."""

from __future__ import annotations

import io
from pathlib import Path

import dpkt
import pytest

from tests.servers.capture import capture_udp, namespaces, netns
from tests.servers.process import ServerError, free_port

pytestmark = pytest.mark.integration


def test_a_datagram_in_a_fresh_namespace_is_captured_and_the_namespace_is_removed(
    tcpdump_bin: Path, unique_name: str
) -> None:
    """1. Create a namespace; 2. tcpdump on its lo while a sender there repeats one UDP
    datagram; 3. the pcap holds exactly that datagram; 4. the namespace is gone afterwards."""
    port, payload = free_port(), f"pymirror-{unique_name}".encode()
    with netns() as ns:
        assert ns in namespaces()
        pcap = capture_udp(ns, port, payload, tcpdump_bin)
    assert ns not in namespaces()

    reader = dpkt.pcap.Reader(io.BytesIO(pcap))
    assert reader.datalink() == dpkt.pcap.DLT_EN10MB  # lo frames carry a zeroed Ethernet header
    ((_ts, frame),) = list(reader)
    ip = dpkt.ethernet.Ethernet(frame).data
    assert isinstance(ip, dpkt.ip.IP)
    udp = ip.data
    assert isinstance(udp, dpkt.udp.UDP)
    assert (udp.dport, bytes(udp.data)) == (port, payload)


def test_a_failing_tcpdump_fails_with_a_message_naming_it(fresh_netns: str, tmp_path: Path) -> None:
    broken = tmp_path / "tcpdump"
    broken.write_text("#!/bin/sh\necho 'tcpdump: lo: You do not have permission' >&2\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(ServerError, match=r"tcpdump \(pid \d+\) failed \(1\).*permission"):
        capture_udp(fresh_netns, free_port(), b"x", broken, timeout=5)


def test_a_tcpdump_killed_mid_capture_fails_with_a_message_naming_it(
    fresh_netns: str, tmp_path: Path
) -> None:
    """A tcpdump that announces it is listening and then dies of SIGKILL (never capturing)."""
    dying = tmp_path / "tcpdump"
    dying.write_text("#!/bin/sh\necho 'listening on lo' >&2\nkill -9 $$\n")
    dying.chmod(0o755)
    with pytest.raises(ServerError, match=r"tcpdump \(pid \d+\) failed \(-9\)"):
        capture_udp(fresh_netns, free_port(), b"x", dying, timeout=5)
