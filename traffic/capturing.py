"""Packet sources: a raw ``AF_PACKET`` socket (on an interface, in a namespace) or a pcap stream.

A source yields batches of ``Record``s on the capture thread; ``linktype``
is known once the first batch is out. The raw socket is ``SOCK_DGRAM`` (the
kernel strips link headers), so frames are IP packets written as
``LINKTYPE_RAW`` whatever the interface. A classic BPF program attached with
``SO_ATTACH_FILTER`` keeps only TCP to or from the port in the kernel, and on
``lo`` drops the outgoing copy of every frame.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from traffic.errors import CaptureError, CapturePermissionError
from traffic.namespaces import run_in_netns
from traffic.packets import LINKTYPE_RAW
from traffic.pcaps import PcapDecoder, Record

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35  # also SCM_TIMESTAMPNS: the kernel's receive time, struct timespec
_ANCBUF = socket.CMSG_SPACE(16)
_timespec = struct.Struct("qq").unpack_from
_SKF_AD_PKTTYPE = -0x1000 + 4
_BATCH = 512
_BUFSIZE = 262144


class Source(Protocol):
    """Where captured frames come from."""

    linktype: int | None

    def batches(self, stop: threading.Event) -> Iterator[list[Record]]:
        """Yield batches (maybe empty, so ``stop`` is checked) until ``stop`` or the end."""
        ...

    def interrupt(self) -> None:
        """Make a blocked ``batches`` return soon (called from another thread)."""
        ...

    def close(self) -> None:
        """Release the source once ``batches`` has returned."""
        ...

    def kernel_drops(self) -> int:
        """Packets the kernel dropped because the capture fell behind."""
        ...


def _compile(port: int, drop_outgoing: bool) -> list[tuple[int, int, int, int]]:
    """The BPF program as (code, jt, jf, k) tuples, written with labels resolved."""
    ld_b, ld_h, ld_w = 0x30, 0x28, 0x20
    ldx_msh, ld_h_ind = 0xB1, 0x48
    jeq, jset, and_k, ret = 0x15, 0x45, 0x54, 0x06
    labels: dict[str, int] = {}
    body: list[tuple[int, str | int, str | int, int]] = []

    def emit(code: int, jt: str | int = 0, jf: str | int = 0, k: int = 0) -> None:
        body.append((code, jt, jf, k))

    def label(name: str) -> None:
        labels[name] = len(body)

    if drop_outgoing:
        emit(ld_w, k=_SKF_AD_PKTTYPE)
        emit(jeq, "reject", 0, PACKET_OUTGOING)
    emit(ld_b, k=0)
    emit(and_k, k=0xF0)
    emit(jeq, 0, "v6", 0x40)
    emit(ld_b, k=9)
    emit(jeq, 0, "reject", 6)
    emit(ld_h, k=6)
    emit(jset, "reject", 0, 0x1FFF)
    emit(ldx_msh, k=0)
    emit(ld_h_ind, k=0)
    emit(jeq, "accept", 0, port)
    emit(ld_h_ind, k=2)
    emit(jeq, "accept", "reject", port)
    label("v6")
    emit(jeq, 0, "reject", 0x60)
    emit(ld_b, k=6)
    emit(jeq, 0, "reject", 6)
    emit(ld_h, k=40)
    emit(jeq, "accept", 0, port)
    emit(ld_h, k=42)
    emit(jeq, "accept", "reject", port)
    label("accept")
    emit(ret, k=_BUFSIZE)
    label("reject")
    emit(ret, k=0)

    def resolve(at: int, target: str | int) -> int:
        return target if isinstance(target, int) else labels[target] - at - 1

    return [(c, resolve(i, jt), resolve(i, jf), k) for i, (c, jt, jf, k) in enumerate(body)]


def bpf_program(port: int, drop_outgoing: bool) -> bytes:
    """Classic BPF: TCP on ``port`` (IPv4 unfragmented, IPv6 without extension headers).

    Offsets are relative to the network header, as ``SOCK_DGRAM`` packet sockets see it.
    """
    return b"".join(
        struct.pack("HBBI", c, jt, jf, k & 0xFFFFFFFF)
        for c, jt, jf, k in _compile(port, drop_outgoing)
    )


def attach_filter(sock: socket.socket, program: bytes) -> None:
    """Attach a classic BPF program (``SO_ATTACH_FILTER``) to ``sock``."""
    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class RawSocketSource:
    """A ``SOCK_DGRAM`` ``AF_PACKET`` socket on one interface (or all), optionally in a netns."""

    linktype: int | None = LINKTYPE_RAW

    def __init__(self, port: int, interface: str | None = None, netns: str | None = None) -> None:
        self.port = port
        self.interface = interface
        self.netns = netns
        self.kernel_filter = False
        self._sock = run_in_netns(netns, self._open) if netns else self._open()

    def _open(self) -> socket.socket:
        where = f"interface {self.interface!r}" if self.interface else "all interfaces"
        if self.netns:
            where += f" in network namespace {self.netns!r}"
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        except PermissionError as e:
            raise CapturePermissionError(
                "capturing packets needs root or CAP_NET_RAW (a raw AF_PACKET socket); "
                "run as root, or grant the capability to the Python interpreter"
            ) from e
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
            # Each frame's time is when the kernel got it, not when it is read (else: read time).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            drop_outgoing = self.interface in (None, "lo")
            try:
                attach_filter(
                    sock, bpf_program(self.port, drop_outgoing and self.interface == "lo")
                )
                self.kernel_filter = True
            except OSError:
                self.kernel_filter = False  # filtered in user space below
            if self.interface:
                try:
                    sock.bind((self.interface, ETH_P_ALL))
                except OSError as e:
                    raise CaptureError(f"cannot capture on {where}: {e}") from e
        except BaseException:
            sock.close()
            raise
        return sock

    def batches(self, stop: threading.Event) -> Iterator[list[Record]]:
        sock = self._sock
        buf = bytearray(_BUFSIZE)
        view = memoryview(buf)
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        recv = sock.recvmsg_into
        buffers = [view]
        dontwait = socket.MSG_DONTWAIT
        sol_socket = socket.SOL_SOCKET
        user_filter = not self.kernel_filter
        port = self.port
        while not stop.is_set():
            if not poller.poll(100):
                yield []
                continue
            batch: list[Record] = []
            now = time.time()
            while len(batch) < _BATCH:
                try:
                    n, ancdata, _flags, addr = recv(buffers, _ANCBUF, dontwait)
                except BlockingIOError:
                    break
                except OSError as e:
                    if stop.is_set():
                        return
                    raise CaptureError(f"capture socket failed: {e}") from e
                if addr[2] == PACKET_OUTGOING and addr[0] == "lo":
                    continue  # lo shows each frame twice
                if addr[1] not in (ETH_P_IP, ETH_P_IPV6):
                    continue
                if user_filter and not _has_port(view, n, port):
                    continue
                ts = now
                for level, kind, data in ancdata:
                    if level == sol_socket and kind == SO_TIMESTAMPNS:
                        sec, nsec = _timespec(data)
                        ts = sec + nsec * 1e-9
                batch.append(Record(ts, bytes(view[:n]), n))
            yield batch

    def kernel_drops(self) -> int:
        try:
            raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        except OSError:
            return 0
        return int(struct.unpack("II", raw)[1])

    def interrupt(self) -> None:
        pass  # batches() polls with a short timeout and checks its stop flag

    def close(self) -> None:
        self._sock.close()


def _has_port(view: memoryview, n: int, port: int) -> bool:
    if n < 20:
        return False
    if view[0] >> 4 == 4:
        t = (view[0] & 0x0F) * 4
        proto = view[9]
    else:
        t, proto = 40, view[6]
    if proto != 6 or n < t + 4:
        return False
    sport, dport = struct.unpack_from(">HH", view, t)
    return port in (sport, dport)


class StreamSource:
    """A pcap byte stream: a file, stdin, a ``tcpdump -U -w -`` pipe, or chunks from an API."""

    def __init__(
        self,
        read: Callable[[], bytes | None],
        close: Callable[[], None] | None = None,
        interrupt: Callable[[], None] | None = None,
    ) -> None:
        self._read = read
        self._close = close
        self._interrupt = interrupt
        self._decoder = PcapDecoder()
        self.linktype: int | None = None

    @classmethod
    def from_fd(
        cls,
        fd: int,
        close: Callable[[], None] | None = None,
        interrupt: Callable[[], None] | None = None,
    ) -> StreamSource:
        """Read with ``os.read`` so bytes are handed on as soon as they arrive; an idle
        stream is polled (100 ms) so a stop is noticed without data or EOF."""
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)

        def read() -> bytes | None:
            return os.read(fd, 1 << 16) if poller.poll(100) else None

        return cls(read, close, interrupt)

    def batches(self, stop: threading.Event) -> Iterator[list[Record]]:
        decoder = self._decoder
        while not stop.is_set():
            try:
                chunk = self._read()
            except OSError as e:
                if stop.is_set():
                    return
                raise CaptureError(f"reading the pcap stream failed: {e}") from e
            if chunk is None:
                yield []  # nothing yet: let the caller see ``stop``
                continue
            if not chunk:
                break
            records = decoder.feed(chunk)
            self.linktype = decoder.linktype
            yield records
        if not stop.is_set():
            decoder.finish()

    def kernel_drops(self) -> int:
        return 0

    def interrupt(self) -> None:
        if self._interrupt is not None:
            self._interrupt()

    def close(self) -> None:
        if self._close is not None:
            self._close()
