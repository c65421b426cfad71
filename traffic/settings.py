"""Settings of live mirroring and replay (``PYMIRROR_TRAFFIC__*``).

The defaults are not repeated here: each comes from the dataclass field it sets
(``traffic.limits``, where the reason for the value is written), and
``reassembly_limits`` / ``replay_limits`` build those dataclasses from the settings.
"""

from __future__ import annotations

import dataclasses

from pydantic import BaseModel, Field

from traffic.limits import Limits, ReplayLimits


class TrafficSettings(BaseModel):
    """Bounds of live mirroring and replay (``pymirror mirror``, ``pymirror replay``)."""

    write_timeout: float = Field(
        ReplayLimits.write_timeout,
        gt=0,
        description="Seconds a write to --to may stay unsent before its flow drops "
        "(ReplayLimits.write_timeout).",
    )
    flow_backlog_bytes: int = Field(
        ReplayLimits.max_flow_backlog,
        gt=0,
        description="Bytes one replayed flow may queue before it drops "
        "(ReplayLimits.max_flow_backlog, 4 MiB).",
    )
    idle_timeout: float = Field(
        Limits.idle_timeout,
        gt=0,
        description="Seconds without a segment before a captured flow ends (Limits.idle_timeout).",
    )
    max_connections: int = Field(
        ReplayLimits.max_connections,
        gt=0,
        description="Concurrent local connections to --to; more flows are dropped "
        "(ReplayLimits.max_connections).",
    )

    def reassembly_limits(self) -> Limits:
        """The reassembler's bounds: these settings over the other defaults."""
        return dataclasses.replace(Limits(), idle_timeout=self.idle_timeout)

    def replay_limits(self) -> ReplayLimits:
        """The replay leg's bounds: these settings over the other defaults."""
        return dataclasses.replace(
            ReplayLimits(),
            max_flow_backlog=self.flow_backlog_bytes,
            write_timeout=self.write_timeout,
            max_connections=self.max_connections,
        )
