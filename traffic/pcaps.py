"""Classic pcap files and streams: an incremental decoder, a reader and a writer.

``PcapDecoder`` is sans-IO: feed it bytes as they arrive (a file, a pipe from
``tcpdump -U -w -``, a Kubernetes exec stream) and it returns whole records;
``finish()`` reports a stream that stops inside a record instead of hiding it.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from traffic.errors import PcapError, PcapTruncatedError
from traffic.packets import SUPPORTED_LINKTYPES

_MAGIC_USEC = 0xA1B2C3D4
_MAGIC_NSEC = 0xA1B23C4D
_PCAPNG = b"\x0a\x0d\x0d\x0a"
GLOBAL_HEADER_SIZE = 24
RECORD_HEADER_SIZE = 16
DEFAULT_SNAPLEN = 262144
#: A record larger than this is garbage, not a packet (tcpdump's own limit).
MAX_RECORD = 0x4000000


class Record(NamedTuple):
    """One captured frame; ``ts`` in seconds since the epoch, ``wirelen`` its original length."""

    ts: float
    data: bytes
    wirelen: int


class PcapDecoder:
    """Turns pcap bytes into ``Record``s; call ``feed`` with each chunk, ``finish`` at the end."""

    def __init__(self) -> None:
        self._buf = b""
        self.linktype: int | None = None
        self.snaplen = 0
        self._rec: struct.Struct | None = None
        self._scale = 1e-6
        self.records = 0
        self.bytes_in = 0

    def feed(self, chunk: bytes) -> list[Record]:
        """Decode every complete record now available; keep the rest for the next call."""
        self.bytes_in += len(chunk)
        buf = self._buf + chunk if self._buf else chunk
        pos = 0
        if self._rec is None:
            if len(buf) < GLOBAL_HEADER_SIZE:
                self._buf = buf
                return []
            self._read_header(buf)
            pos = GLOBAL_HEADER_SIZE
        rec = self._rec
        assert rec is not None
        unpack = rec.unpack_from
        scale = self._scale
        out: list[Record] = []
        n = len(buf)
        while n - pos >= RECORD_HEADER_SIZE:
            sec, frac, caplen, wirelen = unpack(buf, pos)
            if caplen > MAX_RECORD:
                raise PcapError(
                    f"record {self.records + 1} claims {caplen} bytes: the pcap is corrupt"
                )
            end = pos + RECORD_HEADER_SIZE + caplen
            if end > n:
                break
            out.append(Record(sec + frac * scale, buf[pos + RECORD_HEADER_SIZE : end], wirelen))
            pos = end
        self.records += len(out)
        self._buf = buf[pos:]
        return out

    def finish(self) -> None:
        """Declare the end of input; raise ``PcapTruncatedError`` if it stopped mid-record."""
        if self._rec is None:
            if not self._buf:
                raise PcapTruncatedError("the pcap is empty: no global header")
            raise PcapTruncatedError(
                f"the pcap ends inside its global header ({len(self._buf)} of 24 bytes)"
            )
        if self._buf:
            raise PcapTruncatedError(
                f"the pcap is truncated: {len(self._buf)} bytes of an incomplete record after "
                f"{self.records} whole records"
            )

    def _read_header(self, buf: bytes) -> None:
        header = parse_header(buf)
        self.linktype = header.linktype
        self.snaplen = header.snaplen
        self._scale = header.scale
        self._rec = header.record


class Header(NamedTuple):
    linktype: int
    snaplen: int
    scale: float
    """Seconds per unit of the fractional timestamp (1e-6, or 1e-9 for nanosecond files)."""
    record: struct.Struct
    """Record header layout in the file's byte order."""


