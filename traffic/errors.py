"""Errors of capture, reassembly and replay.

``TrafficError`` is this layer's root; ``retriable`` is data on the class:
True means the condition is temporary and the caller may retry::

    TrafficError
    ├── TargetError             bad or unreachable ``--to`` (checked before capture starts)
    ├── CaptureError            the capture could not start or broke (interface, namespace)
    │   └── CapturePermissionError  no root / CAP_NET_RAW for a raw socket
    ├── PcapError               unreadable pcap file or stream (bad magic, link type)
    │   └── PcapTruncatedError  the file or stream ends inside a record
    ├── ReplayIncompleteError   a replay ended but part of the capture did not reach ``--to``
    ├── HttpFilterError         an invalid ``--http-path``/``--http-header`` regex
    └── ClusterCaptureError     the Kubernetes API refused the capture container or exec
"""

from __future__ import annotations

from typing import ClassVar


class TrafficError(Exception):
    """Root of the errors raised by capture, reassembly and replay."""

    retriable: ClassVar[bool] = False


class TargetError(TrafficError):
    """The replay target (``--to HOST:PORT``) is malformed or not accepting connections."""

    retriable = True


class CaptureError(TrafficError):
    """A capture could not start (unknown interface or namespace) or failed while running."""


class CapturePermissionError(CaptureError):
    """Opening a raw packet socket needs root or the CAP_NET_RAW capability."""


class PcapError(TrafficError):
    """A pcap file or stream is unreadable: bad magic, unsupported link type, I/O error."""


class PcapTruncatedError(PcapError):
    """The pcap ends inside a record header or a record body."""


class ReplayIncompleteError(TrafficError):
    """A replay ran to its end, but part of the capture was not delivered to ``--to``:
    packets cut short by the capture's snap length, flows dropped or failed."""


class HttpFilterError(TrafficError):
    """An HTTP request filter regex does not compile."""


class ClusterCaptureError(TrafficError):
    """The Kubernetes API refused to add the capture container or to stream its output."""

    retriable = True
