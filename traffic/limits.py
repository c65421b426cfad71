"""Bounds of reassembly and replay: the one home of their defaults (units and reasons).

``Limits`` bounds the reassembler (traffic.reassembly), ``ReplayLimits`` the replay
leg (traffic.replaying). ``traffic.settings.TrafficSettings`` exposes the ones an
operator tunes (``PYMIRROR_TRAFFIC__*``) with these values as its defaults, and
builds both dataclasses from the settings (``reassembly_limits``, ``replay_limits``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Bounds of the reassembler; times in capture seconds."""

    max_buffer_bytes: int = 1 << 20
    """Out-of-order bytes held per flow before the flow fails (1 MiB: ~700 full-size segments)."""
    max_buffer_segments: int = 1024
    """Out-of-order segments held per flow."""
    idle_timeout: float = 120.0
    """A flow with no segment for this long ends ("idle"), like a conntrack timeout."""
    max_flows: int = 65536
    """Concurrent flows; segments of further new flows are refused (counted)."""
    linger: float = 30.0
    """After a flow ends, non-SYN segments of its 4-tuple are ignored this long (late ACKs)."""


@dataclass(frozen=True)
class ReplayLimits:
    """Bounds of the replay leg; sizes in bytes, times in seconds."""

    max_flow_backlog: int = 4 << 20
    """Bytes a flow may have queued or unsent before it drops (4 MiB: seconds of a busy flow)."""
    write_timeout: float = 5.0
    """A write still unsent after this long means the target stopped reading: the flow drops."""
    connect_timeout: float = 3.0
    """Time to open a local connection for a new flow."""
    max_connections: int = 1024
    """Concurrent local connections; flows beyond are dropped (counted) rather than queued."""
    send_buffer: int = 256 << 10
    """SO_SNDBUF of each local connection: small enough that a stalled target shows up in the
    backlog instead of hiding in a kernel buffer that autotuning grows to megabytes."""
    drain_timeout: float = 5.0
    """At shutdown, time left for open flows to flush before they are aborted."""