def parse_header(buf: bytes | mmap.mmap) -> Header:
    """The 24-byte global header; ``PcapError`` for pcapng, other formats, unknown link types."""
    if buf[:4] == _PCAPNG:
        raise PcapError("pcapng is not supported; convert it with `tcpdump -r IN -w OUT.pcap`")
    for order in ("<", ">"):
        magic, _major, _minor, _tz, _sig, snaplen, linktype = struct.unpack_from(
            order + "IHHiIII", buf, 0
        )
        if magic in (_MAGIC_USEC, _MAGIC_NSEC):
            break
    else:
        raise PcapError(f"not a pcap file (magic {bytes(buf[:4]).hex()})")
    linktype &= 0x0FFFFFFF
    if linktype not in SUPPORTED_LINKTYPES:
        raise PcapError(f"unsupported pcap link type {linktype}")
    scale = 1e-9 if magic == _MAGIC_NSEC else 1e-6
    return Header(linktype, snaplen, scale, struct.Struct(order + "IIII"))


class MappedPcap:
    """A pcap file mapped into memory: frames are located, not copied (the fast offline path)."""

    def __init__(self, path: Path) -> None:
        try:
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < GLOBAL_HEADER_SIZE:
                    data = f.read()
                    if len(data) >= 4:
                        parse_header(data.ljust(GLOBAL_HEADER_SIZE, b"\0"))  # not a pcap?
                    raise PcapTruncatedError(
                        "the pcap is empty: no global header"
                        if not data
                        else f"the pcap ends inside its global header ({len(data)} of 24 bytes)"
                    )
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise PcapError(f"cannot read {path}: {e.strerror or e}") from e
        self.buffer = self._mm
        try:
            self.header = parse_header(self._mm)
        except BaseException:
            self._mm.close()
            raise
        self.linktype = self.header.linktype
        self.records = 0

    def frames(self) -> Iterator[tuple[float, int, int]]:
        """``(ts, start, end)`` of each frame in ``buffer``; a cut-off last record raises.

        Offline replay walks the records itself, in the same way, to save a generator
        resume per packet; both end with ``check_end``.
        """
        mm = self._mm
        unpack = self.header.record.unpack_from
        scale = self.header.scale
        size = len(mm)
        pos = GLOBAL_HEADER_SIZE
        while size - pos >= RECORD_HEADER_SIZE:
            sec, frac, caplen, _wirelen = unpack(mm, pos)
            start = pos + RECORD_HEADER_SIZE
            end = start + caplen
            if end > size or caplen > MAX_RECORD:
                break
            self.records += 1
            yield sec + frac * scale, start, end
            pos = end
        self.check_end(pos)

    def check_end(self, pos: int) -> None:
        """After a walk over the whole records that stopped at ``pos`` (``records`` of them):
        ``PcapTruncatedError`` unless they cover the file, i.e. the last record is cut off."""
        size = len(self._mm)
        if pos != size:
            raise PcapTruncatedError(
                f"the pcap is truncated: {size - pos} bytes of an incomplete record after "
                f"{self.records} whole records"
            )

    def close(self) -> None:
        self._mm.close()

    def __enter__(self) -> MappedPcap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(stream: BinaryIO, chunk_size: int = 1 << 16) -> Iterator[tuple[int, Record]]:
    """Yield ``(linktype, record)`` from a binary stream until EOF; truncation raises."""
    decoder = PcapDecoder()
    while True:
        try:
            chunk = stream.read(chunk_size)
        except OSError as e:
            raise PcapError(f"cannot read the pcap: {e}") from e
        if not chunk:
            break
        for record in decoder.feed(chunk):
            assert decoder.linktype is not None
            yield decoder.linktype, record
    decoder.finish()


class PcapWriter:
    """Writes a microsecond pcap to a binary stream; ``flush`` after each batch for live use."""

    _rec = struct.Struct("<IIII")

    def __init__(self, stream: BinaryIO, linktype: int, snaplen: int = DEFAULT_SNAPLEN) -> None:
        self._stream = stream
        self.packets = 0
        stream.write(struct.pack("<IHHiIII", _MAGIC_USEC, 2, 4, 0, 0, snaplen, linktype))

    def write(self, ts: float, data: bytes, wirelen: int | None = None) -> None:
        sec = int(ts)
        usec = round((ts - sec) * 1e6)
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        size = len(data)
        self._stream.write(self._rec.pack(sec, usec, size, size if wirelen is None else wirelen))
        self._stream.write(data)
        self.packets += 1

    def flush(self) -> None:
        self._stream.flush()
